import type { BorrowWant, TunnelShares } from '../proxy/tunnel-limits';

/**
 * `--max-tunnels`, `--max-tunnels-per-source` and an explicit `--max-client-connections` are per
 * box (SPEC §6), and with `--workers N` no process sees every connection. Each worker holds a share
 * of each limit and decides alone while it is within it: no message on a connection's path. A
 * worker past its share asks the primary to borrow; the primary asks the other workers in turn,
 * and a worker with spare room gives up a slot (half of a large spare) before it answers. A slot
 * is only ever moved, never made, so the shares always add up to the limit: the box never holds
 * more, and it refuses only when no worker has room. Which worker takes a connection (the kernel's
 * choice by default) then changes how often a worker borrows, not what the box allows.
 *
 * The primary keeps the ledger of every share: a replacement for a worker that died starts with
 * the share its slot held, and a slot with no process (between a death and its replacement)
 * lends from the ledger alone. Per-source shares that moved are kept per source (a source whose
 * shares never moved takes the even split); a worker gives back what it holds above the split
 * once the source has no tunnel open there, and a source whose shares are all even again is
 * forgotten, so the maps hold only sources with tunnels open.
 */

/** The even split of `total` between `workers`: the first `total % workers` slots take one more. */
export function evenShare(total: number, workers: number, slot: number): number {
  return Math.floor(total / workers) + (slot <= total % workers ? 1 : 0);
}

/** What a slot holds: its share of the tunnel limit and of the client cap, and per-source shares that moved. */
export interface SlotShares {
  overall: number;
  clients: number;
  sources: Array<[string, number]>;
}

/** What a borrower asks for: a slot of the tunnel limit, of the client cap, of a source's tunnel limit. */
export type Want = BorrowWant;

/** Slots moved (by a lender, or to a borrower): of the tunnel limit, the client cap, a source's limit. */
export interface Moved {
  overall: number;
  clients: number;
  source: number;
}

export const NOTHING_MOVED: Moved = Object.freeze({ overall: 0, clients: 0, source: 0 });

export interface BoxLimits {
  maxTunnels: number;
  maxTunnelsPerSource: number;
  /** An explicit --max-client-connections; null for `auto`, which is per process and not lent. */
  maxClientConnections: number | null;
}

/**
 * Past this much room a lender gives half of it, so that a worker the kernel favours stops asking
 * for every connection; below it, one slot at a time. Near the limit a slot given beyond the
 * borrower's need is in flight where neither side can lend it, and a burst on the lender meanwhile
 * was refused while the box had room (seen: 6 of a limit of 7 admitted from 16 at once).
 */
const LEND_HALF_FROM = 16;

/** What a lender with `spare` room gives: one slot, or half of a large spare (it keeps the rest). */
function lendable(spare: number): number {
  if (spare <= 0) return 0;
  return spare < LEND_HALF_FROM ? 1 : Math.floor(spare / 2);
}

/** The primary's ledger of every slot's shares, and the lending between them. */
export class TunnelLedger {
  private readonly overall = new Map<number, number>();
  private readonly clients = new Map<number, number>();
  /** Per source, the slots' shares, once any of them moved from the even split. */
  private readonly sources = new Map<string, Map<number, number>>();

  constructor(private readonly limits: BoxLimits, private readonly workers: number) {
    for (let slot = 1; slot <= workers; slot += 1) {
      this.overall.set(slot, evenShare(limits.maxTunnels, workers, slot));
      this.clients.set(slot, evenShare(limits.maxClientConnections ?? 0, workers, slot));
    }
  }

  /** What the process filling `slot` starts with (a replacement: what its slot held). */
  sharesOf(slot: number): SlotShares {
    const sources: Array<[string, number]> = [];
    for (const [source, shares] of this.sources) sources.push([source, shares.get(slot) ?? 0]);
    return { overall: this.overall.get(slot) ?? 0, clients: this.clients.get(slot) ?? 0, sources };
  }

  /** Every slot's overall share (they add up to --max-tunnels). */
  overallShares(): number[] {
    return [...this.overall.values()];
  }

  /** Every slot's share of an explicit --max-client-connections (they add up to it). */
  clientShares(): number[] {
    return [...this.clients.values()];
  }

  /** A source's shares per slot (they add up to --max-tunnels-per-source). */
  sourceShares(source: string): number[] {
    const shares = this.sources.get(source);
    return Array.from({ length: this.workers }, (_, i) => shares?.get(i + 1) ?? this.evenSource(i + 1));
  }

  /** Sources whose shares moved from the even split. */
  movedSources(): number {
    return this.sources.size;
  }

