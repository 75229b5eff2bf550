import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatProblem, loadPolicy, type LoadResult } from '../../src/policy/load';
import { fixturePolicy } from './helpers';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-policy-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
}

function problems(result: LoadResult): string[] {
  return result.ok ? [] : result.problems.map(formatProblem);
}

const ALLOW_A = 'version: 1\nrules:\n  - name: a\n    action: allow\n    hosts: [a.example]\n';

describe('loadPolicy', () => {
  test('compiles every file in file-name order', () => {
    const policy = fixturePolicy('matching');
    expect(policy.files).toEqual(['00-settings.yaml', '10-rules.yaml', '20-more.yaml']);
    // The fixtures are in this repository's work tree, so the version is its commit (provenance.ts).
    expect(policy.version).toMatch(/^(git:[0-9a-f]{12}(-dirty)?|sha256:[0-9a-f]{12})$/);
    expect(policy.contentHash).toMatch(/^sha256:[0-9a-f]{12}$/);
    expect(policy.settings).toEqual({ default: 'deny', mode: 'enforce', source: '00-settings.yaml:3', auth: 'off', upstream: null, tls: 'any' });
    expect(policy.rules.slice(0, 2).map((r) => [r.name, r.source])).toEqual([
      ['deny-paste', '10-rules.yaml:8'],
      ['one-label', '10-rules.yaml:11'],
    ]);
    expect(policy.rules.at(-1)?.source).toBe('20-more.yaml:7');
    expect(policy.clients.map((c) => [c.name, c.source])).toEqual([['ci', '10-rules.yaml:3'], ['office', '10-rules.yaml:5']]);
  });

  test('an empty folder is an error, not a silent deny-all', () => {
    expect(problems(loadPolicy(dir))[0]).toMatch(/no policy files \(\*\.yaml, \*\.yml\) in the folder/);
  });

  test('a missing folder is an error', () => {
    expect(problems(loadPolicy(join(dir, 'nope')))[0]).toMatch(/^nope: cannot read the policies folder: /);
  });

  test('all or nothing: one bad file fails the whole load', () => {
    write({ '10-good.yaml': ALLOW_A, '20-bad.yaml': 'version: 1\nrules: oops\n' });
    const result = loadPolicy(dir);
    expect(result.ok).toBe(false);
    expect(problems(result)).toEqual(['20-bad.yaml:2: rules must be a list; write [oops] for a single value']);
  });

  test('reads .yaml and .yml, skips dotfiles, other files and subfolders', () => {
    mkdirSync(join(dir, 'sub.yaml'));
    write({ 'a.yml': ALLOW_A, '.#a.yaml': 'garbage: [', 'notes.txt': 'x', 'b.yaml': 'version: 1\n' });
    const result = loadPolicy(dir);
    expect(result.ok && result.policy.files).toEqual(['a.yml', 'b.yaml']);
  });

  test('the version follows names and contents', () => {
    write({ 'a.yaml': ALLOW_A });
    const first = loadPolicy(dir);
    const again = loadPolicy(dir);
    write({ 'a.yaml': ALLOW_A.replace('a.example', 'b.example') });
    const edited = loadPolicy(dir);
    rmSync(join(dir, 'a.yaml'));
    write({ 'b.yaml': ALLOW_A.replace('a.example', 'b.example') });
    const renamed = loadPolicy(dir);
    const versions = [first, again, edited, renamed].map((r) => (r.ok ? r.policy.version : 'failed'));
    expect(versions[0]).toBe(versions[1]);
    expect(new Set(versions).size).toBe(3);
  });

  test('network ranges are merged from all files, with their sources', () => {
    write({
      '10-a.yaml': 'version: 1\nnetwork:\n  allow_ranges: [127.0.0.0/8]\n',
      '20-b.yaml': 'version: 1\nnetwork:\n  allow_ranges: ["0x7f000001"]\n  deny_ranges:\n    - 198.51.100.0/24\n  parent_ranges: [10.1.2.3/32]\n',
    });
    const result = loadPolicy(dir);
    expect(result.ok && result.policy.network).toEqual({
      allowRanges: [
        { cidr: '127.0.0.0/8', source: '10-a.yaml:3' },
        { cidr: '127.0.0.1/32', source: '20-b.yaml:3' },
      ],
      denyRanges: [{ cidr: '198.51.100.0/24', source: '20-b.yaml:5' }],
      parentRanges: [{ cidr: '10.1.2.3/32', source: '20-b.yaml:6' }],
    });
  });

  test('warnings do not fail the load', () => {
    write({
      'a.yaml': [
        'version: 1',
        'clients:',
        '  nobody: {}',
        'rules:',
        '  - name: everything',
        '    action: allow',
        '    mode: report',
        '    hosts: ["**"]',
        '',
      ].join('\n'),
    });
    const result = loadPolicy(dir);
    expect(result.ok && result.warnings.map(formatProblem)).toEqual([
      'a.yaml:3: client group "nobody" has neither "sources" nor "users", so no request belongs to it',
      'a.yaml:5: rule "everything": host pattern "**" is very broad',
      'a.yaml:5: rule "everything": "mode: report" has no effect on an allow rule',
    ]);
  });

  test('a file with only comments is refused', () => {
    write({ 'a.yaml': '# nothing yet\n' });
    expect(problems(loadPolicy(dir))).toEqual(['a.yaml:1: the file is empty; start it with "version: 1"']);
  });

  test('several problems in one file are all reported', () => {
    write({ 'a.yaml': 'version: 1\nrules:\n  - name: x\n    action: maybe\n    hosts: [a.example]\n    ports: [0]\n' });
    expect(problems(loadPolicy(dir))).toEqual([
      'a.yaml:4: rule "x": action must be allow or deny, got "maybe"',
      'a.yaml:6: rule "x": ports: bad port 0; a port is 1-65535, a range like "8000-8999", or write "ports: any"',
    ]);
  });
});

