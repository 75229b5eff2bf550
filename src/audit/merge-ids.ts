/** Fetches up to `take` ids below `before` for one key, newest first. */
export type IdFetch<K> = (key: K, before: number, take: number) => number[];

interface KeyCursor<K> {
  key: K;
  ids: number[];
  pos: number;
  /** The last fetch returned fewer than asked: nothing is left below these ids. */
  exhausted: boolean;
}

/**
 * Newest-first ids of the union of several index ranges, one per key (the hosts a glob
 * matches, the codes of a status class). Each range is walked backwards in chunks and the
 * heads are merged with a max-heap, so a page of n costs about n + keys x chunk index entries
 * however many records each key has; an `IN (...) ORDER BY id DESC` would read every entry of
 * every key and sort them. The keys' sets must be disjoint (a record has one host, one status).
 *
 * Each fetch is a short synchronous query: nothing stays open between calls, so an export can
 * pause for a slow client without holding the connection the proxy writes through.
 */
export class MergedIds<K> {
  private readonly heap: KeyCursor<K>[] = [];

  constructor(
    keys: readonly K[],
    private readonly fetch: IdFetch<K>,
    private readonly chunk: number,
    before: number,
  ) {
    for (const key of keys) {
      const cursor: KeyCursor<K> = { key, ids: [], pos: 0, exhausted: false };
      this.refill(cursor, before);
      if (cursor.ids.length > 0) this.push(cursor);
    }
  }

  /** The next (up to) n ids, newest first; fewer only when every key is exhausted. */
  take(n: number): number[] {
    const out: number[] = [];
    while (out.length < n && this.heap.length > 0) {
      const top = this.heap[0];
      const id = top.ids[top.pos];
      out.push(id);
      top.pos += 1;
      if (top.pos === top.ids.length) {
        if (top.exhausted) {
          this.popTop();
          continue;
        }
        this.refill(top, id);
        if (top.ids.length === 0) {
          this.popTop();
          continue;
        }
      }
      this.siftDown(0);
    }
    return out;
  }

  private refill(cursor: KeyCursor<K>, before: number): void {
    cursor.ids = this.fetch(cursor.key, before, this.chunk);
    cursor.pos = 0;
    cursor.exhausted = cursor.ids.length < this.chunk;
  }

  private head(i: number): number {
    const cursor = this.heap[i];
    return cursor.ids[cursor.pos];
  }

  private push(cursor: KeyCursor<K>): void {
    this.heap.push(cursor);
    let i = this.heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.head(parent) >= this.head(i)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  private popTop(): void {
    const last = this.heap.pop();
    if (last === undefined || this.heap.length === 0) return;
    this.heap[0] = last;
    this.siftDown(0);
  }

  private siftDown(start: number): void {
    let i = start;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let largest = i;
      if (left < this.heap.length && this.head(left) > this.head(largest)) largest = left;
      if (right < this.heap.length && this.head(right) > this.head(largest)) largest = right;
      if (largest === i) return;
      this.swap(i, largest);
      i = largest;
    }
  }

  private swap(a: number, b: number): void {
    const t = this.heap[a];
    this.heap[a] = this.heap[b];
    this.heap[b] = t;
  }
}
