import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { Pool } from 'pg';
import { track } from '../lib/children';
import type { Child } from '../lib/children';
import { median } from '../lib/compare-results';
import { LOOPBACK_POLICY, startOrigin, startProxy } from '../lib/peers';
import { treeCpuSeconds } from '../lib/proc-tree';
import { runWrk } from '../lib/tool-loads';
import { destroyPostgres, startPostgres } from '../../test/helpers/postgres-server';
import type { PostgresServer } from '../../test/helpers/postgres-server';
import { applyPgMigrations } from '../../src/fleet/pg-migrate';
import { generateHistory } from './generate-pg';
import { PG_MIGRATIONS, REPO } from './repo';
import { measureQueries } from './queries';

/**
 * `npm run bench:fleet`: what shipping to PostgreSQL costs a replica, whether it keeps up with a
 * fleet, and how the shared history answers at 10,000,000 records. Three parts, one run:
 * 1. CPU per request, side by side: squid, tollgate, tollgate shipping to PostgreSQL (wrk
 *    keep-alive load, bench:fsync's load (1)); PostgreSQL's own CPU is reported apart.
 * 2. Ship rate: three replicas build a backlog while PostgreSQL is stopped, then PostgreSQL starts
 *    and the three ship at once; records/s shipped against one replica's full request rate from 1.
 *    And backlog age while one replica runs at its full rate with PostgreSQL up.
 * 3. Scale: a 10,000,000-record history from 3 nodes generated inside PostgreSQL; first page of
 *    each filter, a day's stats, a 1,000,000-record replay (the CLI against the shared history).
 * Usage: npm run bench:fleet [-- --seconds 8 --repeat 3 --records 10000000 --skip-scale]
 */

const CLI = path.join(REPO, 'dist', 'cli.js');

interface Serve extends Child {
  proxyPort: number;
  adminPort: number;
}

