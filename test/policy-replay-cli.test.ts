import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAuditStore } from '../src/audit/store';
import { loadPolicy } from '../src/policy/load';
import { MARKDOWN_MARKER } from '../src/policy/replay/format-markdown';
import type { ReplayReport } from '../src/policy/replay/report-types';
import { PROPOSED_POLICIES, RECORDED_POLICIES, recordTraffic } from './fixtures/replay/traffic';
import { runCli } from './helpers/serve-process';

/**
 * `tollgate policy replay` as CI runs it: the built CLI in a child
 * process, judged by exit code and output (the in-process details are in policy-replay.test.ts).
 */

const tollgate = runCli;

let dir: string;
let dbFile: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-replay-cli-'));
  dbFile = join(dir, 'audit.db');
  const loaded = loadPolicy(RECORDED_POLICIES);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const store = openAuditStore(dbFile);
  recordTraffic(store, loaded.policy, Date.now());
  store.close();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

describe('tollgate policy replay', () => {
  test('--format json: the whole report as one JSON document', () => {
    const run = tollgate('policy', 'replay', '--db', dbFile, '--policies', PROPOSED_POLICIES, '--format', 'json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const report = JSON.parse(run.stdout) as ReplayReport;
    expect(Object.keys(report)).toEqual([
      'policy', 'db', 'window', 'records', 'recorded_policy_versions', 'summary', 'newly_denied', 'newly_allowed',
      'newly_would_deny', 'no_longer_would_deny', 'rule_hits', 'never_matching', 'notes', 'elapsed_ms',
    ]);
    expect(report.policy).toMatchObject({ dir: PROPOSED_POLICIES, files: ['policy.yaml'], rules: 13 });
    expect(report.policy.version).toMatch(/^(git:[0-9a-f]{12}(-dirty)?|sha256:[0-9a-f]{12})$/);
    expect(report.records).toEqual({ in_window: 42, replayed: 39, skipped_malformed: 2, skipped_undecided: 1, shapes: 13, decisions: 13 });
    expect(report.newly_denied.map((r) => [r.destination, r.requests])).toEqual([
      ['gitlab.com:443', 5], ['bucket.s3.amazonaws.com:443', 4], ['deb.debian.org:80', 2],
    ]);
    expect(report.newly_denied[0].last_seen).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(report.newly_allowed.map((r) => r.destination)).toEqual(['pypi.org:443', '10.1.2.3:9100']);
  });

  test('--format markdown: a pull-request comment', () => {
    const run = tollgate('policy', 'replay', '--db', dbFile, '--policies', PROPOSED_POLICIES, '--format', 'markdown');
    expect(run.status).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines.slice(0, 2)).toEqual([MARKDOWN_MARKER, '## tollgate policy replay: 3 destinations newly denied']);
    expect(lines).toContain('### Newly denied');
    expect(lines.some((l) => l.startsWith('| `gitlab.com:443` | 5 | ci-runners, office | 10.0.8.6, 192.168.1.10 |'))).toBe(true);
    expect(lines).toContain('### Newly allowed');
    expect(lines.some((l) => l.startsWith('| `pypi.org:443` | 6 | office | 192.168.1.10 |'))).toBe(true);
    expect(lines).toContain('### Rule hit changes');
    expect(lines).toContain('### Rules that would never match');
    expect(lines).toContain('| `unused-new` | `policy.yaml:65` | allow | no recorded request matches it |');
  });

  test('--format text is the default', () => {
    const run = tollgate('policy', 'replay', '--db', dbFile, '--policies', PROPOSED_POLICIES);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^tollgate policy replay: /);
    expect(run.stdout).toContain('newly denied: 3 destinations, 11 requests\n');
    expect(run.stdout).toContain('note: The destination guard is not replayed for names');
  });

  test('--fail-on-new-denials: exit 1 when something becomes newly denied, else 0', () => {
    const failing = tollgate('policy', 'replay', '--db', dbFile, '--policies', PROPOSED_POLICIES, '--format', 'markdown', '--fail-on-new-denials');
    expect(failing.status).toBe(1);
    expect(failing.stdout).toContain('### Newly denied');
    expect(tollgate('policy', 'replay', '--db', dbFile, '--policies', RECORDED_POLICIES, '--fail-on-new-denials').status).toBe(0);
    // Outside the window nothing is denied anew.
    expect(tollgate('policy', 'replay', '--db', dbFile, '--policies', PROPOSED_POLICIES, '--since', '15m', '--fail-on-new-denials').status).toBe(0);
  });

  test('the database is only read', () => {
    const before = sha256(dbFile);
    expect(tollgate('policy', 'replay', '--db', dbFile, '--policies', PROPOSED_POLICIES, '--format', 'json').status).toBe(0);
    expect(sha256(dbFile)).toBe(before);
  });

  test.each([
    ['no --db', ['--policies', PROPOSED_POLICIES], /--db FILE is required/],
    ['no --policies', ['--db', 'x.db'], /--policies DIR is required/],
    ['a missing database', ['--db', 'nope/missing.db', '--policies', PROPOSED_POLICIES], /cannot open the audit database nope\/missing\.db/],
    ['a bad --since', ['--db', 'x.db', '--policies', PROPOSED_POLICIES, '--since', 'last week'], /--since "last week": use a look-back such as/],
    ['a bad --format', ['--db', 'x.db', '--policies', PROPOSED_POLICIES, '--format', 'html'], /--format must be text, markdown or json/],
    ['invalid policies', ['--db', 'x.db', '--policies', 'test/fixtures/policies/bad-action'], /invalid policies in .*\npolicy\.yaml:4: rule "allw"/],
    ['an extra argument', ['--db', 'x.db', '--policies', PROPOSED_POLICIES, 'extra'], /unexpected argument "extra"/],
  ])('bad input (%s): exit 2 with a message', (_name, args, message) => {
    const run = tollgate('policy', 'replay', ...args);
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(message);
  });

  test('a file that is not an audit database: exit 2', () => {
    const other = join(dir, 'other.db');
    writeFileSync(other, '');
    const run = tollgate('policy', 'replay', '--db', other, '--policies', PROPOSED_POLICIES);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/is not a tollgate audit database/);
  });

  test('a truncated database: exit 2, never 1 (which means new denials)', () => {
    const truncated = join(dir, 'truncated.db');
    writeFileSync(truncated, readFileSync(dbFile).subarray(0, 8192));
    const run = tollgate('policy', 'replay', '--db', truncated, '--policies', PROPOSED_POLICIES, '--fail-on-new-denials');
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^tollgate policy replay: /);
  });

  test('--help', () => {
    const run = tollgate('policy', 'replay', '--help');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^usage: tollgate policy replay \(--db FILE \| --audit-url URL\) --policies DIR/);
    expect(tollgate('--help').stdout).toContain('tollgate policy replay --db FILE|--audit-url URL --policies DIR');
  });
});
