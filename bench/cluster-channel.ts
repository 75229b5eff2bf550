import cluster from 'node:cluster';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';

/**
 * What one batch's round trip between a `--workers` worker and the primary costs in CPU, both
 * processes together: the audit channel (cluster/wire.ts, a socket pair with binary frames, as
 * `serve` runs it) against the cluster's own JSON channel (process.send, what the records took
 * before). One batch in flight at a time, as group commit sends them; nothing else runs, so every
 * message wakes the other process, which is what a cross-process round trip costs at least.
 * Loads dist/ (`npm run build`).
 * `oneway` measures the alternative with no round trip (a spool per worker, below).
 * Usage: npm run bench:channel [-- --trips N] [--repeat N] [--out FILE]
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const FD = 4;

interface Prepared { type: 'open' | 'complete' | 'finished'; id: number; timeMs: number; body: string | Buffer; bodyBytes: number }
interface Wire {
  encodeBatchFrame(seq: number, entries: readonly Prepared[]): Buffer;
  decodeBatchFrame(frame: Buffer): { seq: number; entries: Prepared[] };
  encodeAnswerFrame(seq: number, writable: boolean, answer: { ok: true; ids: number[]; refusedCompletions: number }): Buffer;
  decodeAnswerFrame(frame: Buffer): { seq: number };
  FrameReader: new (onFrame: (frame: Buffer) => void) => { push(chunk: Buffer): void };
}
interface Codec { prepareEntry(entry: unknown): Prepared }

const load = <T>(rel: string): T => require(path.join(REPO_ROOT, 'dist', rel)) as T;

/**
 * `oneway`: what a worker's spool would cost instead (docs/architecture.md, "What would make
 * workers flat"): each batch written to a file of the worker's own (one write, as one process
 * appends to its log) and streamed to the primary, with no answer awaited; a batch per turn of
 * the worker's event loop, as group commit sends them. The primary decodes every frame.
 */
type Mode = 'json' | 'socket' | 'oneway';
interface Run { mode: Mode; records: number; trips: number; primaryUs: number; workerUs: number }

/** A record as the proxy opens one for a CONNECT (the fields' usual sizes). */
function batchOf(records: number): Prepared[] {
  const { prepareEntry } = load<Codec>('audit/log/entry-codec.js');
  return Array.from({ length: records }, (_, i) => prepareEntry({
    type: 'open',
    open: {
      startedAt: new Date(), clientIp: '10.0.8.7', clientPort: 50000 + i, clients: ['ci-runners'], user: null, kind: 'connect',
      method: 'CONNECT', scheme: null, host: `host${i}.example.com`, port: 443, path: null, resolvedIp: '203.0.113.9',
      decision: 'allow', wouldDeny: false, rule: 'ci', ruleSource: 'policies/10-ci.yaml:3', reason: 'matched rule ci', policyVersion: 'sha256:abc',
    },
  }));
}

