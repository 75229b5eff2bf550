import type { AuditCompletion, AuditOpen, AuditSink } from './record-types';
import type { BatchOutcome, CompletionEntry, FinishedEntry } from './connection';
import type { PreparedEntry } from './log/entry-codec';

/**
 * What group commit needs from the store: store.ts commits on this thread and returns the
 * outcome; writer-thread.ts commits on its own thread and returns a promise of it.
 */
export interface BatchTarget {
  writable(): boolean;
  /** `ids` in the outcome: one per open, then one per finished record. */
  commitBatch(
    opens: readonly AuditOpen[],
    completions: readonly CompletionEntry[],
    finished: readonly FinishedEntry[],
  ): BatchOutcome | Promise<BatchOutcome>;
  /**
   * Entries the log's codec already encoded (a `--workers` worker's batch, cluster/wire.ts),
   * taken as they are: `ids` one per open or finished entry, in the order given. Only the log
   * store appends without decoding; where this is absent, the caller decodes (cluster/pool.ts).
   */
  commitPrepared?(entries: readonly PreparedEntry[]): BatchOutcome | Promise<BatchOutcome>;
  /**
   * The log store on this thread (not --audit-fsync's writer thread, not an in-memory --db):
   * `--workers` workers then give their records ids from blocks it reserves and spool them,
   * and the primary appends them in id order (cluster/block-merge.ts).
   */
  readonly numbered?: NumberedLog;
}

export interface NumberedLog {
  /** The folder workers spool their batches in (cluster/spool.ts). */
  readonly spool: string;
  /** Reserves `count` consecutive ids and returns the first; throws while the log is failing. */
  reserveIds(count: number): number;
  /** Appends entries whose records have their ids, in id order; throws, holding nothing, when it cannot. */
  commitNumbered(entries: readonly PreparedEntry[]): void;
}

/**
 * A tunnel or request costs one open and one completion; alone, each would be a commit of its
 * own. Waiting this long lets a completion share the next opens' commit under any steady load;
 * the record shows as open for that much longer, which nobody can see in the UI.
 */
const COMPLETION_DELAY_MS = 20;

interface Waiting {
  resolve: (id: number) => void;
  reject: (err: unknown) => void;
}

interface WaitingOpen extends Waiting {
  record: AuditOpen;
}

interface WaitingFinished extends Waiting {
  entry: FinishedEntry;
}

/**
 * Group commit: every open and completion asked for in one turn of the event loop is written in
 * one transaction when the turn ends (setImmediate), instead of one transaction each. A commit
 * costs about the same for one record as for fifty (the log pages it appends, the index pages
 * it touches), so under load each record pays a fraction of it; alone, a record waits for no
 * more than the rest of the turn it arrived in.
 *
 * An open's promise settles after the commit: the record is on disk before the proxy forwards
 * a byte (SPEC §4), or the open fails and the proxy answers 503. With a target that commits
 * elsewhere (the writer thread) one batch is in flight at a time: what arrives meanwhile waits
 * for it and goes in the next, so batches grow with the load instead of queueing up.
 *
 * A completion is never waited for: it rides along with the next opens' commit, or is
 * committed on its own after at most `completionDelayMs` when no open comes (a quiet proxy);
 * if the commit fails the store holds it and writes it on recovery.
 *
 * A finished record (a refusal: 403, 400, 502 and the like, or a client gone before anything
 * was forwarded) is committed like an open, in the same batches: its answer names the
 * record's id, so it waits for the commit, but the thread that relays bytes never does.
 */
export class GroupCommit implements AuditSink {
  private opens: WaitingOpen[] = [];
  private finished: WaitingFinished[] = [];
  private completions: CompletionEntry[] = [];
  private scheduled: NodeJS.Immediate | null = null;
  private delayed: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;

  /**
   * `onCommit`: after every commit attempt, with its duration (the audit-write metric).
   * `completionDelayMs`: how long completions wait for opens to share a commit with.
   */
  constructor(
    private readonly target: BatchTarget,
    private readonly onCommit: (seconds: number, records: number) => void = () => undefined,
    private readonly completionDelayMs = COMPLETION_DELAY_MS,
  ) {}

  writable(): boolean {
    return this.target.writable();
  }

  open(record: AuditOpen): Promise<number> {
    return new Promise((resolve, reject) => {
      this.opens.push({ record, resolve, reject });
      this.schedule();
    });
  }

  complete(id: number, completion: AuditCompletion): void {
    this.completions.push([id, completion]);
    this.delayed ??= setTimeout(() => this.flush(), this.completionDelayMs);
  }

  record(record: AuditOpen, completion: AuditCompletion): Promise<number> {
    return new Promise((resolve, reject) => {
      this.finished.push({ entry: [record, completion], resolve, reject });
      this.schedule();
    });
  }

  /** Commit what is waiting now, unless a commit is in flight (its end commits the rest). */
  flush(): void {
    if (this.scheduled !== null) clearImmediate(this.scheduled);
    if (this.delayed !== null) clearTimeout(this.delayed);
    this.scheduled = null;
    this.delayed = null;
    if (this.inFlight !== null) return;
    const { opens, finished, completions } = this;
    if (opens.length === 0 && finished.length === 0 && completions.length === 0) return;
    this.opens = [];
    this.finished = [];
    this.completions = [];
    const started = process.hrtime.bigint();
    const settle = (outcome: BatchOutcome | null, err: unknown): void => {
      this.onCommit(Number(process.hrtime.bigint() - started) / 1e9, opens.length + finished.length + completions.length);
      settleWaiting([...opens, ...finished], outcome, err);
    };
    let result: BatchOutcome | Promise<BatchOutcome>;
    try {
      result = this.target.commitBatch(opens.map((o) => o.record), completions, finished.map((f) => f.entry));
    } catch (err) {
      return settle(null, err);
    }
    if (!(result instanceof Promise)) return settle(result, null);
    this.inFlight = result
      .then((outcome) => settle(outcome, null), (err: unknown) => settle(null, err))
      .finally(() => {
        this.inFlight = null;
        this.afterCommit();
      });
  }

  /** Shutdown: commit everything waiting, including what arrives while doing so. */
  async drain(): Promise<void> {
    for (;;) {
      this.flush();
      if (this.inFlight === null) return;
      await this.inFlight;
    }
  }

  /** Opens and finished records that arrived during the commit go now; completions alone wait as usual. */
  private afterCommit(): void {
    if (this.opens.length > 0 || this.finished.length > 0) this.flush();
    else if (this.completions.length > 0) this.delayed ??= setTimeout(() => this.flush(), this.completionDelayMs);
  }

  private schedule(): void {
    this.scheduled ??= setImmediate(() => this.flush());
  }
}

/** `waiting` in the order of the outcome's ids: the opens, then the finished records. */
function settleWaiting(waiting: readonly Waiting[], outcome: BatchOutcome | null, err: unknown): void {
  waiting.forEach((one, i) => {
    const id = outcome === null ? err : outcome.ids[i];
    if (typeof id === 'number') one.resolve(id);
    else one.reject(id);
  });
}
