import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeAuthPolicy } from './helpers/auth-policy';
import { REPO_ROOT, runCli } from './helpers/serve-process';

/**
 * `tollgate policy check` / `policy test` as a user runs them: the built CLI in a child process,
 * judged by exit code, stdout and stderr (SPEC §1, §2 last paragraph).
 */
const BAD = 'test/fixtures/policies';
const EXPLAIN = 'test/fixtures/cli/explain';
const EXEMPT = 'test/fixtures/cli/explain-exempt';
const REPORT = 'test/fixtures/policies/report-global';

const tollgate = runCli;

interface JsonOutcome {
  decision: 'allow' | 'deny';
  would_deny: boolean;
  rule: string | null;
  rule_source: string | null;
  reason: string;
  clients: string[];
  target: { kind: string; host: string; port: number; path: string | null };
  considered: { rule: string; source: string; matched: boolean; why: string }[];
  notes: string[];
}

function explainJson(policies: string, ...args: string[]): { status: number | null; outcome: JsonOutcome } {
  const run = tollgate('policy', 'test', '--policies', policies, '--json', ...args);
  expect(run.stderr).toBe('');
  expect(run.stdout.endsWith('\n')).toBe(true);
  expect(run.stdout.trim().split('\n')).toHaveLength(1);
  return { status: run.status, outcome: JSON.parse(run.stdout) as JsonOutcome };
}

describe('tollgate policy check', () => {
  test('the example policies are valid', () => {
    const run = tollgate('policy', 'check', '--policies', 'policies');
    expect(run.status).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^ok: \d+ files, \d+ rules, default deny, mode enforce \((git:[0-9a-f]{12}(-dirty)?|sha256:[0-9a-f]{12})\)$/m);
  });

  test.each([
    ['bad-action', 'policy.yaml:4: rule "allw": action must be allow or deny, got "alow"; did you mean "allow"?'],
    ['bad-cidr', 'policy.yaml:5: network.deny_ranges: "198.51.100.0/33" has a bad prefix length (0-32)'],
    ['bad-duplicate-rule', '20-b.yaml:6: duplicate rule name "same" (first defined at 10-a.yaml:3); rule names must be unique across all files'],
    ['bad-host-bits', 'policy.yaml:5: client "ci": sources: "10.0.8.1/22" has host bits set; did you mean "10.0.8.0/22"?'],
    ['bad-idn', 'policy.yaml:5: rule "books": host pattern "bü\\u{200d}cher.example": label "bü\\u{200d}cher" cannot be converted to punycode (IDNA refuses it: a character that is not allowed in names, or a mix of right-to-left and left-to-right letters)'],
    ['bad-methods', 'policy.yaml:6: rule "tunnel": rules with "methods" apply to plain HTTP only, so CONNECT never matches; to match tunnels, drop "methods"'],
    ['bad-partial', '20-bad.yaml:6: rule "bad": unknown key "port"; did you mean "ports"?'],
    ['bad-second-settings', '50-team.yaml:3: a second "settings" block (the first is at 00-settings.yaml:2); keep settings in one file'],
    ['bad-unknown-client', '20-rules.yaml:6: rule "ci": unknown client group "ci-runner"; did you mean "ci-runners"?'],
    ['bad-yaml', 'policy.yaml:5: YAML syntax: Map keys must be unique'],
  ])('%s is invalid: exit 1, one FILE:LINE line', (fixture, line) => {
    const run = tollgate('policy', 'check', '--policies', `${BAD}/${fixture}`);
    expect(run.status).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(`${line}\ninvalid: 1 problem\n`);
  });

  test('every problem in every file is reported, in file order', () => {
    const run = tollgate('policy', 'check', '--policies', 'test/fixtures/cli/bad-several');
    expect(run.status).toBe(1);
    expect(run.stderr.split('\n')).toEqual([
      '10-clients.yaml:5: client "ci-runners": sources: "10.0.8.1/22" has host bits set; did you mean "10.0.8.0/22"?',
      '20-rules.yaml:6: rule "registry": ports: bad port 70000; a port is 1-65535, a range like "8000-8999", or write "ports: any"',
      '20-rules.yaml:9: rule "typo": unknown key "hots"; did you mean "hosts"?',
      'invalid: 3 problems',
      '',
    ]);
  });

  test('a missing folder is invalid, not an empty policy', () => {
    const run = tollgate('policy', 'check', '--policies', 'test/fixtures/cli/no-such-folder');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/cannot read the policies folder/);
  });

  test.each([['--help'], ['-h']])('%s prints usage and exits 0', (flag) => {
    const run = tollgate('policy', 'check', flag);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^usage: tollgate policy check \[--policies DIR\]/);
  });

  test.each([
    ['unknown flag', ['--bogus']],
    ['--policies without a value', ['--policies']],
    // Checking ./policies instead of the folder named here would report a false "valid".
    ['folder given without --policies', [`${BAD}/bad-action`]],
  ])('%s: exit 2 with usage', (_name, args) => {
    const run = tollgate('policy', 'check', ...args);
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/usage: tollgate policy check/);
  });
});

