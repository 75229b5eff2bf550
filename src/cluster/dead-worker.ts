import type net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { listSpoolFiles, readSpoolFile } from './spool';
import type { SpoolFile } from './spool';
import type { BatchFrame } from './wire';

/** A spool that cannot be read is tried this many times, this far apart (a passing EIO, EMFILE). */
const READ_TRIES = 3;
const READ_RETRY_MS = 200;

/** Resolves once the channel has delivered everything (it ended or closed), or after `ms`. */
export function channelEnded(channel: net.Socket, ms: number): Promise<void> {
  if (channel.destroyed || channel.readableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      channel.off('close', done);
      channel.off('end', done);
      resolve();
    }
    channel.once('close', done);
    channel.once('end', done);
  });
}

/** Whether `promise` settled within `ms` (it goes on either way). */
export async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

export interface Spooled {
  /** The process's spool files, to remove once the log has what they hold. */
  files: SpoolFile[];
  /** Its batches that `wanted` picks (those its channel never delivered), in the order written. */
  batches: BatchFrame[];
  /** Set when the files could not be read after every try: `batches` is then empty. */
  error: unknown;
}

/** A dead worker process's spooled batches past what its channel delivered. */
export async function spooledAfter(dir: string, name: string, wanted: (batch: BatchFrame) => boolean): Promise<Spooled> {
  let error: unknown = null;
  for (let attempt = 1; attempt <= READ_TRIES; attempt += 1) {
    try {
      const files = listSpoolFiles(dir, name);
      const batches: BatchFrame[] = [];
      for (const { file } of files) for (const batch of readSpoolFile(file).batches) if (wanted(batch)) batches.push(batch);
      return { files, batches, error: null };
    } catch (err) {
      error = err;
      if (attempt < READ_TRIES) await sleep(READ_RETRY_MS);
    }
  }
  return { files: [], batches: [], error };
}
