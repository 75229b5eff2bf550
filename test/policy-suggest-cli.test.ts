import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { openAuditStore } from '../src/audit/store';
import { loadPolicy } from '../src/policy/load';
import type { ReplayReport } from '../src/policy/replay/report-types';
import { CURRENT_POLICIES, recordSuggestTraffic } from './fixtures/suggest/traffic';
import { runCli } from './helpers/serve-process';

/**
 * `tollgate policy suggest` as a person runs it: the built CLI in a child process. Its file must
 * pass the real `policy check`, and `policy replay --fail-on-new-denials` of the policies plus the
 * file under settings.mode: enforce must fail only for what an explicit deny names.
 */
const tollgate = runCli;

let dir: string;
let dbFile: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-suggest-cli-'));
  dbFile = join(dir, 'audit.db');
  const loaded = loadPolicy(CURRENT_POLICIES);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const store = openAuditStore(dbFile);
  recordSuggestTraffic(store, loaded.policy, Date.now());
  store.close();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function policiesCopy(name: string): string {
  const folder = join(dir, name);
  cpSync(CURRENT_POLICIES, folder, { recursive: true });
  return folder;
}

describe('tollgate policy suggest', () => {
  test('--out into the policies folder: the file passes `policy check`; enforced, replay denies only the explicit', () => {
    const folder = policiesCopy('adopt');
    const out = join(folder, '90-suggested.yaml');
    const run = tollgate('policy', 'suggest', '--db', dbFile, '--policies', folder, '--out', out);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^tollgate policy suggest: wrote 12 rules to .*90-suggested\.yaml for 23 requests to 16 destinations \(by client-group\); 5 destinations left out/);
    expect(run.status).toBe(0);
    const check = tollgate('policy', 'check', '--policies', folder);
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
    // No warnings either: check prints only its summary line.
    expect(check.stdout).toMatch(/^ok: 3 files, 15 rules[^\n]*\n[^\n]*policies are valid\n$/);

    const settings = join(folder, '00-settings.yaml');
    writeFileSync(settings, readFileSync(settings, 'utf8').replace('mode: report', 'mode: enforce'));
    const replay = tollgate('policy', 'replay', '--db', dbFile, '--policies', folder, '--since', '14d', '--format', 'json', '--fail-on-new-denials');
    const report = JSON.parse(replay.stdout) as ReplayReport;
    expect(report.newly_denied.map((r) => [r.destination, r.proposed.rules])).toEqual([['pastebin.com:443', ['deny-paste']]]);
    expect(replay.status).toBe(1);
  });

  test('stdout by default, --by none and --with-paths, the same rules as YAML', () => {
    const run = tollgate('policy', 'suggest', '--db', dbFile, '--policies', CURRENT_POLICIES, '--by', 'none', '--with-paths', '--since', '2d');
    expect(run.status).toBe(0);
    const doc = parse(run.stdout) as { version: number; rules: Array<{ name: string; clients?: string[]; methods?: string[] }> };
    expect(doc.version).toBe(1);
    expect(doc.rules.some((r) => r.clients !== undefined)).toBe(false);
    expect(doc.rules.find((r) => r.name === 'debian-org-http')?.methods).toEqual(['GET', 'HEAD']);
    expect(run.stderr).toContain('(by none)');
  });

  test('a file that would load before existing ones gets a warning', () => {
    const folder = policiesCopy('early');
    const run = tollgate('policy', 'suggest', '--db', dbFile, '--policies', folder, '--out', join(folder, '05-suggested.yaml'));
    expect(run.status).toBe(0);
    expect(run.stderr).toContain('warning: 05-suggested.yaml loads before 10-rules.yaml; rename it to sort last');
  });

  test('bad input: exit 2 with the reason', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--by', 'team'], /--by must be client-group or none/],
      [['--min-requests', '0'], /--min-requests must be a whole number/],
      [['--min-requests', '1.5'], /--min-requests must be a whole number/],
      [['--since', 'yesterday'], /--since "yesterday"/],
      [['extra'], /unexpected argument "extra"/],
    ];
    for (const [args, message] of cases) {
      const run = tollgate('policy', 'suggest', '--db', dbFile, '--policies', CURRENT_POLICIES, ...args);
      expect(run.stderr).toMatch(message);
      expect(run.status).toBe(2);
    }
    expect(tollgate('policy', 'suggest', '--db', dbFile).stderr).toMatch(/--policies DIR is required/);
    expect(tollgate('policy', 'suggest', '--db', join(dir, 'none.db'), '--policies', CURRENT_POLICIES).status).toBe(2);
    const ungrouped = join(dir, 'ungrouped');
    cpSync(CURRENT_POLICIES, ungrouped, { recursive: true });
    writeFileSync(join(ungrouped, '00-settings.yaml'), 'version: 1\nsettings:\n  default: allow\n  mode: report\n');
    writeFileSync(join(ungrouped, '10-rules.yaml'), 'version: 1\nrules: []\n');
    const noGroups = tollgate('policy', 'suggest', '--db', dbFile, '--policies', ungrouped, '--by', 'client-group');
    expect(noGroups.stderr).toMatch(/define no client groups; use --by none/);
    expect(noGroups.status).toBe(2);
    // Without groups, --by defaults to none.
    const byDefault = tollgate('policy', 'suggest', '--db', dbFile, '--policies', ungrouped);
    expect(byDefault.status).toBe(0);
    expect(byDefault.stderr).toContain('(by none)');
  });

  test('--help', () => {
    const run = tollgate('policy', 'suggest', '--help');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^usage: tollgate policy suggest/);
  });
});