describe('tollgate policy test: decisions', () => {
  test.each([
    ['allowed CONNECT', ['registry.example:443'], 0, 'allow', 'registry', '10-rules.yaml:21'],
    ['allowed CONNECT, port in a range', ['registry.example:8500'], 0, 'allow', 'registry', '10-rules.yaml:21'],
    ['allowed CONNECT, name normalised', ['REGISTRY.Example.:443'], 0, 'allow', 'registry', '10-rules.yaml:21'],
    ['one-label wildcard', ['a.cdn.example:443'], 0, 'allow', 'registry', '10-rules.yaml:21'],
    ['one-label wildcard, two labels', ['a.b.cdn.example:443'], 1, 'deny', '(default)', '00-settings.yaml:4'],
    ['denied by rule', ['www.pastebin.com:443'], 1, 'deny', 'deny-paste', '10-rules.yaml:3'],
    ['port outside the rule', ['registry.example:80'], 1, 'deny', '(default)', '00-settings.yaml:4'],
    ['default deny', ['nowhere.example:443'], 1, 'deny', '(default)', '00-settings.yaml:4'],
    ['plain HTTP, method and path match', ['--method', 'POST', 'http://api.example/v1/items?draft=1'], 0, 'allow', 'api-writes', '10-rules.yaml:11'],
    ['plain HTTP, method is case-insensitive', ['--method', 'post', 'http://api.example/v1/items'], 0, 'allow', 'api-writes', '10-rules.yaml:11'],
    ['plain HTTP, method defaults to GET', ['http://api.example/v1/items'], 1, 'deny', '(default)', '00-settings.yaml:4'],
    ['plain HTTP, path outside the rule', ['--method', 'POST', 'http://api.example/v2/items'], 1, 'deny', '(default)', '00-settings.yaml:4'],
    ['a methods/paths rule never matches CONNECT', ['api.example:443'], 1, 'deny', '(default)', '00-settings.yaml:4'],
    ['source inside the client group', ['--source', '10.0.9.7', 'artifacts.example:443'], 0, 'allow', 'ci-artifacts', '10-rules.yaml:16'],
    ['IPv4-mapped source inside the group', ['--source', '::ffff:10.0.8.5', 'artifacts.example:443'], 0, 'allow', 'ci-artifacts', '10-rules.yaml:16'],
    ['source outside the client group', ['--source', '10.0.12.1', 'artifacts.example:443'], 1, 'deny', '(default)', '00-settings.yaml:4'],
    ['default source is not in the group', ['artifacts.example:443'], 1, 'deny', '(default)', '00-settings.yaml:4'],
  ])('%s', (_name, args, status, decision, rule, ruleSource) => {
    const { status: code, outcome } = explainJson(EXPLAIN, ...args);
    expect(code).toBe(status);
    expect(outcome).toMatchObject({ decision, would_deny: false, rule, rule_source: ruleSource });
    expect(typeof outcome.reason).toBe('string');
    expect(outcome.reason).not.toBe('');
  });

  test('--source puts the request in its client groups', () => {
    const { outcome } = explainJson(EXPLAIN, '--source', '10.0.9.7', 'artifacts.example:443');
    expect(outcome.clients).toEqual(['ci-runners']);
  });

  test('plain HTTP path is matched without the query string', () => {
    const { outcome } = explainJson(EXPLAIN, '--method', 'POST', 'http://api.example/v1/items?draft=1');
    expect(outcome.target).toEqual({ kind: 'http', host: 'api.example', port: 80, path: '/v1/items' });
  });

  test('a report-mode deny rule exits 0 and says would_deny', () => {
    const json = explainJson(EXPLAIN, 'trial.example:443');
    expect(json.status).toBe(0);
    expect(json.outcome).toMatchObject({ decision: 'allow', would_deny: true, rule: 'trial-deny', rule_source: '10-rules.yaml:7' });
    const text = tollgate('policy', 'test', '--policies', EXPLAIN, 'trial.example:443');
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/would_deny/);
  });

  test('global report mode lets a default deny through, marked would_deny', () => {
    const { status, outcome } = explainJson(REPORT, 'a.example:443');
    expect(status).toBe(0);
    expect(outcome).toMatchObject({ decision: 'allow', would_deny: true, rule: '(default)' });
  });
});

