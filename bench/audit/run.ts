import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import type BetterSqlite3 from 'better-sqlite3';
import type * as AppModule from '../../src/admin/app';
import type * as StoreModule from '../../src/audit/store';
import type * as MigrateModule from '../../src/audit/migrate';
import type * as LoadModule from '../../src/policy/load';
import type * as SideTablesModule from '../../src/audit/log/side-tables';
import { load, REPO } from './built-modules';
import { generateLog } from './generate';
import type { GeneratedLog } from './generate';
import { renderReport } from './report';
import { measureConsole, renderConsole } from './console';
import type { ConsoleMeasurement } from './console';
import type * as PgReaderModule from '../../src/fleet/pg-reader';
import type * as PgMigrateModule from '../../src/fleet/pg-migrate';
import { generateHistory } from '../fleet/generate-pg';
import { destroyPostgres, postgresBinDir, startPostgres } from '../../test/helpers/postgres-server';
import type { Measurement, BenchReport, SearchWalk } from './report';

/**
 * How fast is the admin API on a real-sized audit log? Generates 1,000,000 records over 7 days
 * into a temp SQLite file (through the real schema, side tables kept as the store keeps them), then times the first page of
 * /api/requests for each filter, /api/stats, /api/first-seen, /api/policy and a streamed export,
 * all through buildAdminApp (app.inject, or a real socket for the export). Median of 5 runs.
 * Usage: npm run bench:audit [-- --records N] [--keep]
 */

const { buildAdminApp } = load<typeof AppModule>('admin/app.js');
const { openAuditStore } = load<typeof StoreModule>('audit/store.js');
const { applyMigrations, MIGRATIONS_DIR } = load<typeof MigrateModule>('audit/migrate.js');
const { loadPolicy } = load<typeof LoadModule>('policy/load.js');
const { SideTableBatch } = load<typeof SideTablesModule>('audit/log/side-tables.js');
const Database = require(path.join(REPO, 'node_modules', 'better-sqlite3')) as typeof BetterSqlite3;

const RUNS = 5;
const PAGE_TARGET_MS = 100;
const STATS_TARGET_MS = 500;
const DAY_MS = 86_400_000;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

type App = ReturnType<typeof AppModule.buildAdminApp>;

