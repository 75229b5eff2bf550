import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAuditStore } from '../src/audit/store';
import { loadPolicy, type Policy } from '../src/policy/load';
import { formatMarkdown, MARKDOWN_MARKER } from '../src/policy/replay/format-markdown';
import { formatText } from '../src/policy/replay/format-text';
import { openSqliteTraffic, type RecordedTraffic } from '../src/policy/replay/recorded-traffic';
import { GUARD_NOTE, replayTraffic } from '../src/policy/replay/replay';
import type { ReplayReport } from '../src/policy/replay/report-types';
import { parseWindow } from '../src/policy/replay/window';
import { PROPOSED_POLICIES, RECORDED_POLICIES, recordTraffic } from './fixtures/replay/traffic';

/**
 * `policy replay` on a database recorded under test/fixtures/replay/recorded, replayed against
 * test/fixtures/replay/proposed, whose differences are listed at the top of that file.
 */
const NOW = new Date('2026-03-01T12:00:00Z');
const MINUTE = 60_000;
const ago = (minutes: number): string => new Date(NOW.getTime() - minutes * MINUTE).toISOString();

function policyAt(dir: string): Policy {
  const loaded = loadPolicy(dir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.policy;
}

let dir: string;
let dbFile: string;
let traffic: RecordedTraffic;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-replay-'));
  dbFile = join(dir, 'audit.db');
  const store = openAuditStore(dbFile);
  recordTraffic(store, policyAt(RECORDED_POLICIES), NOW.getTime());
  store.close();
  traffic = openSqliteTraffic(dbFile);
});

afterAll(async () => {
  await traffic.close();
  rmSync(dir, { recursive: true, force: true });
});

function replay(policies: string, since = '7d'): Promise<ReplayReport> {
  return replayTraffic({ policy: policyAt(policies), policiesDir: policies, traffic, window: parseWindow(since, NOW), now: NOW });
}

describe('policy replay against a proposed policy', () => {
  let report: ReplayReport;
  beforeAll(async () => {
    report = await replay(PROPOSED_POLICIES);
  });

  test('counts what it replayed and what it skipped', () => {
    expect(report.records).toEqual({ in_window: 42, replayed: 39, skipped_malformed: 2, skipped_undecided: 1, shapes: 13, decisions: 13 });
    expect(report.recorded_policy_versions).toEqual([{ version: policyAt(RECORDED_POLICIES).version, requests: 42 }]);
    expect(report.summary.unchanged_requests).toBe(39 - 5 - 4 - 2 - 6 - 2 - 7);
  });

  test('newly denied: destinations with counts, client groups and addresses, last seen, rules', () => {
    expect(report.newly_denied).toEqual([
      {
        destination: 'gitlab.com:443', host: 'gitlab.com', port: 443, requests: 5,
        client_groups: ['ci-runners', 'office'], client_ips: ['10.0.8.6', '192.168.1.10'], client_ip_count: 2,
        last_seen: ago(20),
        recorded: { outcomes: ['allow'], rules: ['gitlab'] },
        proposed: { outcomes: ['deny'], rules: ['(default)'] },
      },
      {
        destination: 'bucket.s3.amazonaws.com:443', host: 'bucket.s3.amazonaws.com', port: 443, requests: 4,
        client_groups: ['ci-runners'], client_ips: ['10.0.8.5'], client_ip_count: 1, last_seen: ago(40),
        recorded: { outcomes: ['allow'], rules: ['ci-s3'] },
        proposed: { outcomes: ['deny'], rules: ['ci-s3'] },
      },
      {
        // Only the HEAD requests: the proposed apt rule allows GET alone.
        destination: 'deb.debian.org:80', host: 'deb.debian.org', port: 80, requests: 2,
        client_groups: ['ci-runners'], client_ips: ['10.0.8.5'], client_ip_count: 1, last_seen: ago(60),
        recorded: { outcomes: ['allow'], rules: ['apt'] },
        proposed: { outcomes: ['deny'], rules: ['(default)'] },
      },
    ]);
    expect(report.summary.newly_denied).toEqual({ destinations: 3, requests: 11 });
  });

  test('newly allowed, including an IP literal the proposed allow_ranges exempt from the guard', () => {
    expect(report.newly_allowed.map((r) => [r.destination, r.requests, r.client_groups, r.last_seen, r.recorded.rules, r.proposed.rules])).toEqual([
      ['pypi.org:443', 6, ['office'], ago(80), ['(default)'], ['pypi']],
      ['10.1.2.3:9100', 2, ['ci-runners'], ago(90), ['(guard)'], ['metrics-ip']],
    ]);
  });

  test('report-mode changes are their own section and do not count as denials', () => {
    expect(report.newly_would_deny.map((r) => [r.destination, r.requests, r.recorded.outcomes, r.proposed.outcomes, r.proposed.rules])).toEqual([
      ['cdn.example.net:443', 7, ['allow'], ['would_deny'], ['trial-no-cdn']],
    ]);
    expect(report.no_longer_would_deny).toEqual([]);
  });

  test('unchanged traffic is in no section: allowed, denied, would_deny and guard-refused names alike', () => {
    const changed = [...report.newly_denied, ...report.newly_allowed, ...report.newly_would_deny].map((r) => r.host);
    for (const host of ['github.com', 'pastebin.com', 'docs.example.org', 'intranet.corp.example', 'registry.npmjs.org']) {
      expect(changed).not.toContain(host);
    }
  });

  test('rule hit changes: old and new counts, biggest change first', () => {
    expect(report.rule_hits.map((h) => [h.rule, h.source, h.recorded, h.proposed, h.change])).toEqual([
      ['cdn', 'policy.yaml:49', 7, 0, -7],
      ['trial-no-cdn', 'policy.yaml:19', 0, 7, 7],
      ['pypi', 'policy.yaml:41', 0, 6, 6],
      ['gitlab', null, 5, 0, -5],
      ['(guard)', null, 4, 2, -2],
      ['apt', 'policy.yaml:36', 5, 3, -2],
      ['metrics-ip', 'policy.yaml:45', 0, 2, 2],
      ['(default)', null, 7, 8, 1],
    ]);
  });

  test('rules that would never match, and why', () => {
    expect(report.never_matching.map((r) => [r.rule, r.why, r.shadowed_by, r.matched_requests])).toEqual([
      ['npm', 'no_match', null, 0],
      ['cdn', 'shadowed', 'trial-no-cdn', 7],
      ['internal-name', 'guarded', null, 2],
      ['old-exception', 'expired', null, 0],
      ['unused-new', 'no_match', null, 0],
    ]);
  });

  test('says the guard is not replayed for names', () => {
    expect(report.notes).toContain(GUARD_NOTE);
  });
});

