import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { parse } from 'yaml';
import { buildAdminApp } from '../src/admin/app';
import { inByteOrder, shapeKey } from '../src/admin/exported-shapes';
import type { Tally } from '../src/admin/exported-shapes';
import { seeded as seededRandom } from './helpers/admin-fixture';
import { openAuditStore } from '../src/audit/store';
import type { AuditStore } from '../src/audit/store';
import type { AuditOpen } from '../src/audit/record-types';
import { loadPolicy, type Policy } from '../src/policy/load';
import { openSqliteTraffic } from '../src/policy/replay/recorded-traffic';
import { suggestPolicy, type SuggestResult } from '../src/policy/suggest/suggest';
import { CURRENT_POLICIES, recordSuggestTraffic } from './fixtures/suggest/traffic';
import { XSS_PATH, XSS_Q, bodyOf, headerOf } from './helpers/suggest-route';
import { runCli } from './helpers/serve-process';

/**
 * GET /api/policy/suggest on a real SQLite store: the CLI's suggestion for the records the
 * /api/requests filters select, against the policy in force.
 */

const NOW = new Date();
const T = NOW.getTime();
const MINUTE = 60_000;

interface RuleYaml {
  name: string;
  clients?: string[];
  hosts: string[];
  ports: number[];
  paths?: string[];
}

function policyAt(dir: string): Policy {
  const loaded = loadPolicy(dir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.policy;
}

const current = policyAt(CURRENT_POLICIES);
const reload = { ok: true, at: NOW.toISOString(), version: current.version, problems: [] };

/** Records a workload could make hostile: a path of markup and a host that is no host at all. */
function recordHostile(store: AuditStore): void {
  const base: AuditOpen = {
    startedAt: new Date(T - 60 * MINUTE), clientIp: '192.168.1.10', clientPort: 40000, clients: ['office'], user: null, kind: 'http',
    method: 'GET', scheme: 'http', host: 'hostile.example.net', port: 80, path: XSS_PATH, resolvedIp: null, decision: 'allow',
    wouldDeny: true, rule: '(default)', ruleSource: null, reason: 'no rule matched; default deny (report mode: let through)', policyVersion: current.version,
  };
  const done = { endedAt: base.startedAt, status: 200, bytesUp: 0, bytesDown: 0, error: null };
  store.record(base, done);
  store.record({ ...base, kind: 'connect', method: 'CONNECT', scheme: null, port: 443, path: null, host: '<img src=x onerror=alert(1)>.evil' }, done);
}

let dir: string;
let dbFile: string;
let store: AuditStore;
let app: FastifyInstance;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tollgate-suggest-route-'));
  dbFile = join(dir, 'audit.db');
  store = openAuditStore(dbFile);
  recordSuggestTraffic(store, current, T);
  recordHostile(store);
  app = buildAdminApp({ store, ready: () => ({ ok: true, detail: {} }), clock: () => NOW, policy: () => ({ policy: current, lastReload: reload }) });
  await app.ready();
});

