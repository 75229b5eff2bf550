import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { IndexConsumer } from './log/index-consumer';
import { dropSegmentsBefore } from './log/retention';
import { comparePositions } from './log/segment-reader';
import type { LogPosition } from './log/segment-reader';
import { readShippedCopy } from '../fleet/ship-position-file';
import { readAccessPosition } from './access-log/access-position';
import { pruneIntervalMs, Retention } from './retention';
import type { PruneReport } from './retention';
import { describeError } from './write-health';
import type { IndexParentMessage, IndexStatus, IndexWorkerData, IndexWorkerMessage } from './index-protocol';

/**
 * The audit index thread (index-thread.ts starts it): follows the log with the index consumer
 * and runs --retain on both the index (records) and the log (whole segments), so neither SQLite
 * nor retention ever holds up an append on the writer thread.
 */

const data = workerData as IndexWorkerData;
const port = parentPort as MessagePort;

const status: IndexStatus = { lagSeconds: 0, entriesBehind: 0, damagedRegions: 0, lastError: null, lastDamage: null };

const consumer = new IndexConsumer({
  file: data.file,
  logDir: data.logDir,
  intervalMs: data.intervalMs,
  onDamage: (damage) => {
    status.damagedRegions += 1;
    status.lastDamage = `${damage.file} at byte ${damage.offset}: ${damage.reason} (${damage.length} bytes skipped)`;
    port.postMessage({ kind: 'damage', message: status.lastDamage } satisfies IndexParentMessage);
  },
  onError: (err) => {
    status.lastError = describeError(err);
  },
});

function refreshStatus(): IndexStatus {
  try {
    const lag = consumer.lag();
    status.lagSeconds = lag.secondsBehind;
    status.entriesBehind = lag.entriesBehind;
  } catch (err) {
    status.lastError = describeError(err);
  }
  return { ...status };
}

/** Retention drops a segment only when the index has applied it and none of its records is open. */
function stillOpen(db: Database.Database): (id: number) => boolean {
  const statement = db.prepare('SELECT ended_at_ms IS NULL FROM requests WHERE id = ?').pluck();
  return (id) => statement.get(id) === 1;
}

const LOG_START: LogPosition = { segment: 0, offset: 0 };

function earlier(a: LogPosition, b: LogPosition): LogPosition {
  return comparePositions(a, b) < 0 ? a : b;
}

/**
 * Where the access log must be able to read again from: its `replay` position (the oldest record
 * still open there is re-read from it at a restart). Without a position file it has not written
 * yet and starts at the log's end as serve started, which retention never passes. A file that
 * cannot be read keeps everything: the follower will report it, and nothing is lost meanwhile.
 */
function accessReplay(file: string): LogPosition | null {
  try {
    return readAccessPosition(file)?.replay ?? null;
  } catch {
    return LOG_START;
  }
}

/**
 * Segments before this position may go: applied by the index and, with --audit-url, shipped, and
 * with --access-log, written as lines. With no shipped position known yet, nothing is shipped:
 * the log's very beginning.
 */
function retainFrom(): LogPosition {
  let from = consumer.position();
  if (data.waitForShipping) from = earlier(from, readShippedCopy(data.logDir) ?? LOG_START);
  const replay = data.accessPositionFile === null ? null : accessReplay(data.accessPositionFile);
  return replay === null ? from : earlier(from, replay);
}

function pruneSegments(): void {
  try {
    const cutoff = { time: new Date(Date.now() - data.retainMs), position: retainFrom() };
    const report = dropSegmentsBefore(data.logDir, cutoff, stillOpen(consumer.db));
    if (report.dropped.length > 0 || report.keptForOpenRecords.length > 0) {
      port.postMessage({ kind: 'segments', dropped: report.dropped.length, keptForOpenRecords: report.keptForOpenRecords.length } satisfies IndexParentMessage);
    }
  } catch (err) {
    status.lastError = describeError(err);
  }
}

/** --retain: records in the index (retention.ts, in small batches), then whole log segments. */
function startRetention(): void {
  if (data.retainMs <= 0) return;
  const onPass = (report: PruneReport): void => {
    port.postMessage({ kind: 'pruned', report } satisfies IndexParentMessage);
    pruneSegments();
  };
  retention = new Retention({ retainMs: data.retainMs, db: () => consumer.db, onPass });
  retention.start();
  // Segments can be due when no record was (only completions of older records in them).
  segmentTimer = setInterval(pruneSegments, pruneIntervalMs(data.retainMs)).unref();
}

let retention: Retention | null = null;
let segmentTimer: NodeJS.Timeout | null = null;

function answer(message: IndexWorkerMessage): IndexParentMessage {
  if (message.kind === 'close') {
    // Nothing starts on a timer any more, whatever the last catch-up does: the parent terminates
    // this thread next, and a statement that fails while the thread dies (a full disk at shutdown)
    // aborted the whole process (better-sqlite3 throws into the dying isolate: FATAL ERROR
    // v8::ToLocalChecked Empty MaybeLocal).
    consumer.stop();
    retention?.stop();
    if (segmentTimer !== null) clearInterval(segmentTimer);
  }
  try {
    consumer.catchUp();
    if (message.kind === 'close') consumer.close();
    status.lastError = null;
    return { kind: 'answer', seq: message.seq, ok: true, status: refreshStatus() };
  } catch (err) {
    status.lastError = describeError(err);
    return { kind: 'answer', seq: message.seq, ok: false, error: status.lastError, status: { ...status } };
  }
}

consumer.follow();
startRetention();
// The lag for /metrics, without a round trip per scrape.
setInterval(() => port.postMessage({ kind: 'status', status: refreshStatus() } satisfies IndexParentMessage), 1000).unref();
port.on('message', (message: IndexWorkerMessage) => port.postMessage(answer(message)));
port.postMessage({ kind: 'status', status: refreshStatus() } satisfies IndexParentMessage);
