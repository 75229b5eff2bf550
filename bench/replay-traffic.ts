import path from 'node:path';
import type Database from 'better-sqlite3';
import { seededRandom } from './lib/seeded-random';

/**
 * Synthetic egress traffic for `npm run bench:replay`: a million audit records shaped like a
 * fleet's (a few hundred clients, a long tail of destinations, apt over plain HTTP), decided
 * under the example policies by tollgate's own decide(), written with the real schema.
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');

/** The compiled modules the bench drives (dist/, built by `npm run build`). */
interface Facts {
  kind: 'connect' | 'http';
  host: string;
  hostKind: 'name' | 'ipv4' | 'ipv6';
  port: number;
  method: string;
  path: string | null;
  sourceIp: string;
  user: string | null;
  now: Date;
}
interface Decision {
  action: 'allow' | 'deny';
  rule: string;
  ruleSource: string | null;
  reason: string;
  wouldDeny: boolean;
  clients: string[];
}
export interface LoadedPolicy {
  version: string;
}
interface Dist {
  applyMigrations(db: Database.Database): string[];
  loadPolicy(dir: string): { ok: true; policy: LoadedPolicy } | { ok: false; problems: unknown[] };
  decide(policy: LoadedPolicy, facts: Facts): Decision;
  /** src/audit/log/side-tables.ts: the side tables, kept as the store keeps them (no trigger since 003). */
  SideTableBatch: new (db: Database.Database) => { add(id: number, row: Record<string, string | number | null>): void; flush(): void };
}

export function loadDist(): Dist {
  const dist = (file: string): Record<string, unknown> => require(path.join(REPO_ROOT, 'dist', file)) as Record<string, unknown>;
  return {
    applyMigrations: dist('audit/migrate.js').applyMigrations as Dist['applyMigrations'],
    loadPolicy: dist('policy/load.js').loadPolicy as Dist['loadPolicy'],
    decide: dist('policy/decide.js').decide as Dist['decide'],
    SideTableBatch: dist('audit/log/side-tables.js').SideTableBatch as Dist['SideTableBatch'],
  };
}

/** Index in [0, n) with weight 1/(i+1): a few destinations get most of the traffic. */
function zipf(rand: () => number, n: number): number {
  const harmonic = Math.log(n) + 0.5772;
  let target = rand() * harmonic;
  for (let i = 0; i < n; i += 1) {
    target -= 1 / (i + 1);
    if (target <= 0) return i;
  }
  return n - 1;
}

const POPULAR_TLS = [
  'registry.npmjs.org', 'github.com', 'api.github.com', 'objects.githubusercontent.com', 'pypi.org',
  'files.pythonhosted.org', 'codeload.github.com', 'registry-1.docker.io', 'auth.docker.io', 'proxy.golang.org',
  'ghcr.io', 'gitlab.com', 'raw.githubusercontent.com', 'sum.golang.org', 'repo1.maven.org', 'crates.io',
  'static.crates.io', 'index.crates.io', 'rubygems.org', 'api.nuget.org', 'artifacts.s3.amazonaws.com',
  'production.cloudflare.docker.com', 'bitbucket.org', 'pastebin.com', 'transfer.sh',
];
const APT_HOSTS = ['deb.debian.org', 'security.debian.org', 'archive.ubuntu.com'];
const UNKNOWN_HOSTS = Array.from({ length: 150 }, (_, i) => `svc-${i}.vendor${i % 13}.example.com`);
const DESTINATIONS = [...POPULAR_TLS, ...UNKNOWN_HOSTS];
const APT_PATHS = Array.from({ length: 60 }, (_, i) => `/debian/pool/main/p/pkg${i}/pkg${i}_1.${i % 7}_amd64.deb`);

/** 640 clients: 256 in the ci-runners range (10.0.8.0/22), the rest elsewhere. */
function clientIp(i: number): string {
  return i < 256 ? `10.0.${8 + (i >> 6)}.${(i & 63) + 10}` : `10.0.${20 + (i >> 8)}.${i & 255}`;
}
const CLIENTS = 640;

interface Request {
  kind: 'connect' | 'http';
  method: string;
  host: string;
  port: number;
  path: string | null;
  clientIp: string;
}

function nextRequest(rand: () => number): Request {
  const clientIp = CLIENTS_LIST[zipf(rand, CLIENTS)];
  const roll = rand();
  if (roll < 0.1) {
    const host = APT_HOSTS[Math.floor(rand() * APT_HOSTS.length)];
    return { kind: 'http', method: rand() < 0.8 ? 'GET' : 'HEAD', host, port: 80, path: APT_PATHS[zipf(rand, APT_PATHS.length)], clientIp };
  }
  if (roll < 0.12) return { kind: 'connect', method: 'CONNECT', host: `10.1.${Math.floor(rand() * 4)}.${Math.floor(rand() * 8) + 1}`, port: 9100, path: null, clientIp };
  return { kind: 'connect', method: 'CONNECT', host: DESTINATIONS[zipf(rand, DESTINATIONS.length)], port: 443, path: null, clientIp };
}
const CLIENTS_LIST = Array.from({ length: CLIENTS }, (_, i) => clientIp(i));