afterAll(async () => {
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function suggest(query: string, target = app): Promise<SuggestResult> {
  const res = await target.inject({ method: 'GET', url: `/api/policy/suggest${query === '' ? '' : `?${query}`}` });
  expect({ status: res.statusCode, error: res.statusCode === 200 ? null : res.body }).toEqual({ status: 200, error: null });
  return res.json<SuggestResult>();
}

const rulesOf = (result: SuggestResult): RuleYaml[] => (parse(result.yaml) as { rules: RuleYaml[] }).rules;
const hostsOf = (result: SuggestResult): string[] => rulesOf(result).flatMap((r) => r.hosts).sort();

describe('GET /api/policy/suggest', () => {
  test('without a filter: the CLI\'s file for the same records, 14 days back', async () => {
    const result = await suggest('');
    expect(result.summary.window).toEqual({ since: new Date(T - 14 * 86_400_000).toISOString(), until: NOW.toISOString() });
    expect(headerOf(result.yaml)).toContain('from the sqlite audit history through the admin API (no filter)');
    // The same core on the SQL engine's shapes, same instant and window: the same file but its source.
    const traffic = openSqliteTraffic(dbFile);
    try {
      const direct = await suggestPolicy(traffic, current, { window: { sinceMs: T - 14 * 86_400_000, untilMs: T }, now: NOW, minRequests: 1, by: null, withPaths: false });
      expect(result.summary).toEqual(direct.summary);
      expect(bodyOf(result.yaml)).toBe(bodyOf(direct.yaml));
    } finally {
      await traffic.close();
    }
    // And the built CLI as a person runs it (its own clock: only the header differs).
    const cli = runCli('policy', 'suggest', '--db', dbFile, '--policies', CURRENT_POLICIES);
    expect(cli.status).toBe(0);
    expect(bodyOf(result.yaml)).toBe(bodyOf(cli.stdout));
    expect(result.summary.rules).toBeGreaterThan(5);
    expect(result.summary.records.skipped_malformed).toBe(1);
  });

  test('the options as the CLI\'s: min_requests, by=none, with_paths=1', async () => {
    const cli = runCli('policy', 'suggest', '--db', dbFile, '--policies', CURRENT_POLICIES, '--min-requests', '2', '--by', 'none', '--with-paths');
    expect(cli.status).toBe(0);
    const result = await suggest('min_requests=2&by=none&with_paths=1');
    expect(bodyOf(result.yaml)).toBe(bodyOf(cli.stdout));
    expect(result.summary).toMatchObject({ by: 'none', min_requests: 2, with_paths: true });
    expect(rulesOf(result).every((r) => r.clients === undefined)).toBe(true);
    expect(result.summary.left_out.some((row) => row.reason === 'below_min_requests')).toBe(true);
  });

  test('a host filter: only those hosts are read', async () => {
    const result = await suggest(`host=${encodeURIComponent('**.github.com')}`);
    expect(hostsOf(result)).toEqual(['**.github.com']);
    // 9 CONNECTs and the 2 requests read inside an inspected tunnel to api.github.com.
    expect(result.summary.records).toMatchObject({ in_window: 11, inside_tunnels: 2, considered: 9 });
    expect(result.summary.left_out).toEqual([]);
    expect(headerOf(result.yaml)).toContain('(filters host=**.github.com)');
  });

  test('negated filters leave their records out', async () => {
    const all = await suggest('');
    expect(hostsOf(all)).toEqual(expect.arrayContaining(['alpha.s3.amazonaws.com', 'docs.example.org']));
    const notS3 = await suggest(`not.host=${encodeURIComponent('**.amazonaws.com')}`);
    expect(hostsOf(notS3).filter((h) => h.includes('amazonaws'))).toEqual([]);
    expect(hostsOf(notS3)).toContain('docs.example.org');
    const notOffice = await suggest('not.client=office');
    expect(rulesOf(notOffice).filter((r) => r.clients?.includes('office'))).toEqual([]);
    expect(rulesOf(all).filter((r) => r.clients?.includes('office')).length).toBeGreaterThan(0);
    expect(notOffice.summary.records.in_window).toBeLessThan(all.summary.records.in_window);
    // The explicit deny's destination is left out either way, never suggested.
    expect(all.summary.left_out.find((row) => row.destination === 'pastebin.com:443')?.reason).toBe('explicit_deny');
  });

  test('hostile text stays data: a path of markup is not written, a filter\'s text only in a comment', async () => {
    const result = await suggest(`with_paths=1&q=${encodeURIComponent(XSS_Q)}`);
    const doc = parse(result.yaml) as Record<string, unknown>;
    expect(Object.keys(doc).sort()).toEqual(['rules', 'version']);
    const hostile = rulesOf(result).find((r) => r.hosts.includes('hostile.example.net'));
    // A path holding glob or markup characters is never written: widened to any path.
    expect(hostile).toMatchObject({ hosts: ['hostile.example.net'], ports: [80] });
    expect(hostile?.paths).toBeUndefined();
    expect(result.yaml).not.toContain(XSS_PATH);
    // The filter text reaches only a comment line of the header, whole.
    expect(headerOf(result.yaml).split('\n').filter((line) => line.includes(XSS_Q))).toEqual([expect.stringMatching(/^# .*\(filters with_paths=1 q=|^# .*\(filters q=/)]);
    expect(hostsOf(result)).toEqual(['hostile.example.net']);
    expect(result.summary.records.skipped_malformed).toBe(0);
  });

  test('the records are keyed as the SQL engines key them', () => {
    const key = shapeKey({
      id: 1, started_at: NOW.toISOString(), ended_at: null, duration_ms: null, client_ip: '10.0.8.5', client_port: 1, peer_ip: null, clients: [],
      user: null, kind: 'connect', method: 'CONNECT', scheme: null, host: 'a.example', port: 443, path: null, resolved_ip: null, sni: null,
      tunnel_id: null, decision: 'allow', would_deny: true, rule: '(default)', rule_source: null, reason: '', status: 200, bytes_up: 0,
      bytes_down: 0, error: null, policy_version: null, node: 'n',
    });
    const row = store.db.prepare("SELECT json_array('connect', 'CONNECT', 'a.example', 443, NULL, '10.0.8.5', NULL, 'allow', 1, '(default)', NULL) AS k").get() as { k: string };
    expect(key).toBe(row.k);
  });

  test('shapes come out in the engines\' byte order, sorted in runs and merged, whatever their number', async () => {
    const random = seededRandom(16);
    // Characters either side of the surrogates: where UTF-16 order and UTF-8 byte order differ.
    const alphabet = ['a', 'b', 'é', '\uffee', '\u{1F600}', '\u{10000}', '"', '/'];
    const keyOf = (): string => Array.from({ length: 1 + Math.floor(random() * 6) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
    for (const count of [0, 1, 8_191, 8_192, 3 * 8_192 + 5]) {
      const keys = [...new Set(Array.from({ length: count * 2 }, (_, i) => `${keyOf()}-${i}`))].slice(0, count);
      const tallies: Tally[] = keys.map((key) => ({ key, count: 1, lastMs: 0, astral: /[\ud800-\udfff]/.test(key) }));
      const merged: string[] = [];
      for await (const tally of inByteOrder(tallies)) merged.push(tally.key);
      expect(merged).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    }
  });

  test('bad options are 400 with the reason; past the shape cap, 400 saying how to narrow', async () => {
    const cases: Array<[string, RegExp]> = [
      ['by=groups', /by must be equal to one of the allowed values/],
      ['min_requests=0', /min_requests must be >= 1/],
      ['with_paths=yes', /with_paths must be equal to one of the allowed values/],
      ['limit=5', /parameter "limit" is not supported/],
      ['since=2d&until=3d', /since must be earlier than until/],
      ['since=2999-01-01', /since must be earlier than until \(or now/],
      ['host=a..b', /^host: /],
    ];
    for (const [query, message] of cases) {
      const res = await app.inject({ method: 'GET', url: `/api/policy/suggest?${query}` });
      expect({ query, status: res.statusCode }).toEqual({ query, status: 400 });
      expect(res.json<{ error: string }>().error).toMatch(message);
    }
    const tight = buildAdminApp({ store, ready: () => ({ ok: true, detail: {} }), clock: () => NOW, policy: () => ({ policy: current, lastReload: reload }), suggestMaxShapes: 3 });
    try {
      const res = await tight.inject({ method: 'GET', url: '/api/policy/suggest' });
      expect(res.statusCode).toBe(400);
      expect(res.json<{ error: string }>().error).toMatch(/more than 3 distinct request shapes .* narrow the filters/);
      // A filter under the cap is answered.
      expect(hostsOf(await suggest('host=github.com', tight))).toEqual(['github.com']);
    } finally {
      await tight.close();
    }
  });

  test('by=client-group against a policy without client groups is 400, as the CLI refuses it', async () => {
    const noGroups: Policy = { ...current, clients: [] };
    const plain = buildAdminApp({ store, ready: () => ({ ok: true, detail: {} }), clock: () => NOW, policy: () => ({ policy: noGroups, lastReload: reload }) });
    try {
      const res = await plain.inject({ method: 'GET', url: '/api/policy/suggest?by=client-group' });
      expect(res.statusCode).toBe(400);
      expect(res.json<{ error: string }>().error).toMatch(/defines no client groups; use by=none/);
      expect((await suggest('', plain)).summary.by).toBe('none');
    } finally {
      await plain.close();
    }
  });

  test('without a policy: 503, as GET /api/policy; behind the token like every /api route', async () => {
    const none = buildAdminApp({ store, ready: () => ({ ok: true, detail: {} }), clock: () => NOW, noPolicyReason: 'no policy here' });
    const guarded = buildAdminApp({ store, ready: () => ({ ok: true, detail: {} }), clock: () => NOW, token: 'secret-token-123', policy: () => ({ policy: current, lastReload: reload }) });
    try {
      for (const url of ['/api/policy', '/api/policy/suggest']) {
        const res = await none.inject({ method: 'GET', url });
        expect({ url, status: res.statusCode, body: res.json() }).toEqual({ url, status: 503, body: { error: 'no policy here' } });
      }
      expect((await guarded.inject({ method: 'GET', url: '/api/policy/suggest' })).statusCode).toBe(401);
      const authed = await guarded.inject({ method: 'GET', url: '/api/policy/suggest', headers: { authorization: 'Bearer secret-token-123' } });
      expect(authed.statusCode).toBe(200);
    } finally {
      await none.close();
      await guarded.close();
    }
  });
});