describe('policy replay edge cases', () => {
  test('the recorded policy replayed against itself changes nothing', async () => {
    const same = await replay(RECORDED_POLICIES);
    expect(same.summary).toMatchObject({
      newly_denied: { destinations: 0, requests: 0 },
      newly_allowed: { destinations: 0, requests: 0 },
      newly_would_deny: { destinations: 0, requests: 0 },
      no_longer_would_deny: { destinations: 0, requests: 0 },
      unchanged_requests: 39,
      rule_hit_changes: 0,
    });
    expect(same.never_matching.map((r) => [r.rule, r.why])).toEqual([['npm', 'no_match'], ['metrics-ip', 'guarded'], ['internal-name', 'guarded']]);
  });

  test('the window: --since 30d takes in the ten-day-old request, 55m only the newest', async () => {
    expect((await replay(RECORDED_POLICIES, '30d')).records.replayed).toBe(40);
    const hour = await replay(PROPOSED_POLICIES, '55m');
    expect(hour.records.replayed).toBe(5 + 5 + 4 + 1);
    expect(hour.newly_denied.map((r) => r.destination)).toEqual(['gitlab.com:443', 'bucket.s3.amazonaws.com:443']);
  });

  test('an empty window says so', async () => {
    const empty = await replay(PROPOSED_POLICIES, '1m');
    expect(empty.records.in_window).toBe(0);
    expect(empty.notes).toContain('No requests were recorded in the window: nothing was replayed.');
  });
});

describe('policy replay formats', () => {
  test('markdown: a marker, a heading, a summary line and one table per section', async () => {
    const md = formatMarkdown(await replay(PROPOSED_POLICIES));
    const lines = md.split('\n');
    expect(lines[0]).toBe(MARKDOWN_MARKER);
    expect(lines[1]).toBe('## tollgate policy replay: 3 destinations newly denied');
    expect(md).toContain('**newly denied: 3 destinations (11 requests) · newly allowed: 2 destinations (8 requests) · report-mode changes: 1 destination');
    for (const heading of ['### Newly denied', '### Newly allowed', '### Newly would_deny (report mode: still let through)', '### Rule hit changes', '### Rules that would never match']) {
      expect(lines).toContain(heading);
    }
    expect(lines).toContain('| `gitlab.com:443` | 5 | ci-runners, office | 10.0.8.6, 192.168.1.10 | 2026-03-01 11:40 UTC | allow → deny | `gitlab` → `(default)` |');
    expect(lines).toContain('| `10.1.2.3:9100` | 2 | ci-runners | 10.0.8.5 | 2026-03-01 10:30 UTC | deny → allow | `(guard)` → `metrics-ip` |');
    expect(lines).toContain('| `cdn` | `policy.yaml:49` | 7 | 0 | -7 |');
    expect(lines).toContain('| `gitlab` | - | 5 | 0 | -5 |');
    expect(lines).toContain('| `cdn` | `policy.yaml:49` | allow | every request it matches (7) is decided by an earlier rule, e.g. trial-no-cdn |');
    expect(lines).toContain('| `old-exception` | `policy.yaml:61` | allow | expired on 2020-01-31 |');
    expect(md).toContain('> The destination guard is not replayed for names');
    expect(lines.filter((l) => l === '### No longer would_deny')).toHaveLength(0);
  });

  test('markdown: no changes reads as such; long tables are cut', async () => {
    const md = formatMarkdown(await replay(RECORDED_POLICIES));
    expect(md).toContain('## tollgate policy replay: no new denials');
    expect(md).toMatch(/### Newly denied\n\n_None._/);
    expect(md).toMatch(/### Rule hit changes\n\n_None: every rule decides as many requests as before._/);
    const cut = formatMarkdown(await replay(PROPOSED_POLICIES), 1);
    expect(cut).toContain('_…and 2 destinations more (see `--format json`)._');
  });

  test('text: sections in plain lines', async () => {
    const text = formatText(await replay(PROPOSED_POLICIES), 50);
    expect(text).toContain('newly denied: 3 destinations, 11 requests\n  gitlab.com:443  5 requests, last seen 2026-03-01 11:40 UTC\n    clients: ci-runners, office; 10.0.8.6, 192.168.1.10\n    allow → deny, rule gitlab → (default)\n');
    expect(text).toContain('  pypi (policy.yaml:41): 0 → 6 (+6)\n');
    expect(text).toContain('  old-exception (policy.yaml:61, allow): expired on 2020-01-31\n');
  });
});