async function startServe(dir: string, extra: string[]): Promise<Serve> {
  mkdirSync(path.join(dir, 'policies'), { recursive: true });
  writeFileSync(path.join(dir, 'policies', 'bench.yaml'), LOOPBACK_POLICY);
  const args = [CLI, 'serve', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policies', path.join(dir, 'policies'), '--db', path.join(dir, 'audit.db'), ...extra];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, TOLLGATE_LOG_LEVEL: 'info' } });
  const tracked = track(child);
  const ports = await new Promise<{ proxy: number; admin: number }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), 20_000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      for (const line of out.split('\n')) {
        if (!line.includes('"listening"')) continue;
        const parsed = JSON.parse(line) as { proxy: string; admin: string };
        clearTimeout(timer);
        const port = (a: string): number => Number(a.slice(a.lastIndexOf(':') + 1));
        resolve({ proxy: port(parsed.proxy), admin: port(parsed.admin) });
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${out}`)));
  });
  return { ...tracked, proxyPort: ports.proxy, adminPort: ports.admin };
}

async function metric(adminPort: number, name: string): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  const text = await response.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function postgresPid(server: PostgresServer): number {
  return Number(readFileSync(path.join(server.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

interface CpuRow {
  rate: number[];
  cpuUs: number[];
  pgCpuUs: number[];
}

async function cpuPerRequest(server: PostgresServer, scratch: string, seconds: number, repeat: number, log: (s: string) => void): Promise<Map<string, CpuRow>> {
  const targets = ['squid', 'tollgate', 'tollgate+ship'];
  const rows = new Map<string, CpuRow>(targets.map((t) => [t, { rate: [], cpuUs: [], pgCpuUs: [] }]));
  const origin = await startOrigin(scratch, 'nginx', [], '');
  try {
    for (let run = 0; run < repeat; run += 1) {
      for (const target of targets.map((_, i) => targets[(i + run) % targets.length])) {
        const db = `cpu_${run}_${target.replace(/\W/g, '_')}`;
        server.sql(`CREATE DATABASE ${db}`);
        const proxy = target === 'squid'
          ? await startProxy('squid', { parent: scratch, cli: '', nodeArgs: [] })
          : await (async () => {
            const serve = await startServe(mkdtempSync(path.join(scratch, 'serve-')), target === 'tollgate+ship' ? ['--audit-url', server.url(db), '--node', 'bench'] : []);
            return { pid: serve.pid, port: serve.proxyPort, stop: () => serve.stop() };
          })();
        try {
          const route = { originPort: origin.port, proxyPort: proxy.port };
          await runWrk(route, 50, 1, scratch);
          const pgBefore = treeCpuSeconds(postgresPid(server));
          const before = treeCpuSeconds(proxy.pid);
          const result = await runWrk(route, 50, seconds, scratch);
          const cpu = treeCpuSeconds(proxy.pid) - before;
          const pgCpu = treeCpuSeconds(postgresPid(server)) - pgBefore;
          const row = rows.get(target) as CpuRow;
          row.rate.push(result.rate);
          row.cpuUs.push((cpu / result.requests) * 1e6);
          row.pgCpuUs.push((pgCpu / result.requests) * 1e6);
          log(`run ${run + 1} ${target}: ${result.rate.toFixed(0)} req/s, ${((cpu / result.requests) * 1e6).toFixed(1)} µs CPU/req, PostgreSQL ${((pgCpu / result.requests) * 1e6).toFixed(1)} µs/req`);
        } finally {
          await proxy.stop();
        }
      }
    }
  } finally {
    await origin.stop();
  }
  return rows;
}

interface ShipRate {
  records: number;
  localBytesPerRecord: number;
  pgBytesPerRecord: number;
  shipped: number;
  startSeconds: number;
  atListen: number;
  seconds: number;
  rate: number;
  loadRate: number;
  maxOldestUnderLoad: number;
  meanOldestUnderLoad: number;
}

/** Records in a replica's local store (its SQLite index, caught up at shutdown). */
function localRecords(dir: string): number {
  const db = new Database(path.join(dir, 'audit.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM requests').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/**
 * Three replicas build a backlog with PostgreSQL down and are stopped; PostgreSQL starts, the
 * three start again on their stores and ship at once (from their first batch, no retry backoff in
 * the way): records/s until PostgreSQL holds every local record.
 */
async function shipRate(server: PostgresServer, scratch: string, seconds: number, log: (s: string) => void): Promise<ShipRate> {
  server.sql('CREATE DATABASE ship_rate');
  const url = server.url('ship_rate');
  const origin = await startOrigin(scratch, 'nginx', [], '');
  const nodes = ['a', 'b', 'c'];
  const dirs = nodes.map((node) => mkdtempSync(path.join(scratch, `replica-${node}-`)));
  const args = (i: number): string[] => ['--audit-url', url, '--node', `replica-${nodes[i]}`];
  let replicas: Serve[] = [];
  try {
    // Migrations first, so the timed part is shipping alone.
    const pool = new Pool({ connectionString: url });
    await applyPgMigrations(pool, { dir: PG_MIGRATIONS });
    await pool.end();
    server.stop();
    for (let i = 0; i < dirs.length; i += 1) {
      const replica = await startServe(dirs[i], args(i));
      const result = await runWrk({ originPort: origin.port, proxyPort: replica.proxyPort }, 50, seconds, scratch);
      log(`replica-${nodes[i]}: ${result.requests} requests while PostgreSQL is down`);
      await replica.stop(15_000);
    }
    const total = dirs.map(localRecords).reduce((a, b) => a + b, 0);
    const localBytes = dirs.map((dir) => Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0])).reduce((a, b) => a + b, 0);
    server.start();
    const check = new Pool({ connectionString: url });
    const started = Date.now();
    replicas = await Promise.all(dirs.map((dir, i) => startServe(dir, args(i))));
    // Process start-up (node, modules, SQLite) is not shipping: the rate counts from when all three listen.
    const listening = Date.now();
    const atListen = Number((await check.query<{ n: string }>('SELECT count(*) AS n FROM requests')).rows[0].n);
    let shipped = 0;
    for (let i = 0; i < 6000 && shipped < total; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      shipped = Number((await check.query<{ n: string }>('SELECT count(*) AS n FROM requests')).rows[0].n);
    }
    const drainSeconds = (Date.now() - listening) / 1000;
    const startSeconds = (listening - started) / 1000;
    const pgBytes = Number((await check.query<{ n: string }>("SELECT pg_total_relation_size('requests') AS n")).rows[0].n);
    await check.end();
    log(`${total} records shipped by 3 replicas in ${drainSeconds.toFixed(1)} s after ${startSeconds.toFixed(1)} s of start-up (PostgreSQL holds ${shipped}, ${atListen} at listen)`);
    // The gauges are recounted once a second: let them forget the drained backlog before sampling.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    // Backlog age with one replica at its full rate and PostgreSQL up.
    const samples: number[] = [];
    const sampler = setInterval(() => {
      void metric(replicas[0].adminPort, 'tollgate_audit_ship_backlog_oldest_seconds').then((v) => samples.push(v));
    }, 500);
    const load = await runWrk({ originPort: origin.port, proxyPort: replicas[0].proxyPort }, 50, seconds, scratch);
    clearInterval(sampler);
    return {
      records: total,
      shipped,
      localBytesPerRecord: localBytes / total,
      pgBytesPerRecord: pgBytes / Math.max(1, shipped),
      seconds: drainSeconds,
      startSeconds,
      atListen,
      rate: (shipped - atListen) / drainSeconds,
      loadRate: load.rate,
      maxOldestUnderLoad: Math.max(...samples),
      meanOldestUnderLoad: samples.reduce((a, b) => a + b, 0) / Math.max(1, samples.length),
    };
  } finally {
    for (const replica of replicas) await replica.stop();
    await origin.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '8' },
      repeat: { type: 'string', default: '3' },
      records: { type: 'string', default: '10000000' },
      'skip-scale': { type: 'boolean', default: false },
      out: { type: 'string', default: path.join(REPO, 'bench', 'results', 'fleet.md') },
    },
  });
  const seconds = Number(values.seconds);
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const scratch = mkdtempSync(path.join(tmpdir(), 'tollgate-fleet-'));
  chmodSync(scratch, 0o711);
  const server = await startPostgres();
  const lines: string[] = [`# bench:fleet, ${new Date().toISOString()}`, '', `Load average before: ${loadavg().map((l) => l.toFixed(2)).join(' ')}. PostgreSQL 15, a throwaway server on this machine (fsync off: the figures are CPU, not disk).`, ''];
  try {
    const cpu = await cpuPerRequest(server, scratch, seconds, Number(values.repeat), log);
    lines.push('## 1. CPU per request (wrk, keep-alive GETs, 50 connections, nginx origin)', '');
    lines.push(`| target | req/s (median of ${values.repeat}) | proxy CPU µs/req | PostgreSQL CPU µs/req | runs µs |`, '| --- | --- | --- | --- | --- |');
    for (const [target, row] of cpu) {
      lines.push(`| ${target} | ${median(row.rate).toFixed(0)} | ${median(row.cpuUs).toFixed(1)} | ${target === 'tollgate+ship' ? median(row.pgCpuUs).toFixed(1) : '-'} | ${row.cpuUs.map((c) => c.toFixed(1)).join(' / ')} |`);
    }
    const ship = await shipRate(server, scratch, seconds, log);
    const single = median((cpu.get('tollgate') as CpuRow).rate);
    lines.push('', '## 2. Shipping rate', '');
    lines.push(`Three replicas built a backlog of ${ship.records} records while PostgreSQL was stopped, and were stopped. PostgreSQL started, the three started again (${ship.startSeconds.toFixed(1)} s until all three listened, ${ship.atListen} records shipped by then) and shipped the rest at once in ${ship.seconds.toFixed(1)} s: **${ship.rate.toFixed(0)} records/s**, ${(ship.rate / single).toFixed(2)}× one replica's full request rate (${single.toFixed(0)} req/s, part 1). PostgreSQL and the three replicas share this machine's 2 cores. A replica that is running when PostgreSQL comes back starts shipping at its next retry (backoff 1 s doubling to 30 s).`);
    lines.push('', `Disk per record: ${ship.localBytesPerRecord.toFixed(0)} bytes on a replica (log segments and SQLite index, policies included), ${ship.pgBytesPerRecord.toFixed(0)} bytes in PostgreSQL (the requests table with its indexes and TOAST).`);
    lines.push('', `One replica at its full rate (${ship.loadRate.toFixed(0)} req/s) with PostgreSQL up: oldest unshipped entry ${ship.meanOldestUnderLoad.toFixed(2)} s on average, ${ship.maxOldestUnderLoad.toFixed(2)} s at most (sampled every 0.5 s).`);
    if (values['skip-scale'] !== true) {
      server.sql('CREATE DATABASE scale');
      const pool = new Pool({ connectionString: server.url('scale'), max: 4 });
        await applyPgMigrations(pool, { dir: PG_MIGRATIONS });
      const history = await generateHistory(pool, { records: Number(values.records), nodes: 3, days: 10, endMs: Date.now(), log });
      lines.push('', `## 3. The shared history at ${history.records.toLocaleString('en')} records (3 nodes, 10 days)`, '');
      lines.push(...(await measureQueries(pool, server.url('scale'), history, scratch, log)));
      await pool.end();
    }
  } finally {
    destroyPostgres(server);
    rmSync(scratch, { recursive: true, force: true });
  }
  lines.push('', `Load average after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}.`, '');
  writeFileSync(String(values.out), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:fleet: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 2;
});