describe('tollgate policy test: the guard on IP-literal targets', () => {
  test.each([
    ['allowed by policy, private and not exempted', EXPLAIN, '10.0.0.1:443', 1, '(guard)'],
    ['the same address exempted by allow_ranges', EXEMPT, '10.0.0.1:443', 0, 'internal-ips'],
    ['deny_ranges wins over allow_ranges', EXEMPT, '10.9.0.1:443', 1, '(guard)'],
    ['loopback exempted by allow_ranges', EXPLAIN, '127.0.0.1:443', 0, 'internal-ips'],
    ['the guard is enforced in report mode too', REPORT, '10.0.0.1:443', 1, '(guard)'],
    ['IPv4-mapped IPv6 of a private address', EXPLAIN, 'http://[::ffff:10.0.0.1]/', 1, '(guard)'],
  ])('%s', (_name, policies, target, status, rule) => {
    const { status: code, outcome } = explainJson(policies, target);
    expect(code).toBe(status);
    expect(outcome.rule).toBe(rule);
    expect(outcome.decision).toBe(status === 0 ? 'allow' : 'deny');
    expect(outcome.would_deny).toBe(false);
    if (rule === '(guard)') {
      expect(outcome.rule_source).toBeNull();
      expect(outcome.reason).toMatch(/blocked range/);
    }
  });

  test.each([
    ['hex and short form', 'http://0x7f.1/'],
    ['short form with port', 'http://127.1:8080/x'],
    ['octal', 'http://0177.0.0.1/'],
    ['one decimal number', '2130706433:443'],
  ])('legacy IPv4 spelling (%s) is read as 127.0.0.1', (_name, target) => {
    const { status, outcome } = explainJson(EXPLAIN, target);
    // Only the canonical address matches the CIDR entry: as a name it would fall to (default).
    expect(status).toBe(0);
    expect(outcome.rule).toBe('internal-ips');
    expect(outcome.target.host).toBe('127.0.0.1');
  });
});

