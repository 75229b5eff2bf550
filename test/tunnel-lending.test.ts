import { LendingDesk } from '../src/cluster/lending-desk';
import type { Asked } from '../src/cluster/lending-desk';
import type { PrimaryMessage } from '../src/cluster/protocol';
import { evenShare, WorkerShares } from '../src/cluster/tunnel-lending';
import type { BoxLimits } from '../src/cluster/tunnel-lending';

/**
 * The tunnel limits' shares across workers (cluster/tunnel-lending.ts, lending-desk.ts): the
 * primary's desk and each worker's shares, their messages passed as pool.ts and worker-main.ts
 * pass them, each a turn of the event loop later (setImmediate), without processes
 * (test/serve-workers.test.ts runs them for real).
 */

/** A worker process: its shares and the tunnels it holds (per source). */
interface SimWorker {
  slot: number;
  shares: WorkerShares;
  open: Map<string, number>;
  /** Client connections it holds. */
  clients: number;
  alive: boolean;
  /** Answers lends (false: a stuck event loop, which answers only when `unstick` is called). */
  answering: boolean;
  stuck: Array<() => void>;
  initSent: boolean;
  gone: () => boolean;
  lending: Map<number, Asked>;
}

interface Box {
  desk: LendingDesk<SimWorker>;
  ledger: LendingDesk<SimWorker>['ledger'];
  members: SimWorker[];
  /** As enforceTunnelLimits: counted first, checked against the shares, borrowing past them. */
  admit: (slot: number, source: string) => Promise<boolean>;
  close: (slot: number, source: string) => void;
  /** As admitConnection: counted first, checked against the client share, borrowing past it. */
  connect: (slot: number) => Promise<boolean>;
  /** A worker dies; `replace` starts its replacement (its start message from the ledger). */
  kill: (slot: number) => void;
  replace: (slot: number) => SimWorker;
  settled: () => Promise<void>;
}

const later = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function box(limits: BoxLimits, workers: number): Box {
  const members: SimWorker[] = [];
  const desk: LendingDesk<SimWorker> = new LendingDesk(limits, workers, (slot) => members[slot - 1], (member, message: PrimaryMessage) => {
    if (!member.alive) return false;
    setImmediate(() => {
      if (!member.alive) return;
      if (message.t === 'lend') {
        const answer = (): void => {
          if (!member.alive) return;
          const moved = member.shares.lend(message.want);
          setImmediate(() => desk.lent(member, message.id, moved));
        };
        if (member.answering) answer();
        else member.stuck.push(answer);
      } else if (message.t === 'granted') member.shares.granted(message.id, message.moved, message.source);
    });
    return true;
  });
  const total = (open: Map<string, number>): number => [...open.values()].reduce((a, b) => a + b, 0);
  const start = (slot: number): SimWorker => {
    const open = new Map<string, number>();
    const member: SimWorker = {
      slot, open, clients: 0, alive: true, answering: true, stuck: [], initSent: true, lending: new Map(),
      gone: () => !member.alive,
      shares: new WorkerShares(limits, workers, slot, desk.ledger.sharesOf(slot), {
        overall: () => total(open),
        from: (source) => open.get(source) ?? 0,
        clients: () => member.clients,
      }, (message) => {
        setImmediate(() => desk.received(member, message));
        return true;
      }),
    };
    members[slot - 1] = member;
    return member;
  };
  for (let slot = 1; slot <= workers; slot += 1) start(slot);
  const admit = async (slot: number, source: string): Promise<boolean> => {
    const member = members[slot - 1];
    member.open.set(source, (member.open.get(source) ?? 0) + 1);
    const need = (): { overall: boolean; clients: boolean; source: string | null } | null => {
      const overall = total(member.open) > member.shares.overall();
      const fromSource = (member.open.get(source) ?? 0) > member.shares.forSource(source);
      return overall || fromSource ? { overall, clients: false, source: fromSource ? source : null } : null;
    };
    if (need() === null) return true;
    if (await member.shares.admit(need)) return true;
    close(slot, source);
    return false;
  };
  const close = (slot: number, source: string): void => {
    const member = members[slot - 1];
    const left = (member.open.get(source) ?? 0) - 1;
    if (left > 0) member.open.set(source, left);
    else {
      member.open.delete(source);
      member.shares.sourceIdle(source);
    }
  };
  const connect = async (slot: number): Promise<boolean> => {
    const member = members[slot - 1];
    member.clients += 1;
    if (member.clients <= (member.shares.clients() ?? 0)) return true;
    const need = (): { overall: boolean; clients: boolean; source: string | null } | null => (member.clients > (member.shares.clients() ?? 0) ? { overall: false, clients: true, source: null } : null);
    if (await member.shares.admit(need)) return true;
    member.clients -= 1;
    return false;
  };
  const kill = (slot: number): void => {
    const member = members[slot - 1];
    member.alive = false;
    desk.gone(member);
  };
  const settled = async (): Promise<void> => {
    for (let i = 0; i < 20; i += 1) await later();
  };
  return { desk, ledger: desk.ledger, members, admit, close, connect, kill, replace: start, settled };
}

