import { evenShare, TunnelLedger, WorkerShares } from '../src/cluster/tunnel-lending';
import type { BoxLimits, Moved, Want } from '../src/cluster/tunnel-lending';

/**
 * The tunnel limits' shares across workers (cluster/tunnel-lending.ts), with the primary's ledger
 * and each worker's shares wired by direct calls: the messages' content and order as pool.ts and
 * worker-main.ts pass them, without processes (test/serve-workers.test.ts runs them for real).
 */

/** A worker: its shares and the tunnels it holds (per source). */
interface SimWorker {
  slot: number;
  shares: WorkerShares;
  open: Map<string, number>;
  alive: boolean;
}

function box(limits: BoxLimits, workers: number): { ledger: TunnelLedger; members: SimWorker[]; admit: (slot: number, source: string) => Promise<boolean>; close: (slot: number, source: string) => void } {
  const ledger = new TunnelLedger(limits, workers);
  const members: SimWorker[] = [];
  const start = (slot: number): SimWorker => {
    const open = new Map<string, number>();
    const member: SimWorker = { slot, open, alive: true, shares: undefined as unknown as WorkerShares };
    member.shares = new WorkerShares(limits, workers, slot, ledger.sharesOf(slot), {
      overall: () => [...open.values()].reduce((a, b) => a + b, 0),
      from: (source) => open.get(source) ?? 0,
    }, (id, want) => {
      // The primary: the ledger asks the other slots' live workers, then answers the borrower.
      void ledger.borrow(slot, want, (lender: number, asked: Want): Promise<Moved | null> => {
        const other = members[lender - 1];
        return Promise.resolve(other.alive ? other.shares.lend(asked) : null);
      }).then((moved) => member.shares.granted(id, moved));
      return true;
    });
    members[slot - 1] = member;
    return member;
  };
  for (let slot = 1; slot <= workers; slot += 1) start(slot);
  /** As enforceTunnelLimits: counted first, then checked against the shares, borrowing past them. */
  const admit = async (slot: number, source: string): Promise<boolean> => {
    const member = members[slot - 1];
    member.open.set(source, (member.open.get(source) ?? 0) + 1);
    const overall = [...member.open.values()].reduce((a, b) => a + b, 0) > member.shares.overall();
    const fromSource = (member.open.get(source) ?? 0) > member.shares.forSource(source);
    if (!overall && !fromSource) return true;
    if (await member.shares.borrow({ overall, source: fromSource ? source : null })) return true;
    member.open.set(source, (member.open.get(source) ?? 0) - 1);
    return false;
  };
  const close = (slot: number, source: string): void => {
    const member = members[slot - 1];
    member.open.set(source, (member.open.get(source) ?? 0) - 1);
  };
  return { ledger, members, admit, close };
}

const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

describe('tunnel limit shares across workers', () => {
  it('splits a limit evenly, the first slots taking the remainder', () => {
    expect([1, 2, 3].map((slot) => evenShare(8, 3, slot))).toEqual([3, 3, 2]);
    expect([1, 2].map((slot) => evenShare(1, 2, slot))).toEqual([1, 0]);
  });

  it('admits the whole limit on one worker by borrowing, then refuses the next', async () => {
    const { ledger, admit } = box({ maxTunnels: 8, maxTunnelsPerSource: 1000 }, 4);
    const results: boolean[] = [];
    for (let i = 0; i < 9; i += 1) results.push(await admit(3, `10.0.0.${i}`));
    expect(results).toEqual([...Array(8).fill(true), false]);
    expect(sum(ledger.overallShares())).toBe(8);
    expect(ledger.sharesOf(3).overall).toBe(8);
  });

  it('holds a source to its limit across workers, whichever worker its tunnels reach', async () => {
    const { ledger, admit, close } = box({ maxTunnels: 100, maxTunnelsPerSource: 3 }, 2);
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

  it('never holds more than the limit, and refuses only when the box is full, under random load', async () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const limits = { maxTunnels: 10, maxTunnelsPerSource: 4 };
    const workers = 3;
    const { ledger, members, admit, close } = box(limits, workers);
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
        expect(sum(members.map((m) => m.shares.forSource(s)))).toBe(limits.maxTunnelsPerSource);
      }
    }
    expect(refused).toBeGreaterThan(0);
  });

  it('admits exactly the limit when borrows from several workers are in flight at once', async () => {
    const { ledger, members, admit } = box({ maxTunnels: 5, maxTunnelsPerSource: 1000 }, 3);
    const slots = [1, 1, 1, 2, 2, 2, 3, 3, 3];
    const results = await Promise.all(slots.map((slot, i) => admit(slot, `10.0.0.${i}`)));
    expect(results.filter(Boolean)).toHaveLength(5);
    expect(sum(ledger.overallShares())).toBe(5);
    expect(sum(members.map((m) => m.shares.overall()))).toBe(5);
  });

  it('lends a slot with no process from the ledger, and its replacement starts with what is left', async () => {
    const { ledger, members, admit } = box({ maxTunnels: 4, maxTunnelsPerSource: 4 }, 2);
    members[1].alive = false;
    expect(await admit(1, '10.0.0.1')).toBe(true);
    expect(await admit(1, '10.0.0.1')).toBe(true);
    // Past its share of 2: half of the dead slot's 2 comes from the ledger alone.
    expect(await admit(1, '10.0.0.1')).toBe(true);
    expect(ledger.sharesOf(2).overall).toBe(1);
    const replacement = ledger.sharesOf(2);
    expect(replacement.overall + ledger.sharesOf(1).overall).toBe(4);
    expect(sum(replacement.sources.map(([, n]) => n)) + sum(ledger.sharesOf(1).sources.map(([, n]) => n))).toBe(4);
  });

  it('answers a borrow that cannot reach the primary with a refusal, and a primary gone fails the ones waiting', async () => {
    const shares = new WorkerShares({ maxTunnels: 2, maxTunnelsPerSource: 2 }, 2, 2, { overall: 1, sources: [] }, { overall: () => 2, from: () => 2 }, () => false);
    expect(await shares.borrow({ overall: true, source: null })).toBe(false);
    const waiting = new WorkerShares({ maxTunnels: 2, maxTunnelsPerSource: 2 }, 2, 2, { overall: 1, sources: [] }, { overall: () => 2, from: () => 2 }, () => true);
    const answer = waiting.borrow({ overall: true, source: '10.0.0.1' });
    waiting.disconnected();
    expect(await answer).toBe(false);
    expect(waiting.overall()).toBe(1);
  });

  it('grants only when every wanted limit moved: an overall slot alone does not admit a source past its share', async () => {
    const shares = new WorkerShares({ maxTunnels: 4, maxTunnelsPerSource: 2 }, 2, 1, { overall: 2, sources: [] }, { overall: () => 3, from: () => 2 }, () => true);
    const answer = shares.borrow({ overall: true, source: '10.0.0.1' });
    shares.granted(1, { overall: 1, source: 0 });
    expect(await answer).toBe(false);
    // What moved stays moved: the shares still add up in the ledger's view.
    expect(shares.overall()).toBe(3);
    expect(shares.forSource('10.0.0.1')).toBe(1);
  });
});
