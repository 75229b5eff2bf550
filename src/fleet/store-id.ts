import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, readTextIfExists } from '../audit/log/segment-files';

/**
 * The local store's own identity (issue 15): a random UUID in the `store-id` file of its log
 * folder, made once and read ever after. It keys the store's rows in PostgreSQL, so two replicas
 * that claim one --node name never merge, and a replica renamed keeps its history.
 */
export const STORE_ID_FILE = 'store-id';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class StoreIdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreIdError';
  }
}

/** The store's UUID, created (fsynced, then renamed into place) the first time. */
export function readOrCreateStoreId(logDir: string): string {
  const file = path.join(logDir, STORE_ID_FILE);
  const existing = readStoreId(file);
  if (existing !== null) return existing;
  fs.mkdirSync(logDir, { recursive: true });
  const id = randomUUID();
  const temp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temp, 'w', 0o644);
  try {
    fs.writeSync(fd, `${id}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  // A rename never replaces an id that another process wrote first with a different one: link
  // fails with EEXIST where rename would overwrite, and the id already there wins.
  try {
    fs.linkSync(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    fs.rmSync(temp, { force: true });
  }
  fsyncDir(logDir);
  const written = readStoreId(file);
  if (written === null) throw new StoreIdError(`${file} could not be created`);
  return written;
}

function readStoreId(file: string): string | null {
  const text = readTextIfExists(file);
  if (text === null) return null;
  const id = text.trim().toLowerCase();
  // A damaged id is not replaced silently: a new one would ship every record again under it.
  if (!UUID.test(id)) throw new StoreIdError(`${file} does not hold a UUID; restore it from a backup or remove it to give this store a new identity (its records would then be shipped again under the new one)`);
  return id;
}