describe('tollgate policy test: output', () => {
  test('--json is one object carrying the decision fields', () => {
    const { outcome } = explainJson(EXPLAIN, 'nowhere.example:443');
    expect(outcome).toEqual(expect.objectContaining({
      decision: 'deny',
      would_deny: false,
      rule: '(default)',
      rule_source: expect.stringMatching(/^[\w.-]+\.ya?ml:\d+$/),
      reason: 'no rule matched; default deny',
    }));
  });

  test('a CONNECT the example policies allow says what its ClientHello must name (tls: sni-must-match)', () => {
    const run = tollgate('policy', 'test', '--policies', path.join(REPO_ROOT, 'policies'), 'github.com:443');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('tls: sni-must-match (the tunnel\'s ClientHello must name github.com)');
    const json = tollgate('policy', 'test', '--policies', path.join(REPO_ROOT, 'policies'), '--json', 'github.com:443');
    expect(JSON.parse(json.stdout)).toMatchObject({ decision: 'allow', tls: 'sni-must-match' });
    const http = tollgate('policy', 'test', '--policies', path.join(REPO_ROOT, 'policies'), '--json', 'http://deb.debian.org/debian/');
    expect(JSON.parse(http.stdout)).toMatchObject({ decision: 'allow', tls: null });
  });

  test('text lists the rules before the match and why each did not match', () => {
    const run = tollgate('policy', 'test', '--policies', EXPLAIN, 'registry.example:8000');
    expect(run.status).toBe(0);
    expect(run.stdout.split('\n')).toEqual([
      'CONNECT registry.example:8000',
      '  skip   deny-paste (10-rules.yaml:3): host not matched: "registry.example" vs [**.pastebin.com]',
      '  skip   trial-deny (10-rules.yaml:7): host not matched: "registry.example" vs [trial.example]',
      '  skip   api-writes (10-rules.yaml:11): host not matched: "registry.example" vs [api.example]',
      '  skip   ci-artifacts (10-rules.yaml:16): client not in the rule\'s groups: request is in [], rule wants [ci-runners]',
      '  match  registry (10-rules.yaml:21): matched',
      'decision: allow',
      'rule: registry (10-rules.yaml:21)',
      'reason: matched rule "registry" (allow)',
      '',
    ]);
  });

  test.each([
    ['method', ['http://api.example/v1/items'], 'api-writes (10-rules.yaml:11): method not matched: GET vs [POST]'],
    ['path', ['--method', 'POST', 'http://api.example/v2'], 'api-writes (10-rules.yaml:11): path not matched: "/v2" vs [/v1/**]'],
    ['CONNECT', ['api.example:443'], 'api-writes (10-rules.yaml:11): rules with methods or paths never match a CONNECT'],
    ['port', ['registry.example:80'], 'registry (10-rules.yaml:21): port not matched: 80 vs [443, 8000-8999]'],
  ])('text says when the %s did not match', (_name, args, skipLine) => {
    const run = tollgate('policy', 'test', '--policies', EXPLAIN, ...args);
    expect(run.status).toBe(1);
    expect(run.stdout).toContain(`  skip   ${skipLine}`);
    expect(run.stdout).toMatch(/^decision: deny$/m);
    expect(run.stdout).toMatch(/^rule: \(default\) \(00-settings\.yaml:4\)$/m);
  });

  test('text names the guard when it overrides an allow', () => {
    const run = tollgate('policy', 'test', '--policies', EXPLAIN, '10.0.0.1:443');
    expect(run.status).toBe(1);
    expect(run.stdout).toContain('  match  internal-ips (10-rules.yaml:25): matched\n');
    expect(run.stdout).toMatch(/^rule: \(guard\)$/m);
    expect(run.stdout).toMatch(/^reason: destination 10\.0\.0\.1 is in blocked range 10\.0\.0\.0\/8/m);
  });

  test('--help prints usage and exits 0', () => {
    const run = tollgate('policy', 'test', '--help');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^usage: tollgate policy test /);
  });
});

