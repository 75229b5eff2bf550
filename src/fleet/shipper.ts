import type { Pool } from 'pg';
import { planStep, readStep } from '../audit/log/index-step';
import { measureLag } from '../audit/log/index-lag';
import type { LogPosition } from '../audit/log/segment-reader';
import { ensurePgSchema } from './pg-migrate';
import { shipBatch, shipStart, touchStore } from './pg-ship';
import type { StoreIdentity } from './pg-ship';
import { ForeignShipperError, positionOutsideLog, StaleCounter } from './ship-position-check';
import { readShippedCopy, writeShippedCopy } from './ship-position-file';
import { EMPTY_SHIP_STATUS } from './ship-status';
import { chainPart, checkpointBefore } from './pg-chain';
import type { ShipStatus } from './ship-status';

/**
 * Ships the local audit log to PostgreSQL (issue 15): follows the log as the index consumer does
 * (readStep/planStep), one PostgreSQL transaction per batch (shipBatch), resuming from the
 * position PostgreSQL holds, at start and whenever a batch comes back stale or fails. Nothing
 * here touches the proxy: when PostgreSQL is down or slow, the loop waits (backoff) and the
 * backlog is the part of the local log after the shipped position.
 */
export interface ShipperOptions {
  pool: Pool;
  logDir: string;
  who: StoreIdentity;
  policyVersion: () => string | null;
  /** Entries per batch (one transaction). */
  maxBatchEntries?: number;
  /** The pause once caught up. */
  intervalMs?: number;
  /** After a failure: first wait, doubled per failure up to the most. */
  backoffFirstMs?: number;
  backoffMaxMs?: number;
  /** While idle, the store's row (last contact, policy version) is refreshed this often. */
  touchEveryMs?: number;
  clock?: () => Date;
  /** Error text for status and logs; the caller removes the password (scrubSecret). */
  describe: (err: unknown) => string;
  /** A failure, and the first success after failures. */
  onFailing?: (message: string, failures: number) => void;
  onRecovered?: (failures: number) => void;
  onMigrated?: (versions: string[]) => void;
}

export const SHIPPER_DEFAULTS = Object.freeze({ maxBatchEntries: 2000, intervalMs: 250, backoffFirstMs: 1000, backoffMaxMs: 30_000, touchEveryMs: 30_000 });

/** What one attempt did: nothing to ship, a batch with maybe more behind it, a short batch, a failure. */
type Step = 'idle' | 'more' | 'some' | 'failed';

export class Shipper {
  private readonly state: ShipStatus = { ...EMPTY_SHIP_STATUS };
  /** Where the next batch starts; null until read from PostgreSQL (and after any failure). */
  private at: LogPosition | null = null;
  private migrated = false;
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private streak = 0;
  private readonly clock: () => Date;
  /** When the local copy of the position was last written, and a newer position not yet written. */
  private copiedAt = 0;
  private uncopied: LogPosition | null = null;
  private readonly stale = new StaleCounter();
  /** The store's chain has no entry in PostgreSQL yet: the first batch may need a checkpoint before it. */
  private chainStarts = false;
  /** When the store's row was last refreshed, and with which policy version (undefined: never). */
  private touchedAt = -Infinity;
  private touchedVersion: string | null | undefined = undefined;

