import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type * as EntryCodecModule from '../../src/audit/log/entry-codec';
import type * as SegmentLogModule from '../../src/audit/log/segment-log';
import type * as SegmentFilesModule from '../../src/audit/log/segment-files';
import { load, REPO } from './built-modules';
import { completionAt, openAt } from './plausible-records';

/**
 * The tamper-evident chain (issue 17), measured:
 *  1. Append CPU per record with and without the chain, side by side in one run: the same
 *     batches (17 opens and the previous batch's 17 completions) encoded and written with one
 *     write() each, unchained (the encoding before issue 17), chained with SHA-256, and chained
 *     with HMAC-SHA256 (--audit-key). Runs alternate; the median of RUNS is reported.
 *  2. `tollgate audit verify` on a log of 1,000,000 records (2,000,000 entries: an open and a
 *     completion each) written by the real writer (SegmentLog), timed as a user runs it: the
 *     built CLI in a child process. Target: under 10 s.
 * Usage: npm run bench:verify [-- --records 1000000]
 */

const { encodeBatch, encodeChainedBatch, ZERO_HASH } = load<typeof EntryCodecModule>('audit/log/entry-codec.js');
const { SegmentLog } = load<typeof SegmentLogModule>('audit/log/segment-log.js');
const { listSegments } = load<typeof SegmentFilesModule>('audit/log/segment-files.js');

const BATCH = 17;
const APPEND_RECORDS = 200_000;
const RUNS = 5;
const argRecords = process.argv.indexOf('--records');
const VERIFY_RECORDS = argRecords > 0 ? Number(process.argv[argRecords + 1]) : 1_000_000;


type Variant = 'unchained' | 'sha256' | 'hmac';

/** CPU µs per record (user + system) of encoding and writing APPEND_RECORDS records one way. */
function appendRun(dir: string, variant: Variant): number {
  const file = path.join(dir, `${variant}.seg`);
  const fd = fs.openSync(file, 'w');
  const key = variant === 'hmac' ? Buffer.from('a key of thirty-two bytes, give or take') : null;
  let head = { id: 0, hash: ZERO_HASH };
  const started = process.cpuUsage();
  try {
    let previous: number[] = [];
    for (let n = 0; n < APPEND_RECORDS; n += BATCH) {
      const entries: EntryCodecModule.LogEntry[] = [];
      const ids: number[] = [];
      for (let i = 0; i < BATCH; i += 1) {
        entries.push({ type: 'open', id: n + i + 1, open: openAt(n + i) });
        ids.push(n + i + 1);
      }
      for (const id of previous) entries.push({ type: 'complete', id, completion: completionAt(id) });
      previous = ids;
      let bytes: Buffer;
      if (variant === 'unchained') {
        bytes = encodeBatch(entries);
      } else {
        const out = encodeChainedBatch(entries, { key, head });
        bytes = out.bytes;
        head = out.head;
      }
      fs.writeSync(fd, bytes);
    }
  } finally {
    fs.closeSync(fd);
  }
  const used = process.cpuUsage(started);
  fs.rmSync(file);
  return (used.user + used.system) / APPEND_RECORDS;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function appendSideBySide(dir: string): Record<Variant, number> {
  const variants: Variant[] = ['unchained', 'sha256', 'hmac'];
  for (const v of variants) appendRun(dir, v); // warm-up
  const samples: Record<Variant, number[]> = { unchained: [], sha256: [], hmac: [] };
  for (let r = 0; r < RUNS; r += 1) for (const v of variants) samples[v].push(appendRun(dir, v));
  return { unchained: median(samples.unchained), sha256: median(samples.sha256), hmac: median(samples.hmac) };
}

/** The real writer, 64 MiB segments, the proxy's batch pattern; returns the wall time. */
function writeLog(logDir: string, records: number): number {
  const started = performance.now();
  const log = SegmentLog.open({ dir: logDir });
  try {
    let previous: number[] = [];
    for (let n = 0; n < records; n += BATCH) {
      const batch: EntryCodecModule.NewEntry[] = [];
      for (let i = 0; i < BATCH && n + i < records; i += 1) batch.push({ type: 'open', open: openAt(n + i) });
      for (const id of previous) batch.push({ type: 'complete', id, completion: completionAt(id) });
      previous = log.appendBatch(batch).slice(0, batch.length - previous.length);
    }
    if (previous.length > 0) log.appendBatch(previous.map((id) => ({ type: 'complete' as const, id, completion: completionAt(id) })));
  } finally {
    log.close();
  }
  return performance.now() - started;
}

function main(): void {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-bench-verify-'));
  try {
    const append = appendSideBySide(root);
    const line = (name: string, us: number): string => `| ${name} | ${us.toFixed(2)} | ${us === append.unchained ? '' : `+${(us - append.unchained).toFixed(2)}`} |`;
    process.stdout.write([
      `## Append CPU per record (${APPEND_RECORDS.toLocaleString('en-US')} records, batches of ${BATCH} opens + ${BATCH} completions, median of ${RUNS})`,
      '',
      '| encoding | CPU µs per record (open + completion) | chain cost |',
      '|---|---:|---:|',
      line('unchained (before issue 17)', append.unchained),
      line('chained, SHA-256', append.sha256),
      line('chained, HMAC-SHA256 (--audit-key)', append.hmac),
      '',
    ].join('\n') + '\n');

    const db = path.join(root, 'audit.db');
    const logDir = path.join(root, 'audit-log');
    const writeMs = writeLog(logDir, VERIFY_RECORDS);
    const bytes = listSegments(logDir).reduce((n, s) => n + fs.statSync(s.file).size, 0);
    const started = performance.now();
    const run = spawnSync(process.execPath, [path.join(REPO, 'dist', 'cli.js'), 'audit', 'verify', '--db', db], { encoding: 'utf8' });
    const verifyMs = performance.now() - started;
    if (run.status !== 0) throw new Error(`audit verify exited ${run.status}: ${run.stdout}${run.stderr}`);
    process.stdout.write([
      `## audit verify on ${VERIFY_RECORDS.toLocaleString('en-US')} records`,
      '',
      `log: ${(bytes / 2 ** 20).toFixed(0)} MiB in ${listSegments(logDir).length} segments, written in ${(writeMs / 1000).toFixed(1)} s by SegmentLog`,
      `\`tollgate audit verify --db\` (child process, wall): ${(verifyMs / 1000).toFixed(2)} s (target < 10 s)`,
      `output: ${run.stdout.trim()}`,
      '',
    ].join('\n') + '\n');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main();