describe('parent proxy warnings', () => {
  const settings = (upstream: string): string => `version: 1\nsettings:\n  upstream: ${upstream}\n`;

  test.each([
    ['an IP-literal parent inside allow_ranges', settings('http://10.1.2.3:3128') + 'network:\n  allow_ranges: [10.1.0.0/16]\n', [
      'a.yaml:5: allow_ranges entry 10.1.0.0/16 covers upstream proxy http://10.1.2.3:3128, so clients may also connect to it as a destination; list the parent in network.parent_ranges instead',
    ]],
    ["a rule's via parent inside allow_ranges", 'version: 1\nnetwork:\n  allow_ranges: [10.1.2.3/32]\nrules:\n  - name: r\n    action: allow\n    hosts: [a.test]\n    via: http://u:secret@10.1.2.3:3128\n', [
      'a.yaml:3: allow_ranges entry 10.1.2.3/32 covers upstream proxy http://10.1.2.3:3128, so clients may also connect to it as a destination; list the parent in network.parent_ranges instead',
    ]],
    ['the parent in parent_ranges', settings('http://10.1.2.3:3128') + 'network:\n  parent_ranges: [10.1.2.3/32]\n', []],
    ['allow_ranges elsewhere', settings('http://10.1.2.3:3128') + 'network:\n  allow_ranges: [10.2.0.0/16]\n  parent_ranges: [10.1.2.3/32]\n', []],
  ])('%s', (_name, text, expected) => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-parent-warning-'));
    writeFileSync(join(dir, 'a.yaml'), text);
    const result = loadPolicy(dir);
    expect(result.ok && result.warnings.map(formatProblem)).toEqual(expected);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('proxy credential warnings', () => {
  test('users in a client group while settings.auth is off is a warning, not an error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-users-warning-'));
    writeFileSync(join(dir, 'a.yaml'), 'version: 1\nclients:\n  bots:\n    users: [ci-bot]\n');
    const result = loadPolicy(dir);
    expect(result.ok && result.warnings.map(formatProblem)).toEqual([
      'a.yaml:3: client group "bots" names users, but settings.auth is off: no request is authenticated',
    ]);
    rmSync(dir, { recursive: true, force: true });
  });
});
