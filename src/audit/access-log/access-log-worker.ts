import { parentPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { describeDamage } from '../log/segment-reader';
import { describeError } from '../write-health';
import { ACCESS_FOLLOWER_DEFAULTS, AccessFollower } from './access-follower';
import { FileSink, StdoutSink } from './access-sink';
import type { AccessLogParentMessage, AccessLogWorkerData, AccessLogWorkerMessage } from './access-log-protocol';

/**
 * The access log's thread (access-log-thread.ts starts it): one follower step per tick, the
 * next at once after a full step (a backlog). A step that fails (a full disk, a file that cannot
 * be opened) drops the follower; a new one starts from the stored position after a pause, which
 * is exactly a restart's recovery: lines past the stored mark are cut off and written again.
 */

const data = workerData as AccessLogWorkerData;
const port = parentPort as MessagePort;
const RETRY_MS = 1000;

const post = (message: AccessLogParentMessage): void => port.postMessage(message);

function open(): AccessFollower | null {
  try {
    return new AccessFollower({
      logDir: data.logDir,
      dbFile: data.dbFile,
      sink: data.file === null ? new StdoutSink() : new FileSink(data.file),
      positionFile: data.positionFile,
      node: data.node,
      start: data.start,
      fsync: data.fsync,
      maxOpenRecords: data.maxOpenRecords,
      onDamage: (damage) => post({ kind: 'notice', message: describeDamage(damage) }),
      onNotice: (message) => post({ kind: 'notice', message }),
    });
  } catch (err) {
    post({ kind: 'error', message: `access log cannot be opened: ${describeError(err)}` });
    return null;
  }
}

let follower: AccessFollower | null = open();
let timer: NodeJS.Timeout | null = null;

function failed(err: unknown): void {
  post({ kind: 'error', message: `access log: ${describeError(err)}; retrying from the stored position` });
  try {
    follower?.close();
  } catch {
    // Already failing: the retry opens afresh.
  }
  follower = null;
}

function tick(): void {
  let full = false;
  follower ??= open();
  if (follower !== null) {
    try {
      full = follower.step() >= ACCESS_FOLLOWER_DEFAULTS.maxBatchEntries;
    } catch (err) {
      failed(err);
    }
  }
  timer = setTimeout(tick, follower === null ? RETRY_MS : full ? 0 : data.intervalMs);
}

function received(message: AccessLogWorkerMessage): void {
  if (message.kind === 'reopen') {
    try {
      follower?.reopen();
    } catch (err) {
      failed(err);
    }
    return;
  }
  if (timer !== null) clearTimeout(timer);
  try {
    follower ??= open();
    follower?.catchUp();
    follower?.close();
  } catch (err) {
    post({ kind: 'error', message: `access log: the last lines could not be written (${describeError(err)}); the next start writes them` });
  }
  post({ kind: 'closed' });
}

port.on('message', received);
timer = setTimeout(tick, 0);