const INSERT = `INSERT INTO requests (started_at_ms, ended_at_ms, client_ip, client_port, clients, user, kind, method,
  scheme, host, port, path, resolved_ip, decision, would_deny, rule, rule_source, reason, status, bytes_up, bytes_down,
  error, policy_version) VALUES (@started, @ended, @client_ip, 40000, @clients, NULL, @kind, @method, @scheme, @host,
  @port, @path, NULL, @decision, @would_deny, @rule, @rule_source, @reason, @status, 1200, 48000, @error, @version)`;

export interface GenerateOptions {
  records: number;
  nowMs: number;
  spanMs: number;
  batch: number;
}

/** One generated record, in the SQLite store's column names (clients as JSON, would_deny 0/1). */
export interface TrafficRow {
  started: number;
  ended: number;
  client_ip: string;
  clients: string;
  kind: 'connect' | 'http';
  method: string;
  scheme: string | null;
  host: string;
  port: number | null;
  path: string | null;
  decision: 'allow' | 'deny';
  would_deny: 0 | 1;
  rule: string | null;
  rule_source: string | null;
  reason: string;
  status: number;
  error: null;
  version: string;
}

/**
 * `records` rows, oldest first. Every 1,000th is malformed (a raw target, no port) and every
 * 2,000th was never decided (the client left first).
 */
export function* trafficRows(dist: Pick<Dist, 'decide'>, policy: LoadedPolicy, opts: Omit<GenerateOptions, 'batch'>): Generator<TrafficRow> {
  const rand = seededRandom(20260301);
  const decided = new Map<string, Decision>();
  const decideOnce = (r: Request): Decision => {
    const key = `${r.kind} ${r.method} ${r.host} ${r.port} ${r.path ?? ''} ${r.clientIp}`;
    let decision = decided.get(key);
    if (decision === undefined) {
      const hostKind = /^[0-9.]+$/.test(r.host) ? 'ipv4' : 'name';
      decision = dist.decide(policy, { ...r, hostKind, sourceIp: r.clientIp, user: null, now: new Date(opts.nowMs) });
      decided.set(key, decision);
    }
    return decision;
  };
  for (let i = 0; i < opts.records; i += 1) {
    const started = opts.nowMs - opts.spanMs + Math.floor((i / opts.records) * opts.spanMs);
    const r = nextRequest(rand);
    const d = decideOnce(r);
    // The guard refuses the private 10.1.x.x addresses a rule may allow: recorded as (guard).
    const guarded = d.action === 'allow' && r.host.startsWith('10.1.');
    const malformed = i % 1000 === 999;
    const undecided = i % 2000 === 500;
    yield {
      started, ended: started + 150, client_ip: r.clientIp, clients: JSON.stringify(d.clients), kind: r.kind,
      method: r.method, scheme: r.kind === 'http' ? 'http' : null, host: malformed ? `${r.host}:` : r.host,
      port: malformed ? null : r.port, path: r.path, decision: guarded || d.action === 'deny' || malformed || undecided ? 'deny' : 'allow',
      would_deny: d.wouldDeny && !malformed && !undecided ? 1 : 0,
      rule: malformed || undecided ? null : guarded ? '(guard)' : d.rule, rule_source: d.ruleSource, reason: d.reason,
      status: d.action === 'deny' || guarded ? 403 : 200, error: null, version: policy.version,
    };
  }
}

/** Inserts the rows, `batch` per transaction, with the side tables' upserts at the end of each. */
export function generateTraffic(dist: Dist, db: Database.Database, policy: LoadedPolicy, opts: GenerateOptions): void {
  const insert = db.prepare(INSERT);
  const sideTables = new dist.SideTableBatch(db);
  const rows = trafficRows(dist, policy, opts);
  const writeBatch = db.transaction((count: number) => {
    for (let i = 0; i < count; i += 1) {
      const row = rows.next();
      if (row.done === true) break;
      const id = Number(insert.run(row.value).lastInsertRowid);
      sideTables.add(id, { ...row.value, started_at_ms: row.value.started });
    }
    sideTables.flush();
  });
  for (let from = 0; from < opts.records; from += opts.batch) writeBatch(Math.min(opts.batch, opts.records - from));
}

/** The policy change both replay benches replay the generated traffic against. */
export const PROPOSED_CHANGE = `version: 1
rules:
  - name: no-gitlab
    action: deny
    hosts: [gitlab.com, "*.gitlab.com"]
  - name: vendor-apis
    action: allow
    hosts: ["svc-1.vendor1.example.com", "svc-2.vendor2.example.com", "svc-3.vendor3.example.com"]
    ports: [443]
`;