async function timeGet(app: App, url: string): Promise<{ cold: number; median: number; body: string }> {
  const times: number[] = [];
  let body = '';
  for (let i = 0; i <= RUNS; i += 1) {
    const start = performance.now();
    const res = await app.inject({ url });
    times.push(performance.now() - start);
    if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}: ${res.body}`);
    body = res.body;
  }
  return { cold: times[0], median: median(times.slice(1)), body };
}

function pageFilters(log: GeneratedLog): Array<[string, string]> {
  return [
    ['no filter', ''],
    [`host exact, the busiest (${log.topHost})`, `host=${log.topHost}`],
    [`host exact, a rare one (${log.rareHost})`, `host=${log.rareHost}`],
    ['host glob `*.github.com`', 'host=*.github.com'],
    ['host glob `**.amazonaws.com`', 'host=**.amazonaws.com'],
    ['host CIDR `203.0.113.0/24`', 'host=203.0.113.0/24'],
    ['client group `payments`', 'client=payments'],
    ['client address `10.0.12.5`', 'client=10.0.12.5'],
    ['client CIDR `10.0.8.0/22`', 'client=10.0.8.0/22'],
    ['decision=deny', 'decision=deny'],
    ['decision=allow', 'decision=allow'],
    ['would_deny=true', 'would_deny=true'],
    ['status=4xx', 'status=4xx'],
    ['status=502', 'status=502'],
    ['since=1h', 'since=1h'],
    ['a past hour (since=72h&until=71h)', 'since=72h&until=71h'],
    ['q=sentry (common text)', 'q=sentry'],
    ['q=no-such-text (matches nothing: answers after its budget)', 'q=no-such-text'],
    ['combined: host=**.github.com&decision=deny', 'host=**.github.com&decision=deny'],
    ['combined: client=payments&status=5xx&since=24h', 'client=payments&status=5xx&since=24h'],
  ];
}

async function measurePages(app: App, log: GeneratedLog): Promise<Measurement[]> {
  const out: Measurement[] = [];
  for (const [name, query] of pageFilters(log)) {
    const url = `/api/requests?${query.split('&').map((kv) => kv.replace(/=(.*)$/, (_m, v: string) => `=${encodeURIComponent(v)}`)).join('&')}`;
    const result = await timeGet(app, url);
    const page = JSON.parse(result.body) as { items: unknown[]; partial: boolean; searched_to?: string | null };
    const reached = page.partial && page.searched_to ? `, partial: searched back to ${page.searched_to.slice(0, 16)}Z` : '';
    out.push({ name, url, cold: result.cold, median: result.median, target: PAGE_TARGET_MS, note: `${page.items.length} items${reached}` });
  }
  return out;
}

/**
 * A search that matches nothing, followed page by page to the end of the log as the UI does:
 * how many answers it takes, the slowest one (how long the proxy's thread is held at most) and
 * the total.
 */
async function measureFullSearch(app: App, query: string): Promise<SearchWalk> {
  let cursor: string | null = null;
  let pages = 0;
  let slowest = 0;
  const start = performance.now();
  do {
    const began = performance.now();
    const res: Awaited<ReturnType<App['inject']>> = await app.inject({ url: `/api/requests?${query}${cursor === null ? '' : `&cursor=${cursor}`}` });
    slowest = Math.max(slowest, performance.now() - began);
    if (res.statusCode !== 200) throw new Error(`${query} answered ${res.statusCode}: ${res.body}`);
    cursor = (JSON.parse(res.body) as { next_cursor: string | null }).next_cursor;
    pages += 1;
  } while (cursor !== null && pages < 100_000);
  return { query, pages, slowestMs: slowest, totalMs: performance.now() - start };
}

async function measureAggregates(app: App): Promise<Measurement[]> {
  const cases: Array<[string, string, number | null]> = [
    ['/api/stats, one day (since=24h)', '/api/stats?since=24h', STATS_TARGET_MS],
    ['/api/stats, 7 days (since=7d)', '/api/stats?since=7d', null],
    ['/api/first-seen, one day', '/api/first-seen?since=24h', null],
    ['/api/first-seen by client_host, one day', '/api/first-seen?since=24h&by=client_host', null],
    ['/api/policy (hits over 7 days)', '/api/policy', null],
  ];
  const out: Measurement[] = [];
  for (const [name, url, target] of cases) {
    const result = await timeGet(app, url);
    out.push({ name, url, cold: result.cold, median: result.median, target, note: `${(result.body.length / 1024).toFixed(1)} KiB` });
  }
  return out;
}

/** A real socket, so the export streams as it does for a browser; counts lines and bytes. */
async function measureExport(app: App, query: string): Promise<{ ms: number; lines: number; bytes: number; rssDeltaMiB: number }> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const start = performance.now();
  const { lines, bytes } = await new Promise<{ lines: number; bytes: number }>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: `/api/requests/export?${query}` }, (res) => {
      let count = 0;
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        for (const byte of chunk) if (byte === 10) count += 1;
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      });
      res.on('end', () => resolve({ lines: count, bytes: size }));
      res.on('error', reject);
    }).on('error', reject);
  });
  const ms = performance.now() - start;
  return { ms, lines, bytes, rssDeltaMiB: (rssPeak - rssBefore) / 1048576 };
}

const POLICY = `version: 1
settings:
  default: deny
clients:
  ci-runners: { sources: [10.0.8.0/22] }
  payments: { sources: [10.0.12.0/24] }
  dev: { sources: [10.1.0.0/16] }
rules:
  - name: deny-paste-sites
    action: deny
    hosts: ["**.pastebin.com"]
  - name: allow-github
    action: allow
    hosts: ["**.github.com", "**.githubusercontent.com"]
  - name: allow-amazonaws
    action: allow
    hosts: ["**.amazonaws.com"]
  - name: allow-sentry
    action: allow
    hosts: ["**.sentry.io"]
  - name: never-used
    action: allow
    hosts: [nothing.example]
`;

function policySnapshot(dir: string): () => AppModule.PolicySnapshot {
  fs.writeFileSync(path.join(dir, 'policy.yaml'), POLICY);
  const loaded = loadPolicy(dir);
  if (!loaded.ok) throw new Error(`bench policy invalid: ${JSON.stringify(loaded.problems)}`);
  const lastReload = { ok: true, at: new Date().toISOString(), version: loaded.policy.version, problems: [] };
  return () => ({ policy: loaded.policy, lastReload });
}

export interface InsertCost {
  /** Write-ahead log pages appended per insert: what each commit writes, machine-independent. */
  pages: number;
  /** Best of the rounds, in µs per insert (checkpoints off, so only the commit itself). */
  micros: number;
}

/**
 * The store's write path (one transaction per record, its side tables kept by side-tables.ts as
 * commitBatch keeps them) with and without migrations 002 and 003,
 * on logs of 100,000 records. Rounds alternate between the two, so machine load hits both.
 */
function measureInserts(dir: string, perRound: number, rounds: number): { without: InsertCost; with: InsertCost } {
  const onlyFirst = path.join(dir, 'migrations-001');
  fs.mkdirSync(onlyFirst);
  fs.copyFileSync(path.join(MIGRATIONS_DIR, '001_audit.sql'), path.join(onlyFirst, '001_audit.sql'));
  const variants = { without: onlyFirst, with: MIGRATIONS_DIR };
  const dbs = Object.fromEntries(
    Object.entries(variants).map(([key, migrations]) => {
      const db = new Database(path.join(dir, `insert-${key}.db`));
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      applyMigrations(db, { dir: migrations });
      generateLog(db, 100_000, 7 * DAY_MS, Date.now(), { sideTables: key === 'with' ? new SideTableBatch(db) : null });
      db.pragma('wal_autocheckpoint = 0');
      return [key, db];
    }),
  ) as Record<keyof typeof variants, BetterSqlite3.Database>;
  // 001 alone has no side tables to keep.
  const sideTables = { without: null, with: new SideTableBatch(dbs.with) };
  const result = { without: { pages: 0, micros: Infinity }, with: { pages: 0, micros: Infinity } };
  for (let round = 0; round < rounds; round += 1) {
    for (const key of ['without', 'with'] as const) {
      const db = dbs[key];
      db.pragma('wal_checkpoint(TRUNCATE)');
      const start = performance.now();
      generateLog(db, perRound, 60_000, Date.now(), { batch: 1, sideTables: sideTables[key] });
      const micros = ((performance.now() - start) * 1000) / perRound;
      const frames = fs.statSync(path.join(dir, `insert-${key}.db-wal`)).size / (4096 + 24);
      result[key] = { pages: frames / perRound, micros: Math.min(result[key].micros, micros) };
    }
  }
  for (const db of Object.values(dbs)) db.close();
  return result;
}

/**
 * The console's queries on the shared history: the same cases through a PgAuditReader on a
 * throwaway PostgreSQL holding `records` records from 3 nodes over 7 days (bench/fleet's
 * generator). Null when PostgreSQL's server binaries are not installed.
 */
async function measureConsolePg(records: number): Promise<{ rows: ConsoleMeasurement[]; seconds: number } | null> {
  if (postgresBinDir() === null) return null;
  const { Pool } = require(path.join(REPO, 'node_modules', 'pg')) as typeof import('pg');
  const { PgAuditReader } = load<typeof PgReaderModule>('fleet/pg-reader.js');
  const { applyPgMigrations } = load<typeof PgMigrateModule>('fleet/pg-migrate.js');
  const server = await startPostgres({ conf: ['shared_buffers = 256MB', 'work_mem = 16MB'] });
  const pool = new Pool({ connectionString: server.url(), max: 4 });
  try {
    await applyPgMigrations(pool);
    const started = performance.now();
    const history = await generateHistory(pool, { records, nodes: 3, days: 7, endMs: Date.now() });
    const seconds = (performance.now() - started) / 1000;
    const app = buildAdminApp({ reader: new PgAuditReader(pool), ready: () => ({ ok: true, detail: {} }) });
    await app.ready();
    const rows = await measureConsole(app, history, 'batch');
    await app.close();
    return { rows, seconds };
  } finally {
    await pool.end();
    destroyPostgres(server);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      records: { type: 'string', default: '1000000' },
      keep: { type: 'boolean', default: false },
      // Issue 19's measurements alone (facets, filtered stats), on both engines.
      'console-only': { type: 'boolean', default: false },
      'skip-pg': { type: 'boolean', default: false },
    },
  });
  const records = Number(values.records);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-bench-audit-'));
  const file = path.join(dir, 'audit.db');
  try {
    const store = openAuditStore(file);
    const genStart = performance.now();
    const log = generateLog(store.db, records, 7 * DAY_MS, Date.now(), { sideTables: new SideTableBatch(store.db) });
    const generateSeconds = (performance.now() - genStart) / 1000;
    store.db.pragma('wal_checkpoint(TRUNCATE)');
    const app = buildAdminApp({ store, ready: () => ({ ok: true, detail: {} }), policy: policySnapshot(dir) });
    await app.ready();
    const loadBefore = os.loadavg().map((n) => n.toFixed(2)).join(' ');
    const consoleSqlite = await measureConsole(app, log, 'payments');
    const consolePg = values['skip-pg'] === true ? null : await measureConsolePg(records);
    const consoleMarkdown = [
      `# Incident console queries at ${records.toLocaleString('en-US')} records`,
      '',
      `Measured ${new Date().toISOString()} on Node ${process.version}. Every field asked (\`fields=client_ip,clients,host,domain,rule,decision,status,user,node\`), ` +
        'through buildAdminApp with app.inject(), median and slowest of 5 runs after a first (cold) one; the stall is the longest the event loop ' +
        'went without a turn during the runs (on SQLite: how long the proxy\'s thread was held). Reproduce: `npm run bench:audit -- --console-only`. ' +
        `Load average before: ${loadBefore}, after: ${os.loadavg().map((n) => n.toFixed(2)).join(' ')} (${os.cpus().length} cores).`,
      '',
      ...renderConsole('SQLite (one replica\'s store, the bench log below)', consoleSqlite),
      ...(consolePg === null
        ? ['PostgreSQL: not measured (no server binaries, or --skip-pg).', '']
        : renderConsole(`PostgreSQL (a throwaway server on this machine, ${records.toLocaleString('en-US')} records from 3 nodes over 7 days, generated in ${consolePg.seconds.toFixed(0)} s)`, consolePg.rows)),
    ].join('\n');
    fs.mkdirSync(path.join(REPO, 'bench', 'results'), { recursive: true });
    fs.writeFileSync(path.join(REPO, 'bench', 'results', 'console.md'), consoleMarkdown);
    process.stdout.write(`${consoleMarkdown}\n`);
    if (values['console-only'] === true) {
      await app.close();
      store.close();
      return;
    }
    const pages = await measurePages(app, log);
    const search = await measureFullSearch(app, 'q=no-such-text');
    const aggregates = await measureAggregates(app);
    const exported = await measureExport(app, 'format=ndjson&decision=deny');
    await app.close();
    const dbMiB = fs.statSync(file).size / 1048576;
    store.close();
    const inserts = measureInserts(dir, 5_000, 3);
    const report: BenchReport = { records, generateSeconds, dbMiB, pages, search, aggregates, exported, inserts, hosts: log.hosts.length };
    const markdown = renderReport(report, new Date());
    fs.mkdirSync(path.join(REPO, 'bench', 'results'), { recursive: true });
    fs.writeFileSync(path.join(REPO, 'bench', 'results', 'audit.md'), markdown);
    process.stdout.write(markdown);
  } finally {
    if (values.keep) process.stdout.write(`kept ${dir}\n`);
    else fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
