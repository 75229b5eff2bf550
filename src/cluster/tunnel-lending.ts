import type { TunnelShares } from '../proxy/tunnel-limits';

/**
 * `--max-tunnels` and `--max-tunnels-per-source` are per box (SPEC §6), and with `--workers N`
 * no process sees every tunnel. Each worker holds a share of each limit and decides alone while
 * it is within it: no message on a tunnel's path. A worker past its share asks the primary to
 * borrow; the primary asks the other workers in turn, and a worker with spare room gives up half
 * of it (at least one slot) before it answers. A slot is only ever moved, never made, so the
 * shares always add up to the limit: the box never holds more, and it refuses only when no worker
 * has room. Which worker takes a connection (the kernel's choice by default) then changes how
 * often a worker borrows, not what the box allows.
 *
 * The primary keeps the ledger of every share: a replacement for a worker that died starts with
 * the share its slot held, and a slot with no process (between a death and its replacement)
 * lends from the ledger alone. Per-source shares that moved are kept per source (a source whose
 * shares never moved takes the even split): a map that grows only with sources that once had
 * more tunnels open than one worker's split of `--max-tunnels-per-source`.
 */

/** The even split of `total` between `workers`: the first `total % workers` slots take one more. */
export function evenShare(total: number, workers: number, slot: number): number {
  return Math.floor(total / workers) + (slot <= total % workers ? 1 : 0);
}

/** What a slot holds of the two limits: its overall share, and per-source shares that moved. */
export interface SlotShares {
  overall: number;
  sources: Array<[string, number]>;
}

/** What a borrower asks for: a slot of the overall limit, of a source's, or both. */
export interface Want {
  overall: boolean;
  source: string | null;
}

/** Slots moved (by a lender, or to a borrower): of the overall limit, and of the source's. */
export interface Moved {
  overall: number;
  source: number;
}

export interface BoxLimits {
  maxTunnels: number;
  maxTunnelsPerSource: number;
}

/** Half of what is spare, at least one when any is: a busy worker's neighbour keeps room too. */
function halfOf(spare: number): number {
  return spare <= 0 ? 0 : Math.ceil(spare / 2);
}

/** The primary's ledger of every slot's shares, and the lending between them. */
export class TunnelLedger {
  private readonly overall = new Map<number, number>();
  /** Per source, the slots' shares, once any of them moved from the even split. */
  private readonly sources = new Map<string, Map<number, number>>();

  constructor(private readonly limits: BoxLimits, private readonly workers: number) {
    for (let slot = 1; slot <= workers; slot += 1) this.overall.set(slot, evenShare(limits.maxTunnels, workers, slot));
  }

  /** What the process filling `slot` starts with (a replacement: what its slot held). */
  sharesOf(slot: number): SlotShares {
    const sources: Array<[string, number]> = [];
    for (const [source, shares] of this.sources) sources.push([source, shares.get(slot) ?? 0]);
    return { overall: this.overall.get(slot) ?? 0, sources };
  }

  /** Every slot's overall share (they add up to --max-tunnels). */
  overallShares(): number[] {
    return [...this.overall.values()];
  }

  /** A source's shares per slot (they add up to --max-tunnels-per-source). */
  sourceShares(source: string): number[] {
    const shares = this.sources.get(source);
    return Array.from({ length: this.workers }, (_, i) => shares?.get(i + 1) ?? evenShare(this.limits.maxTunnelsPerSource, this.workers, i + 1));
  }

  /**
   * `slot` is past its share: the other slots are asked in turn (`ask`: the worker filling it
   * gives what it can spare, or null when the slot has no process, whose share is then all
   * spare), until the borrower has what it wanted. Resolves with what was moved to it.
   */
  async borrow(slot: number, want: Want, ask: (lender: number, want: Want) => Promise<Moved | null>): Promise<Moved> {
    const got: Moved = { overall: 0, source: 0 };
    for (let lender = 1; lender <= this.workers; lender += 1) {
      const still: Want = { overall: want.overall && got.overall === 0, source: got.source === 0 ? want.source : null };
      if (!still.overall && still.source === null) break;
      if (lender === slot) continue;
      const lent = (await ask(lender, still)) ?? this.idleShare(lender, still);
      const overall = still.overall ? lent.overall : 0;
      const source = still.source !== null ? lent.source : 0;
      if (overall > 0) this.move(this.overall, lender, slot, overall);
      if (source > 0 && still.source !== null) this.move(this.sourceMap(still.source), lender, slot, source);
      got.overall += overall;
      got.source += source;
    }
    return got;
  }