  /**
   * `slot` is past its share: the other slots are asked in turn, starting with the next one (`ask`:
   * the worker filling it gives what it can spare, or null when the slot has no process, whose
   * share is then all spare), until the borrower has what it wanted. Each lender's slots come off
   * its share as it answers; the borrower's share grows by all of them at the end, in the same turn
   * as the caller tells the worker filling `slot` now (pool.ts), so a replacement started meanwhile
   * gets them either in its start message or in that answer, never both or neither.
   */
  async borrow(slot: number, want: Want, ask: (lender: number, want: Want) => Promise<Moved | null>): Promise<Moved> {
    const got: Moved = { ...NOTHING_MOVED };
    for (let step = 1; step < this.workers; step += 1) {
      const lender = ((slot - 1 + step) % this.workers) + 1;
      const still: Want = { overall: want.overall && got.overall === 0, clients: want.clients && got.clients === 0, source: got.source === 0 ? want.source : null };
      if (!still.overall && !still.clients && still.source === null) break;
      const lent = (await ask(lender, still)) ?? this.idleShare(lender, still);
      const overall = still.overall ? lent.overall : 0;
      const clients = still.clients ? lent.clients : 0;
      const source = still.source !== null ? lent.source : 0;
      if (overall > 0) this.add(this.overall, lender, -overall);
      if (clients > 0) this.add(this.clients, lender, -clients);
      if (source > 0 && still.source !== null) this.add(this.sourceMap(still.source), lender, -source);
      got.overall += overall;
      got.clients += clients;
      got.source += source;
    }
    if (got.overall > 0) this.add(this.overall, slot, got.overall);
    if (got.clients > 0) this.add(this.clients, slot, got.clients);
    if (got.source > 0 && want.source !== null) {
      this.add(this.sourceMap(want.source), slot, got.source);
      this.forgetIfEven(want.source);
    }
    return got;
  }

  /**
   * `slot` gave back `count` of a source's slots it held above the even split (the source has no
   * tunnel open there): they go to the slots below it. Returns who gets how many, for the caller
   * to tell them; the source is forgotten once every share is even again.
   */
  returned(slot: number, source: string, count: number): Array<[number, number]> {
    const shares = this.sources.get(source);
    if (shares === undefined || count <= 0) return [];
    this.add(shares, slot, -count);
    const credits: Array<[number, number]> = [];
    // The shares add up to the limit less any slots on their way, so the slots below the split
    // lack at least what the giver held above it.
    let left = count;
    for (let other = 1; other <= this.workers && left > 0; other += 1) {
      const below = this.evenSource(other) - (shares.get(other) ?? 0);
      if (below <= 0) continue;
      const given = Math.min(below, left);
      this.add(shares, other, given);
      credits.push([other, given]);
      left -= given;
    }
    this.forgetIfEven(source);
    return credits;
  }

  /** A slot with no process holds no tunnel: all of its share is spare, and it gives as a worker would. */
  private idleShare(slot: number, want: Want): Moved {
    return {
      overall: want.overall ? lendable(this.overall.get(slot) ?? 0) : 0,
      clients: want.clients ? lendable(this.clients.get(slot) ?? 0) : 0,
      source: want.source !== null ? lendable(this.sourceShares(want.source)[slot - 1]) : 0,
    };
  }

  private evenSource(slot: number): number {
    return evenShare(this.limits.maxTunnelsPerSource, this.workers, slot);
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

  private forgetIfEven(source: string): void {
    const shares = this.sources.get(source);
    if (shares === undefined) return;
    for (const [slot, share] of shares) if (share !== this.evenSource(slot)) return;
    this.sources.delete(source);
  }

  private add(shares: Map<number, number>, slot: number, count: number): void {
    shares.set(slot, (shares.get(slot) ?? 0) + count);
  }
}

/** What a worker holds: tunnels overall and from one source, and client connections. */
export interface TunnelCounts {
  overall(): number;
  from(source: string): number;
  clients(): number;
}

/** What a worker tells the primary about its shares. */
export type SharesMessage =
  | { t: 'borrow'; id: number; want: Want }
  | { t: 'return'; source: string; count: number };

/**
 * A worker's shares of the box's limits: read on every CONNECT (and, for an explicit client cap,
 * every accepted connection), changed only by lending.
 * `tell` sends to the primary (false: it cannot be told, and nothing is borrowed).
 */
export class WorkerShares implements TunnelShares {
  private overallShare: number;
  /** Null: the client cap is `auto`, per process, not lent. */
  private clientShare: number | null;
  private readonly moved: Map<string, number>;
  private readonly evenSource: number;
  private seq = 0;
  private readonly waiting = new Map<number, { want: Want; resolve: (granted: boolean) => void }>();
  private turns: Promise<void> = Promise.resolve();

