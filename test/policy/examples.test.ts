import { join } from 'node:path';
import { checkPolicies } from '../../src/policy/check';
import { decide } from '../../src/policy/decide';
import { loadPolicy, type Policy } from '../../src/policy/load';
import { DEFAULT_RULE } from '../../src/policy/reasons';
import { facts } from './helpers';

/** The example policies in policies/ are what `npm start` runs on: they must stay valid. */
const EXAMPLES = join(__dirname, '..', '..', 'policies');

function examplePolicy(): Policy {
  const result = loadPolicy(EXAMPLES);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.policy;
}

test('the example policies pass policy check with no problems or warnings', () => {
  const result = checkPolicies(EXAMPLES);
  expect(result.ok).toBe(true);
  expect(result.lines).toHaveLength(1);
  expect(result.lines[0]).toMatch(/^ok: 5 files, \d+ rules, default deny, mode enforce/);
});

describe('decisions on the example policies', () => {
  const policy = examplePolicy();
  test.each([
    { name: 'npm registry on 443', target: 'registry.npmjs.org:443', rule: 'npm-registry', action: 'allow' },
    { name: 'npm registry on another port', target: 'registry.npmjs.org:8443', rule: DEFAULT_RULE, action: 'deny' },
    { name: 'pastebin', target: 'pastebin.com:443', rule: 'deny-paste-sites', action: 'deny' },
    { name: 'a pastebin subdomain on any port', target: 'www.pastebin.com:8080', rule: 'deny-paste-sites', action: 'deny' },
    { name: 'file sharing over plain HTTP', target: 'http://transfer.sh/upload', method: 'PUT', rule: 'deny-file-sharing', action: 'deny' },
    { name: 'github API', target: 'api.github.com:443', rule: 'github', action: 'allow' },
    { name: 'raw github content', target: 'objects.githubusercontent.com:443', rule: 'github', action: 'allow' },
    { name: 'apt over plain HTTP', target: 'http://deb.debian.org/debian/dists/bookworm/InRelease', rule: 'apt-mirrors-http', action: 'allow' },
    { name: 'apt: no uploads', target: 'http://deb.debian.org/debian/x', method: 'POST', rule: DEFAULT_RULE, action: 'deny' },
    { name: 'CI runner pulls an image', target: 'ghcr.io:443', sourceIp: '10.0.9.1', rule: 'ci-container-images', action: 'allow' },
    { name: 'others do not', target: 'ghcr.io:443', sourceIp: '10.0.12.1', rule: DEFAULT_RULE, action: 'deny' },
    { name: 'CI to S3 is reported, not denied', target: 'b.s3.amazonaws.com:443', sourceIp: '10.0.8.5', rule: 'ci-no-object-storage', action: 'allow', wouldDeny: true },
    { name: 'unknown host denied by default', target: 'example.org:443', rule: DEFAULT_RULE, action: 'deny' },
  ])('$name', (c) => {
    const decision = decide(policy, facts(c));
    expect({ rule: decision.rule, action: decision.action, wouldDeny: decision.wouldDeny }).toEqual({
      rule: c.rule,
      action: c.action,
      wouldDeny: c.wouldDeny ?? false,
    });
  });
});