  /** A slot with no process holds no tunnel: half of its share is spare, as a worker would give. */
  private idleShare(slot: number, want: Want): Moved {
    return {
      overall: want.overall ? halfOf(this.overall.get(slot) ?? 0) : 0,
      source: want.source !== null ? halfOf(this.sourceShares(want.source)[slot - 1]) : 0,
    };
  }

  private sourceMap(source: string): Map<number, number> {
    let shares = this.sources.get(source);
    if (shares === undefined) {
      const even = this.sourceShares(source);
      shares = new Map(even.map((share, i) => [i + 1, share]));
      this.sources.set(source, shares);
    }
    return shares;
  }

  private move(shares: Map<number, number>, from: number, to: number, count: number): void {
    shares.set(from, (shares.get(from) ?? 0) - count);
    shares.set(to, (shares.get(to) ?? 0) + count);
  }
}

/** How many tunnels a worker holds: overall, and from one source. */
export interface TunnelCounts {
  overall(): number;
  from(source: string): number;
}

/**
 * A worker's shares of the box's tunnel limits: read on every CONNECT, changed only by lending.
 * `ask` sends a borrow to the primary (false: it cannot be told, and nothing is borrowed).
 */
export class WorkerShares implements TunnelShares {
  private overallShare: number;
  private readonly moved: Map<string, number>;
  private readonly evenSource: number;
  private seq = 0;
  private readonly waiting = new Map<number, { want: Want; resolve: (granted: boolean) => void }>();

  constructor(
    limits: BoxLimits,
    workers: number,
    slot: number,
    start: SlotShares,
    private readonly counts: TunnelCounts,
    private readonly ask: (id: number, want: Want) => boolean,
  ) {
    this.overallShare = start.overall;
    this.moved = new Map(start.sources);
    this.evenSource = evenShare(limits.maxTunnelsPerSource, workers, slot);
  }

  overall(): number {
    return this.overallShare;
  }

  forSource(source: string): number {
    return this.moved.get(source) ?? this.evenSource;
  }

  borrow(want: Want): Promise<boolean> {
    this.seq = (this.seq + 1) % Number.MAX_SAFE_INTEGER;
    const id = this.seq;
    return new Promise((resolve) => {
      this.waiting.set(id, { want, resolve });
      if (!this.ask(id, want)) this.granted(id, { overall: 0, source: 0 });
    });
  }

  /** The primary's answer to a borrow: the shares grow by what was moved here. */
  granted(id: number, moved: Moved): void {
    const waiting = this.waiting.get(id);
    if (waiting === undefined) return;
    this.waiting.delete(id);
    const { want } = waiting;
    this.overallShare += moved.overall;
    if (want.source !== null && moved.source > 0) this.moved.set(want.source, this.forSource(want.source) + moved.source);
    waiting.resolve((!want.overall || moved.overall > 0) && (want.source === null || moved.source > 0));
  }

  /** Another worker borrows: half of what is spare here goes, taken off these shares before answering. */
  lend(want: Want): Moved {
    const overall = want.overall ? halfOf(this.overallShare - this.counts.overall()) : 0;
    this.overallShare -= overall;
    let source = 0;
    if (want.source !== null) {
      source = halfOf(this.forSource(want.source) - this.counts.from(want.source));
      if (source > 0) this.moved.set(want.source, this.forSource(want.source) - source);
    }
    return { overall, source };
  }

  /** The primary is gone: nothing can be borrowed any more. */
  disconnected(): void {
    for (const id of [...this.waiting.keys()]) this.granted(id, { overall: 0, source: 0 });
  }
}
