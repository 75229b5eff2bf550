import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { AuditOpen } from '../src/audit/record-types';
import { openAuditStore } from '../src/audit/store';
import { loadPolicy } from '../src/policy/load';
import { openSqliteTraffic } from '../src/policy/replay/recorded-traffic';
import { formatUnusedText, unusedRules, type UnusedReport } from '../src/policy/replay/unused';
import { parseWindow } from '../src/policy/replay/window';

/** `tollgate policy unused`: rules without hits in the window, and rules past or near `expires`. */
const NOW = new Date('2026-03-01T12:00:00Z');
const DAY = 86_400_000;
const repoRoot = resolve(__dirname, '..');
const CLI = join(repoRoot, 'dist', 'cli.js');

const POLICY = `version: 1
rules:
  - name: busy
    action: allow
    hosts: [busy.example]
  - name: quiet-lately
    action: allow
    hosts: [quiet.example]
  - name: never-used
    action: deny
    hosts: [never.example]
  - name: ends-soon
    action: allow
    hosts: [soon.example]
    expires: 2026-03-05
  - name: ended
    action: allow
    hosts: [ended.example]
    expires: 2026-02-20
  - name: ends-later
    action: allow
    hosts: [later.example]
    expires: 2026-06-30
`;

let dir: string;
let policies: string;
let dbFile: string;

function record(rule: string | null, daysAgo: number): AuditOpen {
  return {
    startedAt: new Date(NOW.getTime() - daysAgo * DAY), clientIp: '10.0.0.1', clientPort: 5000, clients: [], user: null,
    kind: 'connect', method: 'CONNECT', scheme: null, host: `${rule ?? 'x'}.example`, port: 443, path: null, resolvedIp: null,
    decision: 'allow', wouldDeny: false, rule, ruleSource: null, reason: 'test', policyVersion: 'sha256:000000000000',
  };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-unused-'));
  policies = join(dir, 'policies');
  mkdirSync(policies);
  writeFileSync(join(policies, 'policy.yaml'), POLICY);
  dbFile = join(dir, 'audit.db');
  const store = openAuditStore(dbFile);
  const done = { endedAt: NOW, status: 200, bytesUp: 0, bytesDown: 0, error: null };
  for (const [rule, daysAgo] of [['busy', 1], ['busy', 2], ['busy', 45], ['quiet-lately', 40], ['ends-soon', 3], ['(default)', 1], [null, 1]] as const) {
    store.record(record(rule, daysAgo), done);
  }
  store.close();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function unused(since: string): Promise<UnusedReport> {
  const loaded = loadPolicy(policies);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const traffic = openSqliteTraffic(dbFile);
  try {
    return await unusedRules({ policy: loaded.policy, policiesDir: policies, traffic, window: parseWindow(since, NOW), now: NOW });
  } finally {
    await traffic.close();
  }
}

describe('policy unused', () => {
  test('rules without hits in the window, with their last hit before it', async () => {
    const report = await unused('30d');
    expect(report.unused).toEqual([
      { rule: 'quiet-lately', source: 'policy.yaml:6', action: 'allow', last_hit: new Date(NOW.getTime() - 40 * DAY).toISOString() },
      { rule: 'never-used', source: 'policy.yaml:9', action: 'deny', last_hit: null },
      { rule: 'ended', source: 'policy.yaml:16', action: 'allow', last_hit: null },
      { rule: 'ends-later', source: 'policy.yaml:20', action: 'allow', last_hit: null },
    ]);
    expect(report.rules.find((r) => r.rule === 'busy')).toMatchObject({ hits: 2 });
    expect(report.records_in_window).toBe(5);
  });

  test('a longer window finds the older hits', async () => {
    expect((await unused('60d')).unused.map((u) => u.rule)).toEqual(['never-used', 'ended', 'ends-later']);
  });

  test('rules expired or expiring within 14 days', async () => {
    expect((await unused('30d')).expiring).toEqual([
      { rule: 'ends-soon', source: 'policy.yaml:12', expires: '2026-03-05', days_left: 5, expired: false },
      { rule: 'ended', source: 'policy.yaml:16', expires: '2026-02-20', days_left: -8, expired: true },
    ]);
  });

  test('says when the database does not reach back to the start of the window', async () => {
    expect((await unused('30d')).notes).toEqual([]);
    expect((await unused('2w')).notes).toEqual([]);
    expect((await unused('90d')).notes[0]).toMatch(/^The database holds records only since 2026-01-15T12:00:00\.000Z/);
  });

  test('text format', async () => {
    const text = formatUnusedText(await unused('30d'));
    expect(text).toContain('rules with no hits in the window: 4 of 6\n');
    expect(text).toContain('  never-used (policy.yaml:9, deny): never decided a recorded request\n');
    expect(text).toContain('rules expired or expiring within 14 days: 2\n  ends-soon (policy.yaml:12): expires on 2026-03-05 (in 5 days)\n  ended (policy.yaml:16): expired on 2026-02-20 and no longer matches\n');
  });
});

describe('tollgate policy unused (CLI)', () => {
  function tollgate(...args: string[]): { status: number | null; stdout: string; stderr: string } {
    const env = { ...process.env };
    delete env.TOLLGATE_POLICIES;
    const run = spawnSync(process.execPath, [CLI, ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 20000, env });
    if (run.error) throw run.error;
    return { status: run.status, stdout: run.stdout, stderr: run.stderr };
  }

  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run "npm run build" first');
  });

  test('--format json; the window runs back from now, so every record here is older than 1 minute', () => {
    const run = tollgate('policy', 'unused', '--db', dbFile, '--policies', policies, '--since', '1m', '--format', 'json');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const report = JSON.parse(run.stdout) as UnusedReport;
    expect(report.unused).toHaveLength(6);
    expect(report.policy).toMatchObject({ dir: policies, rules: 6 });
    expect(report.policy.version).toMatch(/^sha256:[0-9a-f]{12}$/);
  });

  test.each([
    ['no --db', ['--policies', 'x'], /--db FILE is required/],
    ['a bad --format', ['--db', 'x.db', '--format', 'markdown'], /--format must be text or json/],
    ['a bad --since', ['--db', 'x.db', '--since', '0d'], /the window is empty/],
  ])('bad input (%s): exit 2', (_name, args, message) => {
    const run = tollgate('policy', 'unused', ...args);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(message);
  });
});
