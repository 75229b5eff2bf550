import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

/** What bench/retention.ts samples every few seconds: the audit store's files and contents. */
export interface DiskSample {
  /** Seconds since the load started. */
  t: number;
  dbBytes: number;
  walBytes: number;
  shmBytes: number;
  /** The append-only log's segments and id mark (audit-log/ beside the db). */
  logBytes: number;
  records: number;
  /** Pages on SQLite's freelist: freed by deletes, reused by inserts. */
  freePages: number;
  pageCount: number;
  /** tollgate_audit_pruned_records_total at that time. */
  pruned: number;
}

/** The log's folder as the build names it (dist/, built by `npm run build` before every bench). */
const { auditLogDir } = require(path.join(__dirname, '..', '..', '..', 'dist', 'audit', 'log', 'segment-files.js')) as {
  auditLogDir(dbFile: string): string;
};

function size(file: string): number {
  return statSync(file, { throwIfNoEntry: false })?.size ?? 0;
}

/** The db file and what SQLite keeps beside it (SPEC §6: the store is the --db file and its folder). */
export function sampleDisk(dbFile: string, t: number, pruned: number): DiskSample {
  // A read connection: WAL, so it never blocks the proxy's writer.
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    const records = db.prepare('SELECT count(*) FROM requests').pluck().get() as number;
    const freePages = db.pragma('freelist_count', { simple: true }) as number;
    const pageCount = db.pragma('page_count', { simple: true }) as number;
    return {
      t, dbBytes: size(dbFile), walBytes: size(`${dbFile}-wal`), shmBytes: size(`${dbFile}-shm`), logBytes: folderBytes(auditLogDir(dbFile)),
      records, freePages, pageCount, pruned,
    };
  } finally {
    db.close();
  }
}

function folderBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir, { withFileTypes: true })) if (name.isFile()) total += size(path.join(dir, name.name));
  return total;
}

export function totalBytes(sample: DiskSample): number {
  return sample.dbBytes + sample.walBytes + sample.shmBytes + sample.logBytes;
}

export interface FlatVerdict {
  flat: boolean;
  /** From the first sample after the settling time to the last. */
  growthBytes: number;
  /** Spread of the total over the settled samples, relative to their largest. */
  spread: number;
  settledFrom: number;
}

/**
 * Disk use is flat when, after the first retention period plus one pruning interval (the file
 * then holds as many records as it ever will), the total stops growing: the last sample is
 * within `tolerance` of the first settled one, and the settled samples spread little.
 */
export function flatAfter(samples: readonly DiskSample[], settleSeconds: number, tolerance = 0.1): FlatVerdict {
  const settled = samples.filter((s) => s.t >= settleSeconds);
  if (settled.length < 2) return { flat: false, growthBytes: NaN, spread: NaN, settledFrom: settleSeconds };
  const totals = settled.map(totalBytes);
  const growthBytes = totals[totals.length - 1] - totals[0];
  const largest = Math.max(...totals);
  const spread = (largest - Math.min(...totals)) / largest;
  return { flat: growthBytes <= tolerance * totals[0] && spread <= 2 * tolerance, growthBytes, spread, settledFrom: settleSeconds };
}

const MiB = 1024 ** 2;

export interface RetentionRun {
  retainSeconds: number;
  pruneEverySeconds: number;
  seconds: number;
  load: string;
  requests: number;
  failed: number;
  samples: DiskSample[];
  verdict: FlatVerdict;
  date: Date;
}

export function renderRetention(run: RetentionRun): string {
  const mib = (n: number): string => (n / MiB).toFixed(2);
  const rows = run.samples.map((s) =>
    `| ${s.t} | ${s.records.toLocaleString('en-US')} | ${s.pruned.toLocaleString('en-US')} | ${mib(s.dbBytes)} | ${mib(s.walBytes)} | ${mib(s.shmBytes)} | ${mib(s.logBytes)} | **${mib(totalBytes(s))}** | ${s.freePages.toLocaleString('en-US')} / ${s.pageCount.toLocaleString('en-US')} |`);
  const v = run.verdict;
  return [
    '# Retention soak (`npm run bench:retention`)',
    '',
    `${run.date.toISOString()}: \`tollgate serve --retain ${run.retainSeconds}s\` (a pass every ${run.pruneEverySeconds} s) under ${run.load} ` +
      `for ${run.seconds} s through the proxy to a loopback origin: ${run.requests.toLocaleString('en-US')} requests answered, ${run.failed} failed.`,
    '',
    'Disk use is the db file (the index the admin API reads) plus its `-wal` and `-shm`, and the append-only',
    'log (`audit-log/`: segments and the id mark), sampled from outside the proxy; records and the',
    'freelist (pages freed by deletes, waiting to be reused) are read on a read-only connection.',
    '',
    '| t (s) | records | pruned so far | db MiB | wal MiB | shm MiB | log MiB | total MiB | free pages / pages |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    `From t = ${v.settledFrom} s (one retention period and one pass after the start) to the end, the total grew by ` +
      `${mib(v.growthBytes)} MiB and varied by ${(v.spread * 100).toFixed(1)} %: disk use **${v.flat ? 'stayed flat' : 'did NOT stay flat'}**.`,
    '',
  ].join('\n');
}
