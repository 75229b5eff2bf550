import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decide } from '../../src/policy/decide';
import { explainDecision } from '../../src/policy/explain';
import { formatProblem, loadPolicy } from '../../src/policy/load';
import type { Policy } from '../../src/policy/load';
import { DEFAULT_RULE } from '../../src/policy/reasons';
import type { RequestFacts } from '../../src/policy/types';
import { facts } from './helpers';

/**
 * `tls: inspect` in the policy (SPEC §6): an allow rule that inspects matches a CONNECT on its
 * hosts, ports and clients alone; its methods and paths apply to the requests inside, which are
 * decided as plain HTTP with scheme https. Every other rule matches as before.
 */

function load(yaml: string): ReturnType<typeof loadPolicy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-inspect-policy-'));
  try {
    writeFileSync(path.join(dir, 'p.yaml'), yaml);
    return loadPolicy(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function policyOf(yaml: string): Policy {
  const result = load(yaml);
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.policy;
}

/** A request inside an inspected tunnel, as the proxy decides it. */
function inner(host: string, method: string, requestPath: string, port = 443): RequestFacts {
  return { ...facts({ target: `http://${host}:${port}${requestPath}`, method }), kind: 'http' };
}

const RULES = (settingsTls = '') => `version: 1
settings:
  default: deny
${settingsTls}
rules:
  - name: no-gists
    action: deny
    hosts: [github.com]
    paths: ["/gists/**"]
  - name: our-org
    action: allow
    hosts: [github.com]
    paths: ["/our-org/**"]
    methods: [GET, POST]
    tls: inspect
  - name: npm-paths
    action: allow
    hosts: [registry.npmjs.org]
    paths: ["/left-pad"]
  - name: plain
    action: allow
    hosts: [example.com]
`;

describe('matching a CONNECT', () => {
  const policy = policyOf(RULES());

  test.each([
    { name: 'an inspecting rule matches a CONNECT without its methods and paths', target: 'github.com:443', rule: 'our-org', action: 'allow', tls: 'inspect' },
    { name: 'a deny rule with paths never matches a CONNECT (it applies inside)', target: 'github.com:443', rule: 'our-org', action: 'allow', tls: 'inspect' },
    { name: 'a rule with paths that does not inspect still never matches a CONNECT', target: 'registry.npmjs.org:443', rule: DEFAULT_RULE, action: 'deny', tls: 'any' },
    { name: 'the ports of an inspecting rule still apply', target: 'github.com:8443', rule: DEFAULT_RULE, action: 'deny', tls: 'any' },
    { name: 'a rule without methods or paths is unchanged', target: 'example.com:443', rule: 'plain', action: 'allow', tls: 'any' },
  ])('$name', ({ target, rule, action, tls }) => {
    const decision = decide(policy, facts({ target }));
    expect({ rule: decision.rule, action: decision.action, tls: decision.tls }).toEqual({ rule, action, tls });
  });

  test('policy test explains the CONNECT match of an inspecting rule', () => {
    const { considered } = explainDecision(policy, facts({ target: 'github.com:443' }));
    expect(considered.map((c) => [c.rule, c.matched])).toEqual([['no-gists', false], ['our-org', true]]);
    expect(considered[0].why).toBe('rules with methods or paths never match a CONNECT: CONNECT');
  });
});

describe('the requests inside an inspected tunnel', () => {
  const policy = policyOf(RULES());

  test.each([
    { name: 'a path of the inspecting rule', method: 'GET', path: '/our-org/repo', rule: 'our-org', action: 'allow' },
    { name: 'a method the inspecting rule does not list', method: 'DELETE', path: '/our-org/repo', rule: DEFAULT_RULE, action: 'deny' },
    { name: 'another organisation', method: 'POST', path: '/their-org/repo', rule: DEFAULT_RULE, action: 'deny' },
    { name: 'a deny rule with paths, before it', method: 'GET', path: '/gists/new', rule: 'no-gists', action: 'deny' },
  ])('$name', ({ method, path: requestPath, rule, action }) => {
    const decision = decide(policy, inner('github.com', method, requestPath));
    expect({ rule: decision.rule, action: decision.action }).toEqual({ rule, action });
  });
});

describe('settings.tls: inspect', () => {
  const policy = policyOf(RULES('  tls: inspect'));

  test('allow rules with paths inspect and so match their CONNECTs; deny rules never widen', () => {
    expect(decide(policy, facts({ target: 'registry.npmjs.org:443' }))).toMatchObject({ rule: 'npm-paths', action: 'allow', tls: 'inspect' });
    // no-gists (deny, paths) still does not match the CONNECT: the tunnel opens and it applies inside.
    expect(decide(policy, facts({ target: 'github.com:443' }))).toMatchObject({ rule: 'our-org', action: 'allow', tls: 'inspect' });
    expect(decide(policy, inner('github.com', 'GET', '/gists/x'))).toMatchObject({ rule: 'no-gists', action: 'deny' });
  });

  test('a rule of its own tls wins over settings.tls: inspect', () => {
    const own = policyOf(`version: 1
settings:
  tls: inspect
rules:
  - name: npm-paths
    action: allow
    hosts: [registry.npmjs.org]
    paths: ["/left-pad"]
    tls: sni-must-match
`);
    expect(decide(own, facts({ target: 'registry.npmjs.org:443' })).rule).toBe(DEFAULT_RULE);
  });
});

describe('policy check', () => {
  test('tls: inspect on a deny rule is refused with a fix', () => {
    const result = load(`version: 1
rules:
  - name: no-push
    action: deny
    hosts: [github.com]
    methods: [POST]
    tls: inspect
`);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map(formatProblem)).toEqual([
      'p.yaml:7: rule "no-push": "tls: inspect" belongs on the allow rule that opens the tunnel; a deny rule\'s methods and paths already apply to every request inside inspected tunnels (drop "tls" here)',
    ]);
  });

  test('tls: inspect is accepted per rule and in settings', () => {
    expect(load(RULES()).ok).toBe(true);
    expect(load(RULES('  tls: inspect')).ok).toBe(true);
  });
});
