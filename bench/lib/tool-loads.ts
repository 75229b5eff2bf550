import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * Loads driven by existing tools: wrk (keep-alive throughput; it speaks to a forward proxy when
 * its Lua script sets `wrk.path` to the absolute URI) and hey (a fixed request rate; `-x` takes
 * the proxy with its scheme). Each run is bounded by the tool's own duration and, should the
 * tool hang, killed after a grace period.
 */

const GRACE_MS = 30_000;

/** Where a load goes: straight to the origin (`proxyPort` null) or through a proxy. */
export interface Route {
  originPort: number;
  proxyPort: number | null;
}

async function runTool(command: string, args: string[], limitMs: number): Promise<string> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (status) => resolve(status));
  }).finally(() => clearTimeout(timer));
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.trim() || stdout.trim()}`);
  return stdout;
}

export interface ThroughputResult {
  /** Successful requests or exchanges. */
  requests: number;
  seconds: number;
  rate: number;
  errors: number;
  /** What the errors were, e.g. "read 12, status 3". */
  errorKinds: string | null;
}

/** wrk prints this JSON line from `done()`, so nothing depends on its human-readable summary. */
function wrkScript(route: Route): string {
  const origin = `127.0.0.1:${route.originPort}`;
  const target = route.proxyPort === null ? '' : `wrk.path = "http://${origin}/"\nwrk.headers["Host"] = "${origin}"\n`;
  return `${target}done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
`;
}

const WRK_ERRORS = ['connect', 'read', 'write', 'status', 'timeout'] as const;
type WrkSummary = { requests: number; durationUs: number } & Record<(typeof WRK_ERRORS)[number], number>;

/** (1) keep-alive GETs from `connections` connections for `seconds`, as fast as they go. */
export async function runWrk(route: Route, connections: number, seconds: number, scratch: string): Promise<ThroughputResult> {
  const script = path.join(scratch, `wrk-${route.proxyPort ?? 'direct'}.lua`);
  writeFileSync(script, wrkScript(route));
  const url = `http://127.0.0.1:${route.proxyPort ?? route.originPort}/`;
  // One thread: on two cores a second one only takes CPU from the proxy being measured.
  const out = await runTool('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '5s', '-s', script, url], seconds * 1000 + GRACE_MS);
  const line = out.split('\n').find((text) => text.startsWith('{"requests"'));
  if (!line) throw new Error(`wrk printed no summary line: ${out}`);
  const parsed = JSON.parse(line) as WrkSummary;
  const elapsed = parsed.durationUs / 1e6;
  const errors = WRK_ERRORS.reduce((sum, kind) => sum + parsed[kind], 0);
  const kinds = WRK_ERRORS.filter((kind) => parsed[kind] > 0).map((kind) => `${kind} ${parsed[kind]}`);
  // wrk counts a non-2xx answer both as a request and as a status error; the rate counts successes.
  const ok = parsed.requests - parsed.status;
  return { requests: ok, seconds: elapsed, rate: ok / elapsed, errors, errorKinds: kinds.length ? `wrk errors: ${kinds.join(', ')}` : null };
}

export interface LatencyResult {
  rate: number;
  requests: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
}

/** A percentile of sorted values (nearest rank). */
function percentile(sorted: number[], percent: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((percent / 100) * sorted.length) - 1)];
}

/** Rows of `hey -o csv`: response-time (s), ..., status-code, offset. */
function readHeyCsv(out: string, latenciesMs: number[]): { ok: number; failed: number } {
  let ok = 0;
  let failed = 0;
  for (const line of out.split('\n').slice(1)) {
    const fields = line.split(',');
    if (fields.length < 8) continue;
    if (fields[6] === '200') {
      ok += 1;
      latenciesMs.push(Number(fields[0]) * 1000);
    } else failed += 1;
  }
  return { ok, failed };
}

/** hey paces each worker at `-q` per second on its own ticker; this many workers share the rate. */
export const LATENCY_STREAMS = 10;

/**
 * (5) `rate` requests per second for `seconds`, with hey. One hey with `-c 10 -q 100` starts its
 * ten workers' tickers together, so the requests come in bursts of ten every 10 ms, and the last of
 * a burst waits for the nine before it. Ten hey processes with `-c 1`, started a tenth of a tick
 * apart, spread the same rate evenly, which is what "a fixed moderate rate" means. Each keeps one
 * keep-alive connection. Percentiles are computed here from every request's time (`-o csv`,
 * 0.1 ms resolution); failed requests are counted apart.
 */
export async function runHey(route: Route, rate: number, seconds: number): Promise<LatencyResult> {
  const perStream = Math.max(1, Math.round(rate / LATENCY_STREAMS));
  const tickMs = 1000 / perStream;
  const proxy = route.proxyPort === null ? [] : ['-x', `http://127.0.0.1:${route.proxyPort}`];
  const args = ['-z', `${seconds}s`, '-c', '1', '-q', String(perStream), '-t', '5', '-o', 'csv', ...proxy, `http://127.0.0.1:${route.originPort}/`];
  const runs: Array<Promise<string>> = [];
  for (let stream = 0; stream < LATENCY_STREAMS; stream += 1) {
    runs.push(runTool('hey', args, seconds * 1000 + GRACE_MS));
    await delay(tickMs / LATENCY_STREAMS);
  }
  const latenciesMs: number[] = [];
  let ok = 0;
  let failed = 0;
  for (const out of await Promise.all(runs)) {
    const counted = readHeyCsv(out, latenciesMs);
    ok += counted.ok;
    failed += counted.failed;
  }
  latenciesMs.sort((a, b) => a - b);
  return { rate: ok / seconds, requests: ok, errors: failed, p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99) };
}