  constructor(private readonly opts: ShipperOptions) {
    this.clock = opts.clock ?? (() => new Date());
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stops after the batch in flight (its transaction commits or rolls back whole). */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  /**
   * Ships until the log's end as it is now, or until `deadline`; true when caught up. For a
   * stopping replica: the completions written at shutdown should reach PostgreSQL now, not at
   * the next start (a replica scaled away has no next start).
   */
  async drain(deadlineMs: number): Promise<boolean> {
    await this.stop();
    this.running = true;
    try {
      while (this.clock().getTime() < deadlineMs) {
        const step = await this.attempt();
        if (step === 'idle') return true;
        if (step === 'failed') return false;
      }
      return false;
    } finally {
      this.running = false;
    }
  }

  status(): ShipStatus {
    return { ...this.state };
  }

  /** Recounts the backlog from the shipped position (entry heads only, no JSON). */
  refreshBacklog(): ShipStatus {
    const from = this.at ?? readShippedCopy(this.opts.logDir) ?? { segment: 0, offset: 0 };
    const lag = measureLag(this.opts.logDir, from, this.clock());
    this.state.backlogEntries = lag.entriesBehind;
    this.state.oldestSeconds = lag.secondsBehind;
    this.state.backlogCapped = lag.capped;
    return this.status();
  }

  private async run(): Promise<void> {
    let wait = 0;
    while (this.running) {
      if (wait > 0) await this.sleep(wait);
      if (!this.running) return;
      const step = await this.attempt();
      if (step === 'failed') wait = this.backoff();
      else wait = step === 'more' ? 0 : (this.opts.intervalMs ?? SHIPPER_DEFAULTS.intervalMs);
    }
  }

  private async attempt(): Promise<Step> {
    try {
      const shipped = await this.shipOne();
      if (this.streak > 0) this.opts.onRecovered?.(this.streak);
      this.streak = 0;
      this.state.lastError = null;
      this.state.lastSuccessAt = this.clock().toISOString();
      return shipped;
    } catch (err) {
      // A commit may have landed before the error reached us: PostgreSQL says where to go on.
      this.at = null;
      this.streak += 1;
      this.state.failures += 1;
      this.state.lastError = this.opts.describe(err);
      this.opts.onFailing?.(this.state.lastError, this.streak);
      return 'failed';
    }
  }

  private backoff(): number {
    const first = this.opts.backoffFirstMs ?? SHIPPER_DEFAULTS.backoffFirstMs;
    const most = this.opts.backoffMaxMs ?? SHIPPER_DEFAULTS.backoffMaxMs;
    return Math.min(most, first * 2 ** Math.min(this.streak - 1, 20));
  }

  private async shipOne(): Promise<Exclude<Step, 'failed'>> {
    const { pool, logDir, who } = this.opts;
    if (!this.migrated) await this.migrate();
    const from = this.at ?? this.startFrom(await shipStart(pool, who.storeId));
    const read = readStep(logDir, from, this.opts.maxBatchEntries ?? SHIPPER_DEFAULTS.maxBatchEntries, true);
    if (read.entries.length === 0 && read.damage.length === 0) {
      if (this.uncopied !== null) this.keepLocalCopy(this.uncopied, true);
      await this.keepInTouch();
      return 'idle';
    }
    const payloads = this.chainStarts ? withStart(logDir, from, read.payloads) : read.payloads;
    const batch = {
      from, next: read.next, plan: planStep(read.entries), entries: read.entries.length, policyVersion: this.opts.policyVersion(), chain: chainPart(payloads),
    };
    const outcome = await shipBatch(pool, who, batch, this.clock().getTime());
    if (outcome.kind === 'stale') {
      if (this.stale.note(this.clock().getTime())) {
        throw new ForeignShipperError(who.storeId, 'the ship position in PostgreSQL was moved under this shipper more than 3 times in a minute');
      }
      // Read with the refusal, under the same row lock: no need to ask again.
      this.startFrom(outcome);
      return 'more';
    }
    this.at = read.next;
    this.chainStarts = false;
    this.touchedAt = this.clock().getTime();
    this.touchedVersion = batch.policyVersion;
    this.state.shippedEntries += read.entries.length;
    this.keepLocalCopy(read.next);
    return read.entries.length >= (this.opts.maxBatchEntries ?? SHIPPER_DEFAULTS.maxBatchEntries) ? 'more' : 'some';
  }

  /**
   * A batch refreshes the store's row (pg-ship.ts touchStore); an idle replica does it here, so the
   * console's last contact stays current and a policy reload shows at once, not at the next request.
   */
  private async keepInTouch(): Promise<void> {
    const now = this.clock().getTime();
    const version = this.opts.policyVersion();
    if (version === this.touchedVersion && now - this.touchedAt < (this.opts.touchEveryMs ?? SHIPPER_DEFAULTS.touchEveryMs)) return;
    await touchStore(this.opts.pool, this.opts.who, version, now);
    this.touchedAt = now;
    this.touchedVersion = version;
  }

  /** PostgreSQL's position for this store, when it can be this log's (ship-position-check.ts). */
  /** Ships on from where PostgreSQL says this store stands (shipStart, or a stale batch's answer). */
  private startFrom(stored: { position: LogPosition; chainEntries: number }): LogPosition {
    this.at = this.ownPosition(stored.position);
    this.chainStarts = stored.chainEntries === 0;
    return this.at;
  }

  private ownPosition(position: LogPosition): LogPosition {
    const why = positionOutsideLog(this.opts.logDir, position);
    if (why !== null) throw new ForeignShipperError(this.opts.who.storeId, `its ship position in PostgreSQL (segment ${position.segment}, offset ${position.offset}) is not in this log: ${why}`);
    return position;
  }

  /**
   * A copy that cannot be written (a full disk) only makes retention keep more; shipping goes on.
   * At most once a second (and at the end of a drain): retention reads it once a minute, and a
   * write and rename per batch was 8% of the ship thread's time at full rate.
   */
  private keepLocalCopy(position: LogPosition, force = false): void {
    const now = this.clock().getTime();
    if (!force && now - this.copiedAt < 1000) {
      this.uncopied = position;
      return;
    }
    this.copiedAt = now;
    this.uncopied = null;
    try {
      writeShippedCopy(this.opts.logDir, position);
    } catch {
      // Retention reads the older copy and keeps the segments after it.
    }
  }

  /** A least-privilege role ships once an owner has migrated (ensurePgSchema). */
  private async migrate(): Promise<void> {
    const applied = await ensurePgSchema(this.opts.pool);
    if (applied.length > 0) this.opts.onMigrated?.(applied);
    this.migrated = true;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/**
 * A store's first chained batch that does not start at a segment's beginning (its earlier rows were
 * shipped by a release without the chain's copy) starts from a checkpoint of the head before it.
 */
function withStart(dir: string, from: LogPosition, payloads: Buffer[]): Buffer[] {
  const start = checkpointBefore(dir, from);
  return start === null ? payloads : [start, ...payloads];
}
