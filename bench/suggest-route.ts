import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { seconds, timeCli } from './lib/cli-timing';
import { generateTraffic, loadDist } from './replay-traffic';

/**
 * GET /api/policy/suggest against `tollgate policy suggest` on the same records: how long the
 * route takes (it groups the filtered set in memory; the CLI groups in SQLite), how long the
 * event loop it shares with the proxy stalls meanwhile, and the heap it holds.
 * Usage: npm run bench:suggest-route [-- --records N] [--out FILE] (bench/results/suggest-route.md)
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const DAY_MS = 86_400_000;

interface Answer {
  yaml: string;
  summary: { rules: number; records: { in_window: number } };
}

interface App {
  inject(opts: { method: string; url: string }): Promise<{ statusCode: number; body: string }>;
  ready(): Promise<unknown>;
  close(): Promise<unknown>;
}

type BuildAdminApp = (opts: Record<string, unknown>) => App;

async function timeRoute(app: App, url: string): Promise<{ ms: number; maxStallMs: number; p99StallMs: number; heapMb: number; answer: Answer }> {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  let heap = 0;
  const sampler = setInterval(() => { heap = Math.max(heap, process.memoryUsage().heapUsed); }, 20);
  const heapBefore = process.memoryUsage().heapUsed;
  delay.enable();
  const started = performance.now();
  const res = await app.inject({ method: 'GET', url });
  const ms = performance.now() - started;
  delay.disable();
  clearInterval(sampler);
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return { ms, maxStallMs: delay.max / 1e6, p99StallMs: delay.percentile(99) / 1e6, heapMb: (heap - heapBefore) / 1048576, answer: JSON.parse(res.body) as Answer };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { records: { type: 'string' }, out: { type: 'string' } } });
  const records = Number(values.records ?? 1_000_000);
  const out = values.out ?? path.join(REPO_ROOT, 'bench', 'results', 'suggest-route.md');
  const lines: string[] = [];
  const say = (line: string): void => {
    lines.push(line);
    process.stdout.write(line);
  };
  const dist = loadDist();
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-bench-suggest-'));
  try {
    const policies = path.join(dir, 'policies');
    cpSync(path.join(REPO_ROOT, 'policies'), policies, { recursive: true });
    const settings = path.join(policies, '00-settings.yaml');
    writeFileSync(settings, readFileSync(settings, 'utf8').replace('mode: enforce', 'mode: report'));
    const loaded = dist.loadPolicy(policies);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    const dbFile = path.join(dir, 'audit.db');
    const db = new Database(dbFile);
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    dist.applyMigrations(db);
    generateTraffic(dist, db, loaded.policy, { records, nowMs: Date.now(), spanMs: 13 * DAY_MS, batch: 50_000 });
    db.pragma('journal_mode = WAL');
    const shapes = (db.prepare(`SELECT count(*) AS n FROM (SELECT DISTINCT kind, method, host, port, path, client_ip, user, decision, would_deny, rule, sni FROM requests)`).get() as { n: number }).n;
    say(`${records.toLocaleString('en-US')} records, ${shapes.toLocaleString('en-US')} distinct shapes\n`);

    const cli = timeCli(path.join(REPO_ROOT, 'dist', 'cli.js'), ['policy', 'suggest', '--db', dbFile, '--policies', policies]);
    say(`CLI (SQLite groups): ${seconds(cli.ms)} wall\n`);

    const { buildAdminApp } = require(path.join(REPO_ROOT, 'dist', 'admin', 'app.js')) as { buildAdminApp: BuildAdminApp };
    const reload = { ok: true, at: new Date().toISOString(), version: 'bench', problems: [] };
    const app = buildAdminApp({ store: { db, isWritable: () => true }, ready: () => ({ ok: true, detail: {} }), policy: () => ({ policy: loaded.policy, lastReload: reload }) });
    await app.ready();
    for (const url of ['/api/policy/suggest', '/api/policy/suggest?not.host=%2A%2A.github.com', '/api/policy/suggest?host=deb.debian.org&with_paths=1']) {
      const run = await timeRoute(app, url);
      say(`${url}: ${seconds(run.ms)}, ${run.answer.summary.records.in_window.toLocaleString('en-US')} records, ${run.answer.summary.rules} rules; ` +
        `event loop stall max ${run.maxStallMs.toFixed(0)} ms, p99 ${run.p99StallMs.toFixed(0)} ms; heap +${run.heapMb.toFixed(0)} MB\n`);
      if (url === '/api/policy/suggest') {
        const body = (yaml: string) => yaml.slice(yaml.indexOf('\nversion:'));
        say(`  same rules as the CLI: ${body(run.answer.yaml) === body(cli.stdout)}\n`);
      }
    }
    await app.close();
    db.close();
    const header = `# GET /api/policy/suggest against the CLI\n\nMeasured ${new Date().toISOString()} by \`npm run bench:suggest-route\` (bench/suggest-route.ts); Node ${process.version}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at the end.\n\n`;
    writeFileSync(out, header + lines.map((line) => `    ${line}`).join(''));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
