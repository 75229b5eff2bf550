import { setImmediate as nextTurn } from 'node:timers/promises';
import type { AuditRecordJson } from '../audit/record-types';
import type { ShapeSource } from '../policy/replay/recorded-traffic';
import { HostKinds, toShape, type ShapeFields, type ShapeVerdict } from '../policy/replay/recorded-shape';

/**
 * The records a filter selects (AuditReader.exportRecords, either engine) as the request shapes
 * `policy suggest` reads. The SQL engines group a whole window in the database; a filtered set
 * (negations, globs, free text) is what the readers' walks already produce, so it is grouped here
 * instead, with the same key and the same validation (recorded-shape.ts toShape): a shape is
 * what SQLite or PostgreSQL would have produced for the same records.
 */

/** Distinct shapes held at once: about 300 bytes each, so some 60 MB at the cap. */
export const MAX_SUGGEST_SHAPES = 200_000;

/** Shapes handed on between turns of the event loop, so the proxy's own work interleaves. */
const SHAPES_PER_TURN = 2_000;

/** The filtered set holds more distinct shapes than the cap: the route answers 400. */
export class TooManyShapesError extends Error {
  constructor(readonly limit: number) {
    super(
      `the filtered requests hold more than ${limit} distinct request shapes (client, destination, path, decision); ` +
        'narrow the filters (a shorter window, a host or a client) or run `tollgate policy suggest` on the command line',
    );
    this.name = 'TooManyShapesError';
  }
}

export interface Tally {
  key: string;
  count: number;
  lastMs: number;
  /** Holds a UTF-16 surrogate: compared by bytes, not code units (see byteOrder). */
  astral: boolean;
}

/** The shape key of one record, as both SQL engines write it (recorded-shape.ts ShapeFields). */
export function shapeKey(record: AuditRecordJson): string {
  const fields: ShapeFields = [
    record.kind, record.method, record.host, record.port, record.path, record.client_ip, record.user,
    record.decision, record.would_deny ? 1 : 0, record.rule, record.sni,
  ];
  return JSON.stringify(fields);
}

const SURROGATE = /[\ud800-\udfff]/;

/**
 * The engines hand shapes over in the UTF-8 byte order of their keys (SQLite's default BINARY
 * collation, PostgreSQL's COLLATE "C"). JavaScript compares UTF-16 code units, which agrees with
 * it except where a character beyond U+FFFF meets one from U+E000 to U+FFFF; only keys holding
 * a surrogate pay for the byte comparison.
 */
function byteOrder(a: Tally, b: Tally): number {
  if (a.astral || b.astral) return Buffer.compare(Buffer.from(a.key), Buffer.from(b.key));
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** Tallies sorted in one turn of the event loop: sorting 200,000 at once stalled it for about a second. */
const SORT_RUN = 8_192;

interface RunHead {
  run: Tally[];
  at: number;
}

/**
 * The tallies in byteOrder without a long stall: sorted in runs of SORT_RUN, a run per turn of
 * the event loop, then merged as they are read (a binary heap of the runs' heads; the caller
 * yields between the shapes it hands on).
 */
export async function* inByteOrder(tallies: readonly Tally[]): AsyncGenerator<Tally> {
  const heap: RunHead[] = [];
  for (let at = 0; at < tallies.length; at += SORT_RUN) {
    heap.push({ run: tallies.slice(at, at + SORT_RUN).sort(byteOrder), at: 0 });
    await nextTurn();
  }
  const before = (a: RunHead, b: RunHead): boolean => byteOrder(a.run[a.at], b.run[b.at]) < 0;
  const siftDown = (from: number): void => {
    for (let i = from; ;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let least = i;
      if (left < heap.length && before(heap[left], heap[least])) least = left;
      if (right < heap.length && before(heap[right], heap[least])) least = right;
      if (least === i) return;
      [heap[i], heap[least]] = [heap[least], heap[i]];
      i = least;
    }
  };
  for (let i = Math.floor(heap.length / 2) - 1; i >= 0; i -= 1) siftDown(i);
  while (heap.length > 0) {
    const top = heap[0];
    yield top.run[top.at];
    top.at += 1;
    if (top.at === top.run.length) {
      const last = heap.pop() as RunHead;
      if (heap.length === 0) return;
      heap[0] = last;
    }
    siftDown(0);
  }
}

export class ExportedShapes implements ShapeSource {
  constructor(
    /** The filtered set, in batches (AuditReader.exportRecords with the route's filters). */
    private readonly records: () => AsyncIterable<AuditRecordJson[]>,
    readonly label: string,
    private readonly maxShapes: number = MAX_SUGGEST_SHAPES,
  ) {}

  /** One pass of the export is one read: it already leaves out records written after it began. */
  snapshot<T>(read: () => Promise<T>): Promise<T> {
    return read();
  }

  private async tally(): Promise<Tally[]> {
    const byKey = new Map<string, Tally>();
    for await (const batch of this.records()) {
      for (const record of batch) {
        const key = shapeKey(record);
        const ms = Date.parse(record.started_at);
        const seen = byKey.get(key);
        if (seen !== undefined) {
          seen.count += 1;
          seen.lastMs = Math.max(seen.lastMs, ms);
          continue;
        }
        if (byKey.size >= this.maxShapes) throw new TooManyShapesError(this.maxShapes);
        byKey.set(key, { key, count: 1, lastMs: ms, astral: SURROGATE.test(key) });
      }
    }
    return [...byKey.values()];
  }

  /** The window is the filters' own (the route put it there): every exported record is in it. */
  async *shapes(): AsyncGenerator<ShapeVerdict> {
    const hosts = new HostKinds();
    let handed = 0;
    for await (const tally of inByteOrder(await this.tally())) {
      yield toShape(JSON.parse(tally.key) as ShapeFields, tally.count, tally.lastMs, hosts);
      handed += 1;
      if (handed % SHAPES_PER_TURN === 0) await nextTurn();
    }
  }
}