  constructor(
    limits: BoxLimits,
    workers: number,
    slot: number,
    start: SlotShares,
    private readonly counts: TunnelCounts,
    private readonly tell: (message: SharesMessage) => boolean,
  ) {
    this.overallShare = start.overall;
    this.clientShare = limits.maxClientConnections === null ? null : start.clients;
    this.evenSource = evenShare(limits.maxTunnelsPerSource, workers, slot);
    this.moved = new Map(start.sources.filter(([, share]) => share !== this.evenSource));
  }

  overall(): number {
    return this.overallShare;
  }

  forSource(source: string): number {
    return this.moved.get(source) ?? this.evenSource;
  }

  clients(): number | null {
    return this.clientShare;
  }

  /** Sources whose share here is not the even split. */
  movedSources(): number {
    return this.moved.size;
  }

  /**
   * One borrow at a time: each waits for the one before it, whose slots may be the room it lacked,
   * then asks `need` what it still lacks (null: the room is there now, admitted without asking).
   * Borrows side by side refused a connection whose room was on its way to this worker.
   */
  admit(need: () => Want | null): Promise<boolean> {
    const turn = this.turns.then(async () => {
      const want = need();
      if (want === null) return true;
      // Room can come while the borrow is out without being its answer: a neighbour's give-back
      // (id 0) reaches the primary after this borrow did, and here before the lender's "nothing".
      return (await this.borrow(want)) || this.hasRoom(want);
    });
    this.turns = turn.then(() => undefined, () => undefined);
    return turn;
  }

  borrow(want: Want): Promise<boolean> {
    // Ids from 1: 0 is the primary's for slots nobody here asked for (granted()).
    this.seq = (this.seq % (Number.MAX_SAFE_INTEGER - 1)) + 1;
    const id = this.seq;
    return new Promise((resolve) => {
      this.waiting.set(id, { want, resolve });
      if (!this.tell({ t: 'borrow', id, want })) this.granted(id, NOTHING_MOVED, want.source);
    });
  }

  /**
   * Slots moved here: the answer to a borrow (`id`), or slots nobody here asked for (id 0: a
   * borrow of the process this one replaced, a neighbour's give-back, a lend the primary stopped
   * waiting for). Either way the shares grow by them.
   */
  granted(id: number, moved: Moved, source: string | null): void {
    this.overallShare += moved.overall;
    if (this.clientShare !== null) this.clientShare += moved.clients;
    if (source !== null && moved.source > 0) {
      this.setSource(source, this.forSource(source) + moved.source);
      // Slots for a source with no tunnel here (a late lend's, a dead predecessor's borrow) go back at once.
      if (this.counts.from(source) === 0) this.sourceIdle(source);
    }
    const waiting = this.waiting.get(id);
    if (waiting === undefined) return;
    this.waiting.delete(id);
    const { want } = waiting;
    waiting.resolve((!want.overall || moved.overall > 0) && (!want.clients || moved.clients > 0) && (want.source === null || moved.source > 0));
  }

  /** Another worker borrows: a slot (half of a large spare) goes, taken off these shares before answering. */
  lend(want: Want): Moved {
    const overall = want.overall ? lendable(this.overallShare - this.counts.overall()) : 0;
    this.overallShare -= overall;
    const clients = want.clients && this.clientShare !== null ? lendable(this.clientShare - this.counts.clients()) : 0;
    if (this.clientShare !== null) this.clientShare -= clients;
    let source = 0;
    if (want.source !== null) {
      source = lendable(this.forSource(want.source) - this.counts.from(want.source));
      if (source > 0) this.setSource(want.source, this.forSource(want.source) - source);
    }
    return { overall, clients, source };
  }

  /** Whether what `want` asked for fits the shares now (the connection asking is counted). */
  private hasRoom(want: Want): boolean {
    if (want.overall && this.counts.overall() > this.overallShare) return false;
    if (want.clients && this.counts.clients() > (this.clientShare ?? 0)) return false;
    return want.source === null || this.counts.from(want.source) <= this.forSource(want.source);
  }

  /** A source's last tunnel here closed: what this worker holds above the even split goes back. */
  sourceIdle(source: string): void {
    const above = this.forSource(source) - this.evenSource;
    if (above <= 0) return;
    this.setSource(source, this.evenSource);
    if (!this.tell({ t: 'return', source, count: above })) this.setSource(source, this.evenSource + above);
  }

  /** Once the counts can be read: a start message's sources above the split, none open here, go back. */
  releaseIdle(): void {
    for (const source of [...this.moved.keys()]) if (this.counts.from(source) === 0) this.sourceIdle(source);
  }

  /** The primary is gone: nothing can be borrowed any more. */
  disconnected(): void {
    for (const [id, { want }] of [...this.waiting]) this.granted(id, NOTHING_MOVED, want.source);
  }

  private setSource(source: string, share: number): void {
    if (share === this.evenSource) this.moved.delete(source);
    else this.moved.set(source, share);
  }
}
