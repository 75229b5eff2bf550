import type { BoxLimits, Moved, SharesMessage, Want } from './tunnel-lending';
import { NOTHING_MOVED, TunnelLedger } from './tunnel-lending';
import type { PrimaryMessage } from './protocol';

/**
 * How long the primary waits for a worker to answer a lend before it asks the next one: a worker
 * whose event loop is stuck must not hold up every CONNECT that borrows behind it.
 */
export const LEND_WAIT_MS = 1_000;

/** A lend asked of a worker: answered, or given up on (its late answer's slots go back to it). */
export interface Asked {
  want: Want;
  answer: (moved: Moved | null) => void;
  timedOut: boolean;
}

/** What the desk needs of a worker process (pool.ts's Member). */
export interface LendingMember {
  readonly slot: number;
  /** Its start message went out: from then on its shares change only by messages. */
  initSent: boolean;
  /** It died (its slot's share is the ledger's alone until a replacement starts). */
  readonly gone: () => boolean;
  /** Lends asked of it and not answered. */
  readonly lending: Map<number, Asked>;
}

/**
 * The primary's side of the tunnel limits' lending (tunnel-lending.ts): the ledger, and the
 * messages that move slots between the workers.
 */
export class LendingDesk<M extends LendingMember> {
  readonly ledger: TunnelLedger;
  private seq = 0;

  constructor(
    limits: BoxLimits,
    workers: number,
    /** The process filling a slot now (a replacement once the one before died). */
    private readonly memberOf: (slot: number) => M | undefined,
    private readonly send: (member: M, message: PrimaryMessage) => boolean,
  ) {
    this.ledger = new TunnelLedger(limits, workers);
  }

  /** A worker's message about its shares. */
  received(member: M, message: SharesMessage): void {
    // Read after its death: its CONNECTs died with it, and what it gave back is still its slot's
    // in the ledger, which is what its replacement starts with.
    if (member.gone()) return;
    if (message.t === 'borrow') {
      const { id, want } = message;
      void this.ledger.borrow(member.slot, want, (lender, asked) => this.ask(lender, asked))
        .then((moved) => this.grant(member.slot, member, id, moved, want.source));
    } else {
      for (const [slot, count] of this.ledger.returned(member.slot, message.source, message.count)) {
        this.grant(slot, null, 0, { ...NOTHING_MOVED, source: count }, message.source);
      }
    }
  }

  /** A worker's answer to a lend. */
  lent(member: M, id: number, moved: Moved): void {
    const asked = member.lending.get(id);
    if (asked === undefined) return;
    member.lending.delete(id);
    if (!asked.timedOut) return asked.answer(moved);
    // Given up on, so the ledger never moved them: they are still this worker's.
    if (moved.overall > 0 || moved.clients > 0 || moved.source > 0) this.send(member, { t: 'granted', id: 0, moved, source: asked.want.source });
  }

  /** A worker died: what it did not answer it never gave, and its slot's share is the ledger's to lend. */
  gone(member: M): void {
    for (const asked of member.lending.values()) if (!asked.timedOut) asked.answer(null);
    member.lending.clear();
  }

  /**
   * Tells the process filling `slot` now of slots moved to it: the answer to its borrow `id`, or
   * (id 0) slots it did not ask for. One whose start message has not gone yet gets them in it
   * (the ledger has them); a dead one's replacement likewise.
   */
  private grant(slot: number, asker: M | null, id: number, moved: Moved, source: string | null): void {
    const now = this.memberOf(slot);
    if (now === undefined || !now.initSent || now.gone()) return;
    this.send(now, { t: 'granted', id: now === asker ? id : 0, moved, source });
  }

  /** What the worker filling `slot` gives up; null when the slot has no running process. */
  private ask(slot: number, want: Want): Promise<Moved | null> {
    const member = this.memberOf(slot);
    if (member === undefined || member.gone() || !member.initSent) return Promise.resolve(null);
    this.seq += 1;
    const id = this.seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        asked.timedOut = true;
        resolve(NOTHING_MOVED);
      }, LEND_WAIT_MS);
      timer.unref();
      const asked: Asked = {
        want,
        timedOut: false,
        answer: (moved) => {
          clearTimeout(timer);
          resolve(moved);
        },
      };
      member.lending.set(id, asked);
      if (!this.send(member, { t: 'lend', id, want })) {
        member.lending.delete(id);
        asked.answer(NOTHING_MOVED);
      }
    });
  }
}
