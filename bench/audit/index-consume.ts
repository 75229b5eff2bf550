import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as ConnectionModule from '../../src/audit/connection';
import type * as ConsumerModule from '../../src/audit/log/index-consumer';
import type * as StepModule from '../../src/audit/log/index-step';
import type * as SegmentLogModule from '../../src/audit/log/segment-log';
import type { AuditCompletion, AuditOpen } from '../../src/audit/record-types';
import { benchRecords } from './index-records';
import type { BenchRecord } from './index-records';

/**
 * CPU per record of the log's SQLite index consumer (src/audit/log/index-consumer.ts) against the
 * store's write pattern today, in one run, on temp folders, 100,000 records each. The log is
 * written before timing (its cost is in the table above this section); the consumer is timed
 * catching up on it. Appends a section to bench/results/log-append.md (replacing an older one).
 * Usage: npm run build && npx tsc -p bench/audit/tsconfig.json && node bench/dist/audit/bench/audit/index-consume.js
 */

function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'migrations', '001_audit.sql'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root');
    dir = up;
  }
  return dir;
}

const REPO = repoRoot();
const load = <T>(rel: string): T => require(path.join(REPO, 'dist', rel)) as T;
const { connectAudit } = load<typeof ConnectionModule>('audit/connection.js');
const { IndexConsumer } = load<typeof ConsumerModule>('audit/log/index-consumer.js');
const { planStep, readStep } = load<typeof StepModule>('audit/log/index-step.js');
const { SegmentLog } = load<typeof SegmentLogModule>('audit/log/segment-log.js');

const BATCH = 17;
const RECORDS = 100_000;
const RUNS = 3;
/** Every 50th record is long-lived (a tunnel): it completes this many records after it opened. */
const LONG_EVERY = 50;
const LONG_AFTER = 20_000;
/** The store's checkpointer runs in the same process (a worker thread): about every 1,000 records. */
const CHECKPOINT_EVERY_BATCHES = 60;
const SECTION = '## Index consumer against the store\'s write pattern';

type Completion = readonly [number, AuditCompletion];

/**
 * The proxy's pattern, as batches: 17 opens, the completions of the previous batch's short-lived
 * records, and those of long-lived ones that are due. `write` returns the opens' ids.
 */
function drive(records: BenchRecord[], write: (opens: AuditOpen[], completions: Completion[]) => number[]): void {
  let previous: Completion[] = [];
  const long: Array<{ due: number; completion: Completion }> = [];
  for (let done = 0; done < records.length; done += BATCH) {
    const batch = records.slice(done, done + BATCH);
    const dueNow = [];
    while (long.length > 0 && long[0].due <= done) dueNow.push(long.shift()!.completion);
    const ids = write(batch.map((r) => r.open), [...previous, ...dueNow]);
    previous = [];
    ids.forEach((id, i) => {
      const completion = [id, batch[i].completion] as const;
      if ((done + i) % LONG_EVERY === 0) long.push({ due: done + i + LONG_AFTER, completion });
      else previous.push(completion);
    });
  }
  write([], [...previous, ...long.map((l) => l.completion)]);
}

function writeLog(logDir: string, records: BenchRecord[]): void {
  const log = SegmentLog.open({ dir: logDir });
  drive(records, (opens, completions) => log.appendBatch([
    ...opens.map((open) => ({ type: 'open' as const, open })),
    ...completions.map(([id, completion]) => ({ type: 'complete' as const, id, completion })),
  ]).slice(0, opens.length));
  log.close();
}

interface Run {
  cpuMicros: number;
  wallMicros: number;
  updatedShare: number;
}

function timed(records: number, work: () => number): Run {
  const cpu = process.cpuUsage();
  const start = performance.now();
  const updates = work();
  const wall = (performance.now() - start) * 1000;
  const used = process.cpuUsage(cpu);
  return { cpuMicros: (used.user + used.system) / records, wallMicros: wall / records, updatedShare: updates / records };
}