describe('tollgate policy test: credentials, as settings.auth has the proxy treat them', () => {
  const folders: string[] = [];
  afterAll(() => folders.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

  /** A policy allowing only the `bots` group (user ci-bot) to reach bots.example, under `auth`. */
  function policyWithAuth(auth: 'off' | 'optional' | 'required' | null): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-auth-'));
    folders.push(dir);
    writeAuthPolicy(dir, auth);
    return dir;
  }

  test.each([['unset', null], ['off', 'off']] as const)('auth %s: --user changes nothing, as the proxy ignores credentials, and says so', (_name, auth) => {
    const dir = policyWithAuth(auth);
    const { status, outcome } = explainJson(dir, '--user', 'ci-bot', 'bots.example:443');
    expect(status).toBe(1);
    expect(outcome).toMatchObject({ decision: 'deny', rule: '(default)', clients: [] });
    expect(outcome.notes).toEqual([expect.stringMatching(/^settings\.auth is off: the proxy ignores proxy credentials/)]);
    const text = tollgate('policy', 'test', '--policies', dir, '--user', 'ci-bot', 'bots.example:443');
    expect(text.stdout).toMatch(/^note: settings\.auth is off/m);
  });

  test.each(['optional', 'required'] as const)('auth %s: --user joins the user\'s groups', (auth) => {
    const { status, outcome } = explainJson(policyWithAuth(auth), '--user', 'ci-bot', 'bots.example:443');
    expect(status).toBe(0);
    expect(outcome).toMatchObject({ decision: 'allow', rule: 'bots-only', clients: ['bots'], notes: [] });
  });

  test('auth optional: without --user the request is anonymous and reaches the rules', () => {
    const { status, outcome } = explainJson(policyWithAuth('optional'), 'open.example:443');
    expect(status).toBe(0);
    expect(outcome).toMatchObject({ decision: 'allow', rule: 'everyone', notes: [] });
  });

  test('auth required: without --user the answer is the 407, before any rule', () => {
    const dir = policyWithAuth('required');
    const { status, outcome } = explainJson(dir, 'open.example:443');
    expect(status).toBe(1);
    expect(outcome).toMatchObject({ decision: 'deny', would_deny: false, rule: null, reason: 'proxy authentication required (407)', considered: [] });
    expect(outcome.notes).toEqual([expect.stringMatching(/^settings\.auth is required: without credentials the proxy answers 407/)]);
    const text = tollgate('policy', 'test', '--policies', dir, 'open.example:443');
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(/^rule: \(none\)$/m);
  });
});

describe('tollgate policy test: bad input exits 2', () => {
  test.each([
    ['host with no port', ['registry.example'], /host:port/],
    // An https:// target is a CONNECT and the request inside it (inspect-policy-cli.test.ts); one without a host is bad input.
    ['https URI without a host', ['https:///'], /https:\/\//],
    ['two targets', ['a.example:443', 'b.example:443'], /exactly one TARGET/],
    ['no target', [], /exactly one TARGET/],
    ['source is not an IP', ['--source', 'notanip', 'a.example:443'], /--source must be an IP address/],
    ['method is not a token', ['--method', 'G T', 'http://a.example/'], /--method must be an HTTP method/],
    ['port 0', ['a.example:0'], /port/],
    ['port above 65535', ['a.example:65536'], /port/],
    ['unbracketed IPv6', ['::1:443'], /brackets/],
    ['unknown flag', ['--bogus', 'a.example:443'], /usage: tollgate policy test/],
  ])('%s', (_name, args, message) => {
    const run = tollgate('policy', 'test', '--policies', EXPLAIN, '--json', ...args);
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(message);
  });

  test('invalid policies: exit 2 with the FILE:LINE problems', () => {
    const run = tollgate('policy', 'test', '--policies', `${BAD}/bad-action`, 'a.example:443');
    expect(run.status).toBe(2);
    expect(run.stderr).toBe('policy.yaml:4: rule "allw": action must be allow or deny, got "alow"; did you mean "allow"?\n');
  });
});
