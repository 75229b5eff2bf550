import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { openAuditStore } from '../src/audit/store';
import { checkPolicies } from '../src/policy/check';
import { loadPolicy, type Policy } from '../src/policy/load';
import { openSqliteTraffic, type RecordedTraffic } from '../src/policy/replay/recorded-traffic';
import { replayTraffic } from '../src/policy/replay/replay';
import type { ReplayReport } from '../src/policy/replay/report-types';
import { parseWindow } from '../src/policy/replay/window';
import { exactEntry, familyOf, globEntry } from '../src/policy/suggest/host-entries';
import { pathPatterns } from '../src/policy/suggest/path-patterns';
import { ruleNames } from '../src/policy/suggest/rule-names';
import { suggestPolicy, type SuggestOptions, type SuggestResult } from '../src/policy/suggest/suggest';
import { CURRENT_POLICIES, recordSuggestTraffic } from './fixtures/suggest/traffic';

/**
 * `policy suggest` on traffic recorded in report mode under test/fixtures/suggest/current, and
 * the proof the issue asks for: the current policies plus the suggestion, replayed over the same
 * window with settings.mode: enforce, deny nothing new but what an explicit deny rule names.
 */
const NOW = new Date('2026-03-01T12:00:00Z');
const WINDOW = parseWindow('14d', NOW);

interface RuleYaml {
  name: string;
  action: string;
  clients?: string[];
  hosts: string[];
  ports: number[];
  methods?: string[];
  paths?: string[];
}

function policyAt(dir: string): Policy {
  const loaded = loadPolicy(dir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.policy;
}

let dir: string;
let traffic: RecordedTraffic;
const current = policyAt(CURRENT_POLICIES);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-suggest-'));
  const store = openAuditStore(join(dir, 'audit.db'));
  recordSuggestTraffic(store, current, NOW.getTime());
  store.close();
  traffic = openSqliteTraffic(join(dir, 'audit.db'));
});

afterAll(async () => {
  await traffic.close();
  rmSync(dir, { recursive: true, force: true });
});

function suggest(options: Partial<SuggestOptions> = {}, policy = current): Promise<SuggestResult> {
  return suggestPolicy(traffic, policy, { window: WINDOW, now: NOW, minRequests: 1, by: null, withPaths: false, ...options });
}

const rulesOf = (result: SuggestResult): RuleYaml[] => (parse(result.yaml) as { rules: RuleYaml[] }).rules;
const byName = (rules: RuleYaml[]): Record<string, RuleYaml> => Object.fromEntries(rules.map((r) => [r.name, r]));