function cpuUs(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

function worker(): void {
  const mode = process.env.CHANNEL_MODE as Mode;
  const records = Number(process.env.CHANNEL_RECORDS);
  const trips = Number(process.env.CHANNEL_TRIPS);
  const wire = load<Wire>('cluster/wire.js');
  const batch = batchOf(records);
  const socket = new net.Socket({ fd: FD, readable: true, writable: true });
  let seq = 0;
  let started = 0;
  if (mode === 'oneway') {
    const spool = fs.openSync(path.join(process.env.CHANNEL_SPOOL_DIR ?? '/tmp', `spool-${process.pid}`), 'a');
    const stream = (): void => {
      seq += 1;
      if (seq > trips) {
        fs.closeSync(spool);
        process.send?.({ t: 'done', cpu: cpuUs() - started });
        return;
      }
      const frame = wire.encodeBatchFrame(seq, batch);
      fs.writeSync(spool, frame);
      socket.write(frame);
      setImmediate(stream);
    };
    process.on('message', (message: { t: string }) => {
      if (message.t !== 'go') return;
      started = cpuUs();
      stream();
    });
    process.send?.({ t: 'ready' });
    return;
  }
  const next = (): void => {
    seq += 1;
    if (seq > trips) {
      process.send?.({ t: 'done', cpu: cpuUs() - started });
      return;
    }
    if (mode === 'json') process.send?.({ t: 'batch', seq, entries: batch.map((e) => [e.type, e.id, e.timeMs, e.body]) });
    else socket.write(wire.encodeBatchFrame(seq, batch));
  };
  const frames = new wire.FrameReader((frame) => {
    wire.decodeAnswerFrame(frame);
    next();
  });
  socket.on('data', (chunk: Buffer) => frames.push(chunk));
  process.on('message', (message: { t: string }) => {
    if (message.t === 'go') {
      started = cpuUs();
      next();
    } else if (message.t === 'batchDone') next();
  });
  process.send?.({ t: 'ready' });
}

const spoolDir = fs.mkdtempSync(path.join((require('node:os') as typeof import('node:os')).tmpdir(), 'tollgate-spool-'));

function runOnce(mode: Mode, records: number, trips: number): Promise<Run> {
  const wire = load<Wire>('cluster/wire.js');
  return new Promise((resolve, reject) => {
    const child = cluster.fork({ CHANNEL_MODE: mode, CHANNEL_RECORDS: String(records), CHANNEL_TRIPS: String(trips), CHANNEL_SPOOL_DIR: spoolDir });
    const socket = child.process.stdio[FD];
    if (!(socket instanceof net.Socket)) return reject(new Error('no channel'));
    let started = 0;
    let received = 0;
    let workerCpu: number | null = null;
    // One way: the run ends once the worker is done and every frame it sent has been read.
    const finishOneWay = (): void => {
      if (workerCpu === null || received < trips) return;
      const primaryUs = (cpuUs() - started) / trips;
      child.kill();
      resolve({ mode, records, trips, primaryUs, workerUs: workerCpu / trips });
    };
    const answer = (seq: number, count: number): Buffer => wire.encodeAnswerFrame(seq, true, { ok: true, ids: Array.from({ length: count }, (_, i) => seq * 100 + i), refusedCompletions: 0 });
    const frames = new wire.FrameReader((frame) => {
      const batch = wire.decodeBatchFrame(frame);
      if (mode !== 'oneway') return void socket.write(answer(batch.seq, batch.entries.length));
      received += 1;
      finishOneWay();
    });
    socket.on('data', (chunk: Buffer) => frames.push(chunk));
    socket.on('error', () => undefined);
    child.on('message', (message: { t: string; seq?: number; entries?: unknown[]; cpu?: number }) => {
      if (message.t === 'ready') {
        started = cpuUs();
        child.send({ t: 'go' });
      } else if (message.t === 'batch') {
        child.send({ t: 'batchDone', seq: message.seq, ok: true, ids: (message.entries ?? []).map((_, i) => (message.seq ?? 0) * 100 + i), refusedCompletions: 0, writable: true });
      } else if (message.t === 'done' && mode === 'oneway') {
        workerCpu = message.cpu ?? 0;
        finishOneWay();
      } else if (message.t === 'done') {
        const primaryUs = (cpuUs() - started) / trips;
        const workerUs = (message.cpu ?? 0) / trips;
        child.kill();
        resolve({ mode, records, trips, primaryUs, workerUs });
      }
    });
    child.on('error', reject);
  });
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function primary(): Promise<void> {
  const { values } = parseArgs({ options: { trips: { type: 'string' }, repeat: { type: 'string' }, out: { type: 'string' } } });
  const trips = Number(values.trips ?? '20000');
  const repeat = Number(values.repeat ?? '3');
  const out = values.out ?? path.join(REPO_ROOT, 'bench', 'results', 'cluster-channel.md');
  cluster.setupPrimary({ exec: __filename, args: [], serialization: 'json', stdio: [0, 1, 2, 'ipc', 'pipe'] });
  const runs: Run[] = [];
  for (let r = 0; r < repeat; r += 1) {
    for (const records of [1, 8]) {
      // Alternating, so a change in the machine's load falls on both.
      for (const mode of ['json', 'socket', 'oneway'] as const) runs.push(await runOnce(mode, records, trips));
    }
  }
  fs.rmSync(spoolDir, { recursive: true, force: true });
  const rows = [1, 8].flatMap((records) => (['json', 'socket', 'oneway'] as const).map((mode) => {
    const mine = runs.filter((run) => run.mode === mode && run.records === records);
    const p = median(mine.map((run) => run.primaryUs));
    const w = median(mine.map((run) => run.workerUs));
    const label = { json: 'cluster JSON channel (process.send)', socket: 'audit channel (wire.ts, socket pair)', oneway: 'one way: spool file + socket pair, no answer' }[mode];
    return `| ${records} | ${label} | ${p.toFixed(1)} | ${w.toFixed(1)} | ${(p + w).toFixed(1)} |`;
  }));
  const text = [
    '# One batch\'s round trip between a worker and the primary',
    '',
    `Measured ${new Date().toISOString()} by \`npm run bench:channel\` (bench/cluster-channel.ts): ${trips.toLocaleString('en-US')} round trips a run, one batch in flight, the median of ${repeat} runs each, modes alternating. CPU from process.cpuUsage() in each process around the trips. Node ${process.version}; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')} at the end.`,
    '',
    '| records per batch | channel | primary µs per batch | worker µs per batch | both |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
    'Nothing else runs in either process, so each message wakes the other one: this is the least a',
    'round trip costs, and what a worker pays per batch, beyond one process appending its own records',
    '(about 3 µs a batch, `log-append.md`).',
    '',
    'One way, the worker pays a file write and a socket write per batch and is never woken; the',
    'primary may read several batches per wake, so its figure is a floor (under real load the',
    'workers\' batches also arrive together). It leaves out what the spool design adds on top:',
    'the primary\'s append (as above), the mapping of completions to ids, and the spool\'s upkeep.',
    '',
  ].join('\n');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, text);
  process.stdout.write(text);
}

if (cluster.isPrimary) {
  primary().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
} else {
  worker();
}
