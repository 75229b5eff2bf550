import fs from 'node:fs';
import path from 'node:path';
import { listSegments } from '../audit/log/segment-files';
import type { LogPosition } from '../audit/log/segment-reader';

/**
 * Why a ship position PostgreSQL holds for this store cannot have come from this local log, or
 * null when it can. PostgreSQL's position only moves forward and only ever to a place a shipper
 * of the store read, so one past this log's end (a newer segment, an offset beyond a segment's
 * size, a segment missing between kept ones) was written by another log with the same store-id:
 * a cloned volume or golden image. Shipping on from there would skip this log's own records, or
 * idle forever with a backlog of 0. A segment older than the oldest kept is retention's doing
 * (the log may have been pruned while shipping was off): the read starts at the oldest.
 */
export function positionOutsideLog(logDir: string, position: LogPosition): string | null {
  if (position.segment === 0 && position.offset === 0) return null;
  const segments = listSegments(logDir);
  const newest = segments.at(-1);
  if (newest === undefined) return 'the local log has no segment';
  if (position.segment > newest.sequence) return `segment ${position.segment} is newer than the newest local one (${newest.sequence})`;
  if (position.segment < segments[0].sequence) return null;
  const segment = segments.find((s) => s.sequence === position.segment);
  if (segment === undefined) return `segment ${position.segment} is missing from the local log`;
  let size: number;
  try {
    size = fs.statSync(segment.file).size;
  } catch (err) {
    // Retention removed it since the listing: the read starts at the next one.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (position.offset > size) return `offset ${position.offset} is beyond the end of ${path.basename(segment.file)} (${size} bytes)`;
  return null;
}

/** A ship position that belongs to another log, or a position moved under this shipper too often. */
export class ForeignShipperError extends Error {
  constructor(storeId: string, why: string) {
    super(`store-id ${storeId} is shipped from another log: ${why}; if this store was copied (a cloned volume or image), remove store-id on the copy so it gets an identity of its own`);
    this.name = 'ForeignShipperError';
  }
}

/**
 * Counts ship positions moved by someone else (a batch refused as stale). One now and then is a
 * retry whose commit did arrive; more than `most` within `windowMs` is two logs taking turns on
 * one store-id, each jumping to the other's position: a hot loop, and each one's records under
 * the other's local ids are dropped as already there.
 */
export class StaleCounter {
  private times: number[] = [];

  constructor(private readonly most = 3, private readonly windowMs = 60_000) {}

  /** Notes one stale batch at `nowMs`; true when there were too many. */
  note(nowMs: number): boolean {
    this.times = this.times.filter((t) => nowMs - t < this.windowMs);
    this.times.push(nowMs);
    return this.times.length > this.most;
  }
}