const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

describe('tunnel limit shares across workers', () => {
  it('splits a limit evenly, the first slots taking the remainder', () => {
    expect([1, 2, 3].map((slot) => evenShare(8, 3, slot))).toEqual([3, 3, 2]);
    expect([1, 2].map((slot) => evenShare(1, 2, slot))).toEqual([1, 0]);
  });

  it('admits the whole limit on one worker by borrowing, then refuses the next', async () => {
    const { ledger, admit } = box({ maxTunnels: 8, maxTunnelsPerSource: 1000, maxClientConnections: null }, 4);
    const results: boolean[] = [];
    for (let i = 0; i < 9; i += 1) results.push(await admit(3, `10.0.0.${i}`));
    expect(results).toEqual([...Array(8).fill(true), false]);
    expect(sum(ledger.overallShares())).toBe(8);
    expect(ledger.sharesOf(3).overall).toBe(8);
  });

  it('holds a source to its limit across workers, whichever worker its tunnels reach', async () => {
    const { ledger, admit, close } = box({ maxTunnels: 100, maxTunnelsPerSource: 3, maxClientConnections: null }, 2);
    // Slot 2's even share of 3 is 1: its second and third tunnel from the source borrow.
    expect(await admit(2, '10.1.1.1')).toBe(true);
    expect(await admit(2, '10.1.1.1')).toBe(true);
    expect(await admit(1, '10.1.1.1')).toBe(true);
    expect(await admit(1, '10.1.1.1')).toBe(false);
    expect(await admit(2, '10.1.1.1')).toBe(false);
    // Another source has its own limit, untouched.
    expect(await admit(1, '10.2.2.2')).toBe(true);
    expect(sum(ledger.sourceShares('10.1.1.1'))).toBe(3);
    close(2, '10.1.1.1');
    expect(await admit(1, '10.1.1.1')).toBe(true);
    expect(sum(ledger.sourceShares('10.1.1.1'))).toBe(3);
  });

  it('never holds more than the limit, and refuses only when the box is full once the shares settled, under random load', async () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const limits = { maxTunnels: 10, maxTunnelsPerSource: 4, maxClientConnections: null };
    const workers = 3;
    const { ledger, members, admit, close, settled } = box(limits, workers);
    const sources = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'];
    const held: Array<[number, string]> = [];
    const total = (): number => held.length;
    const fromSource = (source: string): number => held.filter(([, s]) => s === source).length;
    let refused = 0;
    for (let step = 0; step < 2_000; step += 1) {
      if (held.length > 0 && random(3) === 0) {
        const [slot, source] = held.splice(random(held.length), 1)[0];
        close(slot, source);
        continue;
      }
      const slot = 1 + random(workers);
      const source = sources[random(sources.length)];
      // A source's give-back (its tunnels closed) reaches the others a message later.
      await settled();
      for (const s of sources) expect(sum(members.map((m) => m.shares.forSource(s)))).toBe(limits.maxTunnelsPerSource);
      const roomBefore = total() < limits.maxTunnels && fromSource(source) < limits.maxTunnelsPerSource;
      const admitted = await admit(slot, source);
      // Exact: admitted exactly when the box had room.
      expect(admitted).toBe(roomBefore);
      if (admitted) held.push([slot, source]);
      else refused += 1;
      expect(total()).toBeLessThanOrEqual(limits.maxTunnels);
      expect(sum(ledger.overallShares())).toBe(limits.maxTunnels);
      expect(sum(members.map((m) => m.shares.overall()))).toBe(limits.maxTunnels);
      for (const s of sources) {
        expect(fromSource(s)).toBeLessThanOrEqual(limits.maxTunnelsPerSource);
        expect(sum(ledger.sourceShares(s))).toBe(limits.maxTunnelsPerSource);
        expect(sum(members.map((m) => m.shares.forSource(s)))).toBeLessThanOrEqual(limits.maxTunnelsPerSource);
      }
    }
    expect(refused).toBeGreaterThan(0);
  });

  it('lends an explicit client connection cap the same way, and leaves `auto` alone', async () => {
    const { ledger, members, connect } = box({ maxTunnels: 100, maxTunnelsPerSource: 100, maxClientConnections: 3 }, 2);
    const results = [await connect(2), await connect(2), await connect(2), await connect(2), await connect(1)];
    expect(results).toEqual([true, true, true, false, false]);
    expect(ledger.clientShares()).toEqual([0, 3]);
    expect(members.map((m) => m.shares.clients())).toEqual([0, 3]);
    const auto = box({ maxTunnels: 100, maxTunnelsPerSource: 100, maxClientConnections: null }, 2);
    expect(auto.members.map((m) => m.shares.clients())).toEqual([null, null]);
  });

  it('admits exactly the limit when borrows from several workers are in flight at once', async () => {
    const { ledger, members, admit } = box({ maxTunnels: 5, maxTunnelsPerSource: 1000, maxClientConnections: null }, 3);
    const slots = [1, 1, 1, 2, 2, 2, 3, 3, 3];
    const results = await Promise.all(slots.map((slot, i) => admit(slot, `10.0.0.${i}`)));
    expect(results.filter(Boolean)).toHaveLength(5);
    expect(sum(ledger.overallShares())).toBe(5);
    expect(sum(members.map((m) => m.shares.overall()))).toBe(5);
  });

  it('admits two CONNECTs that arrive together past one worker\'s share when one borrow brought room for both', async () => {
    const { members, admit } = box({ maxTunnels: 2, maxTunnelsPerSource: 100, maxClientConnections: null }, 2);
    // Both counted, both past the share of 1: each borrows; worker 2's one spare slot answers the
    // first, and the second, answered nothing, finds the room that slot made.
    const results = await Promise.all([admit(1, '10.0.0.1'), admit(1, '10.0.0.2')]);
    expect(results).toEqual([true, true]);
    expect(members.map((m) => m.shares.overall())).toEqual([2, 0]);
    expect(await admit(2, '10.0.0.3')).toBe(false);
  });

  it('admits the whole limit when a burst reaches the lender while its slot is on the way to the borrower', async () => {
    const { members, admit } = box({ maxTunnels: 7, maxTunnelsPerSource: 100, maxClientConnections: null }, 2);
    for (let i = 0; i < 4; i += 1) expect(await admit(1, `10.0.1.${i}`)).toBe(true);
    // Worker 1 borrows for its fifth; worker 2 (share 3) lends, and takes three of its own while
    // the slot is still on its way to worker 1, where neither can lend it.
    const fifth = admit(1, '10.0.1.4');
    for (let turn = 0; turn < 20 && members[1].shares.overall() === 3; turn += 1) await later();
    expect(members[0].shares.overall()).toBe(4);
    const burst = await Promise.all([admit(2, '10.0.2.1'), admit(2, '10.0.2.2'), admit(2, '10.0.2.3')]);
    expect(await fifth).toBe(true);
    // Worker 2 gave one slot, not half of its three: it keeps room for two of its own.
    expect(burst.filter(Boolean)).toHaveLength(2);
    expect(await admit(2, '10.0.2.4')).toBe(false);
    expect(await admit(1, '10.0.1.5')).toBe(false);
  });

  it('admits exactly the room there is when many CONNECTs past a share borrow at once, one borrow at a time', async () => {
    // Worker 2 has one slot spare; worker 1 gets six CONNECTs past its share of 4 at once.
    const { members, admit } = box({ maxTunnels: 7, maxTunnelsPerSource: 100, maxClientConnections: null }, 2);
    for (let i = 0; i < 2; i += 1) expect(await admit(2, `10.0.2.${i}`)).toBe(true);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => admit(1, `10.0.1.${i}`)));
    expect(results.filter(Boolean)).toHaveLength(5);
    expect(members.map((m) => m.shares.overall())).toEqual([5, 2]);
  });

  it('admits a CONNECT whose room came back while its borrow was out, though the lender had nothing', async () => {
    // Seen under load in serve-workers.test.ts (--max-tunnels-per-source 1, 2 workers): slot 2
    // borrowed the source's only slot; its tunnel closes and its give-back reaches the primary
    // just after slot 1's borrow did. The primary asks slot 2, which has nothing left to lend,
    // while the give-back credits slot 1 in a message of its own, ahead of the borrow's answer.
    const { ledger, members, admit, close, settled } = box({ maxTunnels: 100, maxTunnelsPerSource: 1, maxClientConnections: null }, 2);
    expect(await admit(2, '10.1.1.1')).toBe(true);
    await settled();
    expect(ledger.sourceShares('10.1.1.1')).toEqual([0, 1]);
    const pending = admit(1, '10.1.1.1');
    close(2, '10.1.1.1');
    expect(await pending).toBe(true);
    await settled();
    expect(ledger.sourceShares('10.1.1.1')).toEqual([1, 0]);
    expect(members[0].shares.forSource('10.1.1.1')).toBe(1);
    // Still one for the box: the next one from the source, on either worker, is refused.
    expect(await admit(2, '10.1.1.1')).toBe(false);
    expect(await admit(1, '10.1.1.1')).toBe(false);
  });

  it('lends a dead slot\'s share from the ledger, and its replacement starts with what is left', async () => {
    const { ledger, members, admit, kill, replace } = box({ maxTunnels: 4, maxTunnelsPerSource: 4, maxClientConnections: null }, 2);
    kill(2);
    expect(await admit(1, '10.0.0.1')).toBe(true);
    expect(await admit(1, '10.0.0.1')).toBe(true);
    // Past its share of 2: half of the dead slot's 2 comes from the ledger alone.
    expect(await admit(1, '10.0.0.1')).toBe(true);
    expect(ledger.sharesOf(2).overall).toBe(1);
    const replacement = replace(2);
    expect(replacement.shares.overall() + members[0].shares.overall()).toBe(4);
    expect(replacement.shares.forSource('10.0.0.1') + members[0].shares.forSource('10.0.0.1')).toBe(4);
  });

  it('gives a borrow finished after its worker died to the replacement, never losing the slots', async () => {
    const { ledger, members, admit, kill, replace, settled } = box({ maxTunnels: 2, maxTunnelsPerSource: 100, maxClientConnections: null }, 2);
    // Worker 1 is slow to answer; worker 2 borrows, then dies, and its replacement starts meanwhile.
    members[0].answering = false;
    expect(await admit(2, '10.0.0.1')).toBe(true);
    const borrowing = admit(2, '10.0.0.2');
    await settled();
    kill(2);
    const replacement = replace(2);
    for (const answer of members[0].stuck.splice(0)) answer();
    await settled();
    expect(await Promise.race([borrowing, later().then(() => 'unanswered')])).toBe('unanswered');
    expect(ledger.overallShares()).toEqual([0, 2]);
    // The replacement holds what the ledger says: the box still has its two slots.
    expect(replacement.shares.overall() + members[0].shares.overall()).toBe(2);
    expect(await admit(2, '10.0.0.3')).toBe(true);
    expect(await admit(2, '10.0.0.4')).toBe(true);
    expect(await admit(1, '10.0.0.5')).toBe(false);
  });

  it('asks the next worker when one does not answer in time, and gives a late answer\'s slots back to it', async () => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    try {
      const { ledger, members, admit, settled } = box({ maxTunnels: 3, maxTunnelsPerSource: 100, maxClientConnections: null }, 3);
      members[1].answering = false;
      expect(await admit(1, '10.0.0.1')).toBe(true);
      const borrowing = admit(1, '10.0.0.2');
      await settled();
      jest.advanceTimersByTime(1_000);
      // Worker 2 was given up on; worker 3 lent its slot.
      expect(await borrowing).toBe(true);
      for (const answer of members[1].stuck.splice(0)) answer();
      await settled();
      expect(members.map((m) => m.shares.overall())).toEqual([2, 1, 0]);
      expect(ledger.overallShares()).toEqual([2, 1, 0]);
    } finally {
      jest.useRealTimers();
    }
  });

  it('gives back a source\'s borrowed slots once its tunnels close, and forgets the source', async () => {
    const { ledger, members, admit, close, settled } = box({ maxTunnels: 1000, maxTunnelsPerSource: 2, maxClientConnections: null }, 4);
    for (let i = 0; i < 50; i += 1) {
      const source = `10.9.0.${i}`;
      // Slots 3 and 4 have an even share of 0: each source's tunnel there borrows.
      expect(await admit(4, source)).toBe(true);
      expect(await admit(3, source)).toBe(true);
      expect(await admit(2, source)).toBe(false);
      close(4, source);
      close(3, source);
    }
    await settled();
    expect(ledger.movedSources()).toBe(0);
    expect(members.map((m) => m.shares.movedSources())).toEqual([0, 0, 0, 0]);
    expect(ledger.sourceShares('10.9.0.7')).toEqual([1, 1, 0, 0]);
  });

  it('gives back at once source slots that reach a worker with no tunnel from that source, so the ledger forgets the source', async () => {
    const { ledger, members, admit, kill, replace, settled } = box({ maxTunnels: 100, maxTunnelsPerSource: 2, maxClientConnections: null }, 2);
    // Worker 2 (even share 1) borrows for its second tunnel from the source, then dies.
    expect(await admit(2, '10.3.3.3')).toBe(true);
    expect(await admit(2, '10.3.3.3')).toBe(true);
    expect(ledger.sourceShares('10.3.3.3')).toEqual([0, 2]);
    kill(2);
    // Its replacement starts with the slot's two and holds no tunnel: it keeps its even one.
    const replacement = replace(2);
    replacement.shares.releaseIdle();
    await settled();
    expect(ledger.movedSources()).toBe(0);
    expect([members[0].shares.movedSources(), replacement.shares.movedSources()]).toEqual([0, 0]);
    expect(members[0].shares.forSource('10.3.3.3') + replacement.shares.forSource('10.3.3.3')).toBe(2);
  });

  it('answers a borrow that cannot reach the primary with a refusal, and a primary gone fails the ones waiting', async () => {
    const counts = { overall: () => 2, from: () => 2, clients: () => 0 };
    const shares = new WorkerShares({ maxTunnels: 2, maxTunnelsPerSource: 2, maxClientConnections: null }, 2, 2, { overall: 1, clients: 0, sources: [] }, counts, () => false);
    expect(await shares.borrow({ overall: true, clients: false, source: null })).toBe(false);
    const waiting = new WorkerShares({ maxTunnels: 2, maxTunnelsPerSource: 2, maxClientConnections: null }, 2, 2, { overall: 1, clients: 0, sources: [] }, counts, () => true);
    const answer = waiting.borrow({ overall: true, clients: false, source: '10.0.0.1' });
    waiting.disconnected();
    expect(await answer).toBe(false);
    expect(waiting.overall()).toBe(1);
  });

  it('grants only when every wanted limit moved: an overall slot alone does not admit a source past its share', async () => {
    const shares = new WorkerShares({ maxTunnels: 4, maxTunnelsPerSource: 2, maxClientConnections: null }, 2, 1, { overall: 2, clients: 0, sources: [] }, { overall: () => 3, from: () => 2, clients: () => 0 }, () => true);
    const answer = shares.borrow({ overall: true, clients: false, source: '10.0.0.1' });
    shares.granted(1, { overall: 1, clients: 0, source: 0 }, '10.0.0.1');
    expect(await answer).toBe(false);
    // What moved stays moved: the shares still add up in the ledger's view.
    expect(shares.overall()).toBe(3);
    expect(shares.forSource('10.0.0.1')).toBe(1);
  });
});
