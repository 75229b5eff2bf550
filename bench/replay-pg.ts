import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { medianOf, seconds, timeCli as timeCliAt } from './lib/cli-timing';
import { Pool } from 'pg';
import { loadDist, trafficRows, type TrafficRow, PROPOSED_CHANGE } from './replay-traffic';

/**
 * How long does `tollgate policy replay --audit-url` take on a million records in PostgreSQL?
 * Usage: npm run bench:replay-pg -- --url postgres://USER@HOST:PORT/postgres [--records N] [--runs N] [--keep]
 * (or TOLLGATE_BENCH_PG_URL). Creates a scratch database beside the one named, fills it with the
 * same synthetic traffic as bench:replay (multi-row INSERTs, not the ship path: this measures the
 * replay), replays, drops it. Writes bench/results/replay-pg.md. The target is under 15 s.
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(REPO_ROOT, 'dist', 'cli.js');
const TARGET_SECONDS = 15;
const DAY_MS = 86_400_000;
const STORE_ID = '00000000-0000-4000-8000-00000000be9c';


const INSERT = `INSERT INTO requests (store_id, node, local_id, started_at_ms, ended_at_ms, client_ip, client_port, clients,
    kind, method, scheme, host, port, path, decision, would_deny, rule, rule_source, reason, status, bytes_up, bytes_down, policy_version)
  SELECT $1, 'bench', u.local_id, u.started, u.ended, u.client_ip, 40000, string_to_array(u.clients, ','), u.kind, u.method,
    u.scheme, u.host, u.port, u.path, u.decision, u.would_deny, u.rule, u.rule_source, u.reason, u.status, 1200, 48000, u.version
  FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
    $11::integer[], $12::text[], $13::text[], $14::boolean[], $15::text[], $16::text[], $17::text[], $18::integer[], $19::text[])
    AS u(local_id, started, ended, client_ip, clients, kind, method, scheme, host, port, path, decision, would_deny, rule,
      rule_source, reason, status, version)`;

function columns(rows: TrafficRow[], firstId: number): unknown[] {
  const pick = <K extends keyof TrafficRow>(k: K) => rows.map((r) => r[k]);
  return [
    rows.map((_, i) => firstId + i), pick('started'), pick('ended'), pick('client_ip'),
    rows.map((r) => (JSON.parse(r.clients) as string[]).join(',')), pick('kind'), pick('method'), pick('scheme'), pick('host'),
    pick('port'), pick('path'), pick('decision'), rows.map((r) => r.would_deny === 1), pick('rule'), pick('rule_source'),
    pick('reason'), pick('status'), pick('version'),
  ];
}

async function fill(url: string, records: number, nowMs: number): Promise<number> {
  const dist = loadDist();
  const migrate = (require(path.join(REPO_ROOT, 'dist', 'fleet', 'pg-migrate.js')) as { applyPgMigrations(pool: Pool): Promise<string[]> }).applyPgMigrations;
  const recorded = dist.loadPolicy(path.join(REPO_ROOT, 'policies'));
  if (!recorded.ok) throw new Error('policies/ does not load');
  const pool = new Pool({ connectionString: url, max: 2 });
  try {
    await migrate(pool);
    await pool.query(`INSERT INTO audit_stores (store_id, node, first_contact_ms, last_contact_ms) VALUES ($1, 'bench', $2, $2)`, [STORE_ID, nowMs]);
    const started = performance.now();
    let batch: TrafficRow[] = [];
    let next = 1;
    const flush = async (): Promise<void> => {
      await pool.query(INSERT, [STORE_ID, ...columns(batch, next)]);
      next += batch.length;
      batch = [];
    };
    for (const row of trafficRows(dist, recorded.policy, { records, nowMs, spanMs: 7 * DAY_MS - 60_000 })) {
      batch.push(row);
      if (batch.length === 10_000) await flush();
    }
    if (batch.length > 0) await flush();
    await pool.query('VACUUM ANALYZE requests');
    return performance.now() - started;
  } finally {
    await pool.end();
  }
}

const timeCli = (args: string[]): { ms: number; stdout: string } => timeCliAt(CLI, args);
const median = medianOf;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { url: { type: 'string' }, records: { type: 'string' }, runs: { type: 'string' }, keep: { type: 'boolean' } } });
  const base = values.url ?? process.env.TOLLGATE_BENCH_PG_URL;
  if (base === undefined) throw new Error('give --url postgres://USER@HOST:PORT/postgres or TOLLGATE_BENCH_PG_URL (a user that may CREATE DATABASE)');
  const records = Number(values.records ?? 1_000_000);
  const runs = Number(values.runs ?? 3);
  const name = `tollgate_bench_replay_${Date.now().toString(36)}`;
  const admin = new Pool({ connectionString: base, max: 1 });
  await admin.query(`CREATE DATABASE ${name}`);
  const scratch = new URL(base);
  scratch.pathname = `/${name}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-bench-replay-pg-'));
  try {
    const generateMs = await fill(scratch.toString(), records, Date.now());
    process.stdout.write(`wrote ${records.toLocaleString('en-US')} records in ${seconds(generateMs)}\n`);
    const proposed = path.join(dir, 'proposed');
    cpSync(path.join(REPO_ROOT, 'policies'), proposed, { recursive: true });
    writeFileSync(path.join(proposed, '05-proposed-change.yaml'), PROPOSED_CHANGE);
    const args = ['policy', 'replay', '--audit-url', scratch.toString(), '--policies', proposed, '--since', '7d', '--format', 'json'];
    const wall: number[] = [];
    const inside: number[] = [];
    let shapes = 0;
    let inWindow = 0;
    for (let i = 0; i < runs; i += 1) {
      const run = timeCli(args);
      const report = JSON.parse(run.stdout) as { elapsed_ms: number; records: { in_window: number; shapes: number } };
      wall.push(run.ms);
      inside.push(report.elapsed_ms);
      shapes = report.records.shapes;
      inWindow = report.records.in_window;
      process.stdout.write(`run ${i + 1}: ${seconds(run.ms)} wall, ${seconds(report.elapsed_ms)} replaying\n`);
    }
    const unused = timeCli(['policy', 'unused', '--audit-url', scratch.toString(), '--policies', proposed, '--since', '30d', '--format', 'json']);
    const n = (v: number): string => v.toLocaleString('en-US');
    const result = [
      '# policy replay --audit-url: one million records in PostgreSQL',
      '',
      `Measured ${new Date().toISOString()} on Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ` +
        `load average ${loadavg().map((l) => l.toFixed(1)).join(' / ')} when the runs ended. Generated by \`npm run bench:replay-pg\` (bench/replay-pg.ts).`,
      '',
      '| what | value |',
      '| --- | --- |',
      `| records in the window (7 days) | ${n(inWindow)} |`,
      `| distinct request shapes (one PostgreSQL group each, fetched 10,000 at a time through a cursor) | ${n(shapes)} |`,
      `| **\`policy replay --audit-url --format json\`, wall clock (median)** | **${seconds(median(wall))}** |`,
      `| all runs, wall clock | ${wall.map(seconds).join(', ')} |`,
      `| of which reading + replaying (report \`elapsed_ms\`, median) | ${seconds(median(inside))} |`,
      `| \`policy unused --audit-url --since 30d\`, wall clock | ${seconds(unused.ms)} |`,
      `| target | < ${TARGET_SECONDS} s for 1,000,000 records: ${median(wall) < TARGET_SECONDS * 1000 ? 'met' : 'NOT met'} |`,
      `| time to write the records (multi-row INSERTs, not part of the replay) | ${seconds(generateMs)} |`,
      '',
      'The traffic is bench:replay\'s (bench/replay-traffic.ts), one store, inserted straight into `requests`.',
      'PostgreSQL groups the window by the ten request columns (a hash aggregate), sorts only the groups by',
      'their JSON key (the order SQLite replays in), and streams them to the replay through a cursor.',
      '',
    ].join('\n');
    mkdirSync(path.join(REPO_ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(path.join(REPO_ROOT, 'bench', 'results', 'replay-pg.md'), result);
    process.stdout.write(`\n${result}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (values.keep) process.stdout.write(`kept database ${name}\n`);
    else await admin.query(`DROP DATABASE ${name}`);
    await admin.end();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
