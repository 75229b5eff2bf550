import type Database from 'better-sqlite3';
import { seededRandom } from '../lib/seeded-random';
import { CLIENTS, zipfPicker } from './traffic-skew';

/**
 * A synthetic audit log with the skew of a real one: a few hundred destinations with Zipf-like
 * popularity, ~20 client addresses in 3 groups, ~10% denied, some would_deny, a mix of CONNECT
 * and plain HTTP, and ~1% of records inserted late (a slow dial) so ids and start times disagree
 * a little, as they do in production.
 */

export interface GeneratedLog {
  records: number;
  firstMs: number;
  lastMs: number;
  hosts: string[];
  /** hosts[i] is chosen with weight HOST_WEIGHTS[i]. */
  topHost: string;
  rareHost: string;
}

const DOMAINS = [
  'github.com', 'githubusercontent.com', 'npmjs.org', 'pypi.org', 'amazonaws.com', 'googleapis.com',
  'docker.io', 'slack.com', 'datadoghq.com', 'sentry.io', 'cloudflare.com', 'fastly.net', 'akamaized.net',
  'stripe.com', 'twilio.com', 'okta.com', 'atlassian.net', 'gitlab.com', 'golang.org', 'maven.org',
  'rubygems.org', 'crates.io', 'debian.org', 'ubuntu.com', 'hashicorp.com', 'grafana.net', 'pagerduty.com',
  'zoom.us', 'pastebin.com', 'example-cdn.net',
];
const REGIONS = ['eu-west-1', 'us-east-1', 'ap-south-1'];
const WORDS = ['api', 'cdn', 'objects', 'uploads', 'registry', 'auth', 'static', 'hooks', 'events', 'edge'];

export const HOST_COUNT = 400;

function buildHosts(): string[] {
  return Array.from({ length: HOST_COUNT }, (_, r) => {
    if (r % 20 === 19) return `203.0.113.${r % 250}`;
    const domain = DOMAINS[r % DOMAINS.length];
    const word = WORDS[r % WORDS.length];
    return r % 3 === 2 ? `${word}${r}.${REGIONS[r % REGIONS.length]}.${domain}` : `${word}${r}.${domain}`;
  });
}

const INSERT = `INSERT INTO requests (started_at_ms, ended_at_ms, client_ip, client_port, clients, user, kind,
  method, scheme, host, port, path, resolved_ip, decision, would_deny, rule, rule_source, reason, status,
  bytes_up, bytes_down, error, policy_version)
  VALUES (@started_at_ms, @ended_at_ms, @client_ip, @client_port, @clients, NULL, @kind, @method, @scheme,
  @host, @port, @path, @resolved_ip, @decision, @would_deny, @rule, @rule_source, @reason, @status,
  @bytes_up, @bytes_down, @error, 'sha256:0123456789ab')`;

type Row = Record<string, string | number | null>;

function makeRow(rand: () => number, hosts: string[], pickHost: () => number, pickClient: () => number, startedAt: number): Row {
  const hostIndex = pickHost();
  const host = hosts[hostIndex];
  const client = CLIENTS[pickClient()];
  const denyBias = host.endsWith('pastebin.com') ? 0.9 : 0.085;
  const deny = rand() < denyBias;
  const wouldDeny = !deny && rand() < 0.02;
  const connect = rand() < 0.7;
  const failed = !deny && rand() < 0.005;
  const status = deny ? 403 : failed ? (rand() < 0.5 ? 502 : 504) : connect ? 200 : [200, 200, 200, 301, 404, 500][Math.floor(rand() * 6)];
  const rule = deny ? (rand() < 0.7 ? '(default)' : 'deny-paste-sites') : `allow-${host.split('.').slice(-2, -1)[0] ?? 'ip'}`;
  return {
    started_at_ms: startedAt,
    ended_at_ms: startedAt + Math.floor(rand() * 5000),
    client_ip: client.ip,
    client_port: 30000 + Math.floor(rand() * 30000),
    clients: JSON.stringify(client.groups),
    kind: connect ? 'connect' : 'http',
    method: connect ? 'CONNECT' : 'GET',
    scheme: connect ? null : 'http',
    host,
    port: connect ? 443 : 80,
    path: connect ? null : `/v1/items/${Math.floor(rand() * 1000)}`,
    resolved_ip: deny ? null : `198.18.${hostIndex % 250}.${Math.floor(rand() * 250)}`,
    decision: deny ? 'deny' : 'allow',
    would_deny: wouldDeny ? 1 : 0,
    rule,
    rule_source: rule.startsWith('(') ? null : 'policies/10-rules.yaml:12',
    reason: deny ? `no rule matched ${host}` : `matched rule ${rule}`,
    status,
    bytes_up: deny ? 0 : Math.floor(rand() * 20000),
    bytes_down: deny ? 0 : Math.floor(rand() * 2_000_000),
    error: failed ? (status === 502 ? 'connect_refused' : 'connect_timeout') : null,
  };
}

/** src/audit/log/side-tables.ts's SideTableBatch (loaded from dist/ by the caller). */
export interface SideTables {
  add(id: number, row: Row): void;
  flush(): void;
}

export interface GenerateOptions {
  /** Records per transaction. */
  batch?: number;
  /** Keeps 002's side tables as the store does (no trigger since 003); null: a schema without them. */
  sideTables: SideTables | null;
}

/**
 * Inserts `count` records spread evenly over [endMs - spanMs, endMs], in transactions of
 * `batch` through one prepared statement, each transaction ending with the side tables' upserts
 * for its rows, exactly as the store's commitBatch keeps them.
 */
export function generateLog(db: Database.Database, count: number, spanMs: number, endMs: number, opts: GenerateOptions): GeneratedLog {
  const { batch = 10_000, sideTables } = opts;
  const rand = seededRandom(42);
  const hosts = buildHosts();
  const pickHost = zipfPicker(hosts.length, 1.1, rand);
  const pickClient = zipfPicker(CLIENTS.length, 0.8, rand);
  const insert = db.prepare(INSERT);
  const step = spanMs / count;
  const firstMs = Math.floor(endMs - spanMs);
  const insertBatch = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i += 1) {
      const late = rand() < 0.01 ? Math.floor(rand() * 15_000) : 0;
      const row = makeRow(rand, hosts, pickHost, pickClient, Math.floor(firstMs + i * step) - late);
      const id = Number(insert.run(row).lastInsertRowid);
      sideTables?.add(id, row);
    }
    sideTables?.flush();
  });
  for (let from = 0; from < count; from += batch) insertBatch(from, Math.min(count, from + batch));
  return { records: count, firstMs, lastMs: endMs, hosts, topHost: hosts[0], rareHost: hosts[HOST_COUNT - 7] };
}
