import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decide } from '../../src/policy/decide';
import { formatProblem, loadPolicy } from '../../src/policy/load';
import { parseConnectTarget } from '../../src/request/target';
import { judge } from '../../src/proxy/sni-check';
import { facts } from './helpers';

/** The `tls:` key (SPEC §6): where it is read, what wins, and what the SNI check compares. */

function load(yaml: string): ReturnType<typeof loadPolicy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-tls-key-'));
  try {
    writeFileSync(path.join(dir, 'p.yaml'), yaml);
    return loadPolicy(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const POLICY = (settingsTls: string, ruleTls: string) => `version: 1
settings:
  default: deny
${settingsTls}
rules:
  - name: github
    action: allow
    hosts: [github.com]
${ruleTls}
  - name: npm
    action: allow
    hosts: [registry.npmjs.org]
`;

describe('the tls key', () => {
  it('defaults to any; settings.tls applies to every rule; a rule of its own wins', () => {
    const none = load(POLICY('', ''));
    if (!none.ok) throw new Error('invalid');
    expect(decide(none.policy, facts({ target: 'github.com:443' })).tls).toBe('any');

    const global = load(POLICY('  tls: sni-must-match', '    tls: any'));
    if (!global.ok) throw new Error(JSON.stringify(global.problems));
    expect(decide(global.policy, facts({ target: 'github.com:443' })).tls).toBe('any');
    expect(decide(global.policy, facts({ target: 'registry.npmjs.org:443' })).tls).toBe('sni-must-match');
    // A request no rule matches takes settings.tls too (it is denied anyway unless default allow).
    expect(decide(global.policy, facts({ target: 'example.com:443' })).tls).toBe('sni-must-match');

    const perRule = load(POLICY('', '    tls: require'));
    if (!perRule.ok) throw new Error('invalid');
    expect(decide(perRule.policy, facts({ target: 'github.com:443' })).tls).toBe('require');
    expect(decide(perRule.policy, facts({ target: 'registry.npmjs.org:443' })).tls).toBe('any');
  });

  it('refuses a value it does not know', () => {
    for (const value of ['inspected', 'sni', 'yes']) {
      const result = load(POLICY('', `    tls: ${value}`));
      expect(result.ok).toBe(false);
      if (result.ok) continue;
      expect(result.problems.map(formatProblem).join('\n')).toMatch(/p\.yaml:\d+: rule "github": tls/);
    }
    const settings = load(POLICY('  tls: maybe', ''));
    expect(settings.ok).toBe(false);
  });
});

describe('judge: what the SNI check compares', () => {
  const named = parseConnectTarget('github.com:443');
  const byAddress = parseConnectTarget('140.82.112.4:443');
  const hello = (sni: string | null, ech = false) => ({ kind: 'hello' as const, sni, ech, bytes: 100 });
  const held = Buffer.from([0x16, 0x03, 0x01]);

  it('compares as policy hosts are: case, one trailing dot, punycode', () => {
    expect(judge(hello('GitHub.COM'), 'sni-must-match', named, held).kind).toBe('pass');
    expect(judge(hello('github.com.'), 'sni-must-match', named, held).kind).toBe('pass');
    const idn = parseConnectTarget('xn--mnchen-3ya.example:443');
    expect(judge(hello('münchen.example'), 'sni-must-match', idn, held).kind).toBe('pass');
    const other = judge(hello('gist.github.com'), 'sni-must-match', named, held);
    expect(other).toMatchObject({ kind: 'refuse', sni: 'gist.github.com', reason: 'TLS SNI "gist.github.com" is not the CONNECT host "github.com"' });
  });

  it('has a rule for each edge: no SNI, ECH, an address, not TLS, SSLv2, malformed', () => {
    expect(judge(hello(null), 'sni-must-match', named, held)).toMatchObject({ kind: 'refuse', reason: expect.stringContaining('no SNI') });
    expect(judge(hello('cloudflare-ech.com', true), 'sni-must-match', named, held)).toMatchObject({ kind: 'refuse', reason: expect.stringContaining('ECH') });
    // Under require an encrypted ClientHello is refused whatever its outer name; sni-must-match compares that name.
    expect(judge(hello('github.com', true), 'require', named, held)).toMatchObject({ kind: 'refuse', reason: expect.stringContaining('(ECH)') });
    expect(judge(hello('github.com', true), 'sni-must-match', named, held)).toMatchObject({ kind: 'pass' });
    expect(judge(hello('anything.example'), 'sni-must-match', byAddress, held)).toMatchObject({ kind: 'pass', sni: 'anything.example' });
    const notTls = { kind: 'not-tls' as const, reason: 'first byte 0x53' };
    expect(judge(notTls, 'sni-must-match', named, Buffer.from('SSH-2.0'))).toMatchObject({ kind: 'pass', sni: null });
    expect(judge(notTls, 'require', named, Buffer.from('SSH-2.0'))).toMatchObject({ kind: 'refuse' });
    expect(judge(notTls, 'sni-must-match', named, Buffer.from([0x80, 0x2e, 0x01]))).toMatchObject({ kind: 'refuse', reason: expect.stringContaining('SSLv2') });
    expect(judge({ kind: 'malformed', reason: 'bad length' }, 'sni-must-match', named, held)).toMatchObject({ kind: 'refuse', reason: expect.stringContaining('malformed') });
  });
});