function inTemp<T>(fn: (dbFile: string, logDir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-index-bench-'));
  try {
    return fn(path.join(dir, 'audit.db'), path.join(dir, 'audit-log'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function storeRun(records: BenchRecord[]): Run {
  return inTemp((dbFile) => {
    const connection = connectAudit(dbFile, { clock: () => new Date(), busyTimeoutMs: 5000 });
    let batches = 0;
    const run = timed(records.length, () => {
      drive(records, (opens, completions) => {
        if (++batches % CHECKPOINT_EVERY_BATCHES === 0) connection.db.pragma('wal_checkpoint(TRUNCATE)');
        return connection.commitBatch(opens, completions).ids.map((id) => {
          if (typeof id !== 'number') throw id;
          return id;
        });
      });
      return records.length;
    });
    connection.db.close();
    return run;
  });
}

/**
 * `withoutTrigger`: 003 keeps 002's per-row trigger (skipped by its WHEN in the consumer's
 * transactions); its mere presence costs every insert a trigger frame. This variant drops it on
 * the bench's file to show what moving the store's side tables off the trigger would save.
 */
function consumerRun(records: BenchRecord[], maxBatchEntries: number, withoutTrigger = false): Run {
  return inTemp((dbFile, logDir) => {
    writeLog(logDir, records);
    const consumer = new IndexConsumer({ file: dbFile, logDir, maxBatchEntries });
    if (withoutTrigger) consumer.db.exec('DROP TRIGGER requests_side_tables');
    const run = timed(records.length, () => {
      let updates = 0;
      for (;;) {
        const step = consumer.step();
        updates += step.completed;
        if (step.entries < maxBatchEntries) return updates;
      }
    });
    if (consumer.counters.recordsInserted !== records.length) throw new Error('the consumer missed records');
    consumer.close();
    return run;
  });
}

/** Reading, decoding and pairing alone: what the consumer spends before SQLite. */
function readOnlyRun(records: BenchRecord[]): Run {
  return inTemp((_dbFile, logDir) => {
    writeLog(logDir, records);
    return timed(records.length, () => {
      let at = { segment: 0, offset: 0 };
      for (;;) {
        const read = readStep(logDir, at, 5000);
        planStep(read.entries);
        at = read.next;
        if (read.entries.length < 5000) return 0;
      }
    });
  });
}

interface Row {
  name: string;
  runs: Run[];
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

function measure(name: string, run: (records: BenchRecord[]) => Run, records: BenchRecord[]): Row {
  run(records.slice(0, 5000));
  return { name, runs: Array.from({ length: RUNS }, () => run(records)) };
}

function render(rows: Row[]): string {
  const base = median(rows[0].runs.map((r) => r.cpuMicros));
  const cell = (r: Row, pick: (run: Run) => number, digits = 1): string => median(r.runs.map(pick)).toFixed(digits);
  return [
    SECTION,
    '',
    `Measured ${new Date().toISOString()} on Node ${process.version}, ${os.cpus().length} CPUs shared with other work, in one run; `
      + `${RECORDS.toLocaleString('en')} records (400 hosts with Zipf popularity, 20 clients in 3 groups, ~9% denied), `
      + `every ${LONG_EVERY}th long-lived (completed ${LONG_AFTER.toLocaleString('en')} records later), the rest completed in the next batch of ${BATCH}. `
      + `CPU = process.cpuUsage() over the loop, per record (an open and its completion), median of ${RUNS} runs after a 5,000-record warm-up. `
      + 'Reproduce: `npm run build && npx tsc -p bench/audit/tsconfig.json && node bench/dist/audit/bench/audit/index-consume.js`.',
    '',
    '| index write | CPU µs/record (median) | range | wall µs/record | records completed by UPDATE | CPU vs store |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) => {
      const cpu = r.runs.map((x) => x.cpuMicros);
      return `| ${r.name} | ${cell(r, (x) => x.cpuMicros)} | ${Math.min(...cpu).toFixed(1)}–${Math.max(...cpu).toFixed(1)} | `
        + `${cell(r, (x) => x.wallMicros)} | ${(median(r.runs.map((x) => x.updatedShare)) * 100).toFixed(1)}% | ${(median(cpu) / base).toFixed(2)}× |`;
    }),
    '',
    'The store row is today\'s pattern: connectAudit + commitBatch (INSERT at open, UPDATE at completion, 002\'s trigger per row), '
      + `with \`PRAGMA wal_checkpoint(TRUNCATE)\` every ${CHECKPOINT_EVERY_BATCHES} batches in the timed loop (the real store checkpoints on a thread of the same process). `
      + 'The consumer rows read the log from disk (page cache), decode, pair each open with its completion when both are in one step, '
      + 'and write one transaction per step: completed rows inserted once, side tables as one upsert per key, the position; '
      + 'SQLite\'s automatic checkpoint is on and counted. A step of 400 entries is what a 200 ms interval gives at 1,000 requests/s. '
      + 'Add the log append (table above, ~3.4 µs) for the whole cost of a record in the new design.',
    '',
    'Reading the figures: an AFTER INSERT trigger costs each insert a trigger frame even when its WHEN is false '
      + '(measured apart: 10 µs per insert without any trigger, 16–17 with one whose WHEN is `0`), which is the gap between the '
      + 'consumer rows and the "trigger dropped" row. Reading the log is mostly decoding (JSON.parse, per-field checks, Date objects); '
      + 'before segment-scan.ts read each frame by its announced length, it copied a megabyte per entry and this row was about 155 µs.',
    '',
  ].join('\n');
}

function main(): void {
  const records = benchRecords(RECORDS, Date.UTC(2026, 0, 1));
  const rows = [
    measure('store: commitBatch of 17, UPDATE at completion, checkpoints', storeRun, records),
    measure('consumer: steps of 5,000 entries', (r) => consumerRun(r, 5000), records),
    measure('consumer: steps of 1,000 entries', (r) => consumerRun(r, 1000), records),
    measure('consumer: steps of 400 entries', (r) => consumerRun(r, 400), records),
    measure('consumer: steps of 5,000, 002\'s trigger dropped (not shipped)', (r) => consumerRun(r, 5000, true), records),
    measure('(of which: read, decode and pair alone, steps of 5,000)', readOnlyRun, records),
  ];
  const section = render(rows);
  const file = path.join(REPO, 'bench', 'results', 'log-append.md');
  const previous = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const kept = previous.includes(SECTION) ? previous.slice(0, previous.indexOf(SECTION)) : `${previous.trimEnd()}\n\n`;
  fs.writeFileSync(file, kept + section);
  process.stdout.write(section);
}

main();