/** A folder: the current policies, the suggestion as 90-suggested.yaml, settings edited. */
function combined(name: string, yaml: string, settings?: string): string {
  const folder = join(dir, name);
  cpSync(CURRENT_POLICIES, folder, { recursive: true });
  writeFileSync(join(folder, '90-suggested.yaml'), yaml);
  if (settings !== undefined) {
    const file = join(folder, '00-settings.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace(/default: deny\n {2}mode: report/, settings));
  }
  return folder;
}

function replay(folder: string): Promise<ReplayReport> {
  return replayTraffic({ policy: policyAt(folder), policiesDir: folder, traffic, window: WINDOW, now: NOW });
}

const EXPLICIT_DENY_RULES = current.rules.filter((r) => r.action === 'deny').map((r) => r.name);

describe('policy suggest: the rules', () => {
  let result: SuggestResult;
  let rules: Record<string, RuleYaml>;
  beforeAll(async () => {
    result = await suggest();
    rules = byName(rulesOf(result));
  });

  test('one rule per client group and destination family, named readably, clients only where grouped', () => {
    expect(Object.keys(rules)).toEqual([
      'ci-runners-ip-2606-4700-1111', 'ci-runners-ip-93-184-216-34', 'ci-runners-github-com',
      'office-alpha-s3-amazonaws-com', 'office-beta-s3-amazonaws-com', 'office-bucket-s3-amazonaws-com', 'office-debian-org',
      'office-gamma-s3-amazonaws-com', 'ungrouped-1e3', 'ungrouped-example-com', 'ungrouped-example-org', 'ungrouped-yes',
    ]);
    expect(rules['ci-runners-github-com']).toEqual({ name: 'ci-runners-github-com', action: 'allow', clients: ['ci-runners'], hosts: ['**.github.com'], ports: [22, 443] });
    expect(rules['office-debian-org']).toEqual({ name: 'office-debian-org', action: 'allow', clients: ['office'], hosts: ['deb.debian.org'], ports: [80] });
    expect(rules['ungrouped-example-org']).toEqual({ name: 'ungrouped-example-org', action: 'allow', hosts: ['docs.example.org'], ports: [443] });
    expect(result.summary.by).toBe('client-group');
  });

  test('the private PSL section: buckets stay exact hosts, no glob on a public suffix', () => {
    const hosts = Object.values(rules).flatMap((r) => r.hosts);
    expect(hosts).toEqual(expect.arrayContaining(['alpha.s3.amazonaws.com', 'beta.s3.amazonaws.com', 'gamma.s3.amazonaws.com', 'bucket.s3.amazonaws.com']));
    expect(hosts.filter((h) => h.includes('*'))).toEqual(['**.github.com']);
  });

  test('IP literals become /32 and /128 entries flagged for review', () => {
    expect(rules['ci-runners-ip-93-184-216-34'].hosts).toEqual(['93.184.216.34/32']);
    expect(rules['ci-runners-ip-2606-4700-1111'].hosts).toEqual(['2606:4700::1111/128']);
    expect(result.summary.ip_literal_rules).toEqual(['ci-runners-ip-2606-4700-1111', 'ci-runners-ip-93-184-216-34']);
    expect(result.yaml).toMatch(/# REVIEW: an IP-literal destination[^\n]*\n\s+- name: ci-runners-ip-93-184-216-34/);
  });

  test('each rule has a comment: requests, clients seen, last seen', () => {
    expect(result.yaml).toContain(
      '  # 9 requests to 5 destinations from 2 clients (10.0.8.5, 10.0.8.6), last seen 2026-03-01T11:50:00.000Z\n' +
      '  # glob: 4 hosts of github.com were seen (the glob also covers github.com itself): api.github.com, codeload.github.com, github.com, objects.github.com\n' +
      '  - name: ci-runners-github-com\n',
    );
    expect(result.yaml).toMatch(/# REVIEW: for every client[^\n]*\n\s+- name: ungrouped-yes/);
  });

  test('hosts a YAML reader could misread are quoted: the file reads back as strings', () => {
    expect(result.yaml).toContain('hosts: [ "yes" ]');
    expect(result.yaml).toContain('hosts: [ "1e3" ]');
    expect(rules['ungrouped-yes'].hosts).toEqual(['yes']);
    expect(rules['ungrouped-1e3'].hosts).toEqual(['1e3']);
    expect(rules['ungrouped-example-com'].hosts).toEqual(['_svc.example.com']);
  });

  test('left out, and listed at the end: explicit denies, the guard, what a rule already allows', () => {
    expect(result.summary.left_out.map((r) => [r.reason, r.destination, r.requests, r.rules])).toEqual([
      ['explicit_deny', 'bucket.s3.amazonaws.com:443', 2, ['ci-no-s3-trial']],
      ['explicit_deny', 'pastebin.com:443', 1, ['deny-paste']],
      ['guard', 'intranet.corp.example:443', 2, ['(guard)']],
      ['guard', '10.1.2.3:9100', 1, ['(guard)']],
      ['already_allowed', 'registry.npmjs.org:443', 4, ['npm']],
    ]);
    const closing = result.yaml.slice(result.yaml.lastIndexOf('# Left out:'));
    expect(closing).toContain('#     pastebin.com:443  1 request, by deny-paste\n');
    expect(closing).toContain('#     10.1.2.3:9100  1 request, by (guard)\n');
    expect(closing).toContain('#     registry.npmjs.org:443  4 requests, by npm\n');
  });

  test('requests inside inspected tunnels (kind https) are counted apart, not as malformed', () => {
    expect(result.summary.records).toEqual({ in_window: 35, considered: 33, inside_tunnels: 2, skipped_malformed: 0, skipped_undecided: 0 });
    expect(result.yaml).toContain('# 2 requests inside inspected tunnels (kind https)');
  });
});

describe('policy suggest: the proof by replay', () => {
  test('current + suggestion with settings.mode: enforce: nothing newly denied but what an explicit deny names', async () => {
    for (const options of [{}, { by: 'none' as const }, { withPaths: true }]) {
      const { yaml } = await suggest(options);
      const report = await replay(combined(`enforce-${JSON.stringify(options).replace(/\W/g, '')}`, yaml, 'default: deny\n  mode: enforce'));
      // The 33 the suggestion considered and the 2 requests inside inspected tunnels, which replay decides too.
      expect(report.records.replayed).toBe(35);
      // pastebin.com was only reported under mode: report; ci-no-s3-trial keeps its own mode: report.
      expect(report.newly_denied.map((r) => [r.destination, r.proposed.rules])).toEqual([['pastebin.com:443', ['deny-paste']]]);
      for (const row of report.newly_denied) for (const rule of row.proposed.rules) expect(EXPLICIT_DENY_RULES).toContain(rule);
    }
  });

  test('without the suggestion the same switch would deny everything the default only reported', async () => {
    const folder = join(dir, 'enforce-bare');
    cpSync(CURRENT_POLICIES, folder, { recursive: true });
    const file = join(folder, '00-settings.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('mode: report', 'mode: enforce'));
    // Every destination suggested (16, bucket.s3.amazonaws.com for office among them) and pastebin.com.
    const { summary } = await suggest();
    expect(summary.suggested.destinations).toBe(16);
    expect((await replay(folder)).summary.newly_denied.destinations).toBe(17);
  });

  test('an explicit deny is never overridden: same-host traffic elsewhere, --by none, report or enforce', async () => {
    for (const by of ['client-group', 'none'] as const) {
      const { yaml } = await suggest({ by });
      // bucket.s3.amazonaws.com from office IS suggested (no deny applies there), and with --by none for every client.
      expect(rulesOf(await suggest({ by })).some((r) => r.hosts.includes('bucket.s3.amazonaws.com'))).toBe(true);
      for (const [name, settings] of [[`report-${by}`, undefined], [`enforce2-${by}`, 'default: deny\n  mode: enforce']] as const) {
        const report = await replay(combined(name, yaml, settings));
        // The explicit denies still decide: nothing they decided becomes allowed or stops being reported.
        const undone = [...report.newly_allowed, ...report.no_longer_would_deny].filter((r) => r.recorded.rules.some((rule) => EXPLICIT_DENY_RULES.includes(rule)));
        expect(undone).toEqual([]);
        expect(report.rule_hits.filter((h) => EXPLICIT_DENY_RULES.includes(h.rule))).toEqual([]);
      }
    }
  });

  test('the suggestion loaded BEFORE the deny would undo it: why the file must sort last', async () => {
    const { yaml } = await suggest({ by: 'none' });
    const folder = join(dir, 'misordered');
    cpSync(CURRENT_POLICIES, folder, { recursive: true });
    writeFileSync(join(folder, '05-suggested.yaml'), yaml);
    const report = await replay(folder);
    expect(report.no_longer_would_deny.map((r) => r.destination)).toContain('bucket.s3.amazonaws.com:443');
  });
});

describe('policy suggest: options', () => {
  test('--by none: no clients, names without a group, one glob over every client', async () => {
    const rules = byName(rulesOf(await suggest({ by: 'none' })));
    expect(Object.values(rules).every((r) => r.clients === undefined)).toBe(true);
    expect(rules['github-com']).toMatchObject({ hosts: ['**.github.com'], ports: [22, 443] });
    expect(rules['bucket-s3-amazonaws-com'].hosts).toEqual(['bucket.s3.amazonaws.com']);
    expect(rules['ip-93-184-216-34'].hosts).toEqual(['93.184.216.34/32']);
  });

  test('--with-paths: methods and paths for plain HTTP only', async () => {
    const rules = byName(rulesOf(await suggest({ withPaths: true })));
    expect(rules['office-debian-org-http']).toEqual({
      name: 'office-debian-org-http', action: 'allow', clients: ['office'], hosts: ['deb.debian.org'], ports: [80],
      methods: ['GET', 'HEAD'], paths: ['/debian/dists/stable/Release', '/debian/pool/main/x.deb'],
    });
    expect(rules['office-debian-org']).toBeUndefined();
    expect(rules['ci-runners-github-com'].methods).toBeUndefined();
  });

  test('--min-requests: rarer destinations are left out and listed', async () => {
    const result = await suggest({ minRequests: 2 });
    const names = rulesOf(result).map((r) => r.name);
    expect(names).toEqual(['ci-runners-ip-93-184-216-34', 'ci-runners-github-com', 'office-debian-org']);
    // The glob family's hosts count one by one: objects.github.com (1) and github.com:22 (1) go.
    expect(byName(rulesOf(result))['ci-runners-github-com']).toMatchObject({ hosts: ['api.github.com', 'codeload.github.com', 'github.com'], ports: [443] });
    expect(result.summary.left_out.filter((r) => r.reason === 'below_min_requests').map((r) => r.destination)).toEqual(
      expect.arrayContaining(['objects.github.com:443', 'github.com:22', 'alpha.s3.amazonaws.com:443', 'yes:8080']),
    );
  });

  test('default allow in report mode: the default-allowed traffic is suggested alike', async () => {
    const folder = combined('default-allow', 'version: 1\nrules: []\n', 'default: allow\n  mode: report');
    const denyDefault = rulesOf(await suggest());
    expect(rulesOf(await suggest({}, policyAt(folder)))).toEqual(denyDefault);
  });

  test('an enforced default deny suggests nothing: that traffic was refused, not reported', async () => {
    const folder = combined('enforced', 'version: 1\nrules: []\n', 'default: deny\n  mode: enforce');
    const result = await suggest({}, policyAt(folder));
    expect(rulesOf(result)).toEqual([]);
    // The 16 destinations suggested in report mode, and the two the guard refused: under an enforced
    // default deny the policy refuses them before the guard is asked (as the proxy does).
    expect(result.summary.left_out.filter((r) => r.reason === 'default_deny')).toHaveLength(18);
    expect(loadPolicy(combined('enforced-empty', result.yaml)).ok).toBe(true);
  });
});

describe('policy suggest: building blocks', () => {
  test('families by registrable domain, private section included', () => {
    expect(familyOf('a.b.github.com', 'name')).toBe('github.com');
    expect(familyOf('bucket.s3.amazonaws.com', 'name')).toBe('bucket.s3.amazonaws.com');
    expect(familyOf('s3.amazonaws.com', 'name')).toBe('s3.amazonaws.com');
    expect(familyOf('user.github.io', 'name')).toBe('user.github.io');
    expect(familyOf('intranet', 'name')).toBe('intranet');
    expect(familyOf('10.1.2.3', 'ipv4')).toBe('10.1.2.3');
  });

  test('a glob needs three subdomains and never sits on a public suffix', () => {
    expect(globEntry('example.com', ['a.example.com', 'b.example.com'])).toBeNull();
    expect(globEntry('example.com', ['a.example.com', 'b.example.com', 'example.com'])).toBeNull();
    expect(globEntry('example.com', ['a.example.com', 'b.example.com', 'c.d.example.com'])).toBe('**.example.com');
    expect(globEntry('s3.amazonaws.com', ['a.s3.amazonaws.com', 'b.s3.amazonaws.com', 'c.s3.amazonaws.com'])).toBeNull();
    expect(globEntry('github.io', ['a.github.io', 'b.github.io', 'c.github.io'])).toBeNull();
    expect(globEntry('co.uk', ['a.co.uk', 'b.co.uk', 'c.co.uk'])).toBeNull();
  });

  test('a host the policy cannot write exactly is refused, never approximated', () => {
    expect(exactEntry('a*b.example.com', 'name')).toBeNull();
    expect(exactEntry('a?b.example.com', 'name')).toBeNull();
    expect(exactEntry('fe80::1%eth0', 'ipv6')).toBeNull();
    expect(exactEntry('example.com', 'name')).toBe('example.com');
    expect(exactEntry('::1', 'ipv6')).toBe('::1/128');
  });

  test('paths: exact while few and plain, else the first segment and /**, else none', () => {
    expect(pathPatterns(new Set(['/a/b', '/c']))).toEqual(['/a/b', '/c']);
    expect(pathPatterns(new Set(['/a/{x,y}', '/a/b']))).toEqual(['/a/**', '/a/b']);
    expect(pathPatterns(new Set(Array.from({ length: 11 }, (_, i) => `/pool/${i}.deb`)))).toEqual(['/pool/**']);
    expect(pathPatterns(new Set(['/a b']))).toBeNull();
  });

  test('names are unique across the policy and valid', () => {
    const parts = { group: 'ci', family: 'github.com', ipLiteral: false, http: false, grouped: true };
    expect(ruleNames([parts, parts, { ...parts, group: null }], new Set(['ci-github-com']))).toEqual(['ci-github-com-2', 'ci-github-com-3', 'ungrouped-github-com']);
    expect(ruleNames([{ group: null, family: '_svc', ipLiteral: false, http: false, grouped: false }], new Set())).toEqual(['host-_svc']);
    const long = ruleNames([{ group: 'g', family: `${'a'.repeat(120)}.com`, ipLiteral: false, http: true, grouped: true }], new Set())[0];
    expect(long.length).toBeLessThanOrEqual(100);
    expect(long).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/);
  });
});

describe('examples/policy-repo: the adoption path of ADOPTION.md', () => {
  test('report mode, suggest into 90-suggested.yaml, check, enforce: replay denies only what its deny rules name', async () => {
    const example = join(__dirname, '..', 'examples', 'policy-repo', 'policies');
    const folder = join(dir, 'example-repo');
    cpSync(example, folder, { recursive: true });
    const settings = join(folder, '00-settings.yaml');
    writeFileSync(settings, readFileSync(settings, 'utf8').replace('mode: enforce', 'mode: report'));
    const inReportMode = policyAt(folder);
    const store = openAuditStore(join(dir, 'example.db'));
    recordSuggestTraffic(store, inReportMode, NOW.getTime());
    store.close();
    const recorded = openSqliteTraffic(join(dir, 'example.db'));
    try {
      const result = await suggestPolicy(recorded, inReportMode, { window: WINDOW, now: NOW, minRequests: 1, by: null, withPaths: false });
      const rules = byName(rulesOf(result));
      // The example's github rule allows github.com and *.github.com on 443: only port 22 is new.
      expect(rules['ci-runners-github-com']).toMatchObject({ hosts: ['github.com'], ports: [22] });
      expect(result.summary.left_out.filter((r) => r.reason === 'explicit_deny').map((r) => [r.destination, r.rules])).toEqual([
        ['bucket.s3.amazonaws.com:443', ['ci-no-object-storage']], ['pastebin.com:443', ['deny-paste-sites']],
      ]);
      writeFileSync(join(folder, '90-suggested.yaml'), result.yaml);
      const check = checkPolicies(folder);
      expect(check.ok).toBe(true);
      expect(check.lines).toHaveLength(1);
      writeFileSync(settings, readFileSync(settings, 'utf8').replace('mode: report', 'mode: enforce'));
      const report = await replayTraffic({ policy: policyAt(folder), policiesDir: folder, traffic: recorded, window: WINDOW, now: NOW });
      expect(report.newly_denied.map((r) => [r.destination, r.proposed.rules])).toEqual([['pastebin.com:443', ['deny-paste-sites']]]);
    } finally {
      await recorded.close();
    }
  });
});
