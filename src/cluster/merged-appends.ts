import type { NumberedLog } from '../audit/group-commit';
import type { PreparedEntry } from '../audit/log/entry-codec';
import type { Logger } from '../log';
import { removeSpoolFiles } from './spool';
import type { SpoolFile } from './spool';

/** After a failed append (a failing log), the held entries are tried again this often. */
const RETRY_MS = 250;
/** Completions held while the log fails, at most (the store's own bound); the oldest go first. */
const MAX_HELD_COMPLETIONS = 10_000;

/**
 * The log's side of the workers' merge (block-merge.ts): entries merged in id order are appended
 * in one write per turn; while the log refuses them they are held in that order and tried again,
 * since the workers answered them already (and spooled them: a start appends them from there).
 */
export class MergedAppends {
  private unappended: PreparedEntry[] = [];
  private retry: NodeJS.Timeout | null = null;
  private droppedCompletions = 0;
  /** Dead workers' spool files whose entries have all passed: removed once none is unappended. */
  private spentSpools: SpoolFile[] = [];

  constructor(
    private readonly log: NumberedLog,
    private readonly logger: Logger,
    /** Called to try again after a failure (the merge's next turn). */
    private readonly tryAgain: () => void,
  ) {}

  /** Whether everything merged is in the log. */
  get empty(): boolean {
    return this.unappended.length === 0;
  }

  /**
   * Appends what is held, then `entries` (handed over: kept as they are while the log refuses),
   * in one write; on failure holds them all, in order.
   */
  append(entries: PreparedEntry[]): void {
    const holding = this.unappended.length > 0;
    if (holding) for (const entry of entries) this.unappended.push(entry);
    const batch = holding ? this.unappended : entries;
    if (batch.length === 0) return;
    try {
      this.log.commitNumbered(batch);
    } catch (err) {
      if (!holding) this.logger.error({ err, entries: batch.length }, 'the log cannot take the workers\' records now; they are held (and spooled) until it can');
      this.unappended = batch;
      this.boundHeld();
      this.retry ??= setTimeout(() => {
        this.retry = null;
        this.tryAgain();
      }, RETRY_MS);
      this.retry.unref();
      return;
    }
    if (!holding) return;
    this.unappended = [];
    if (this.droppedCompletions > 0) {
      this.logger.warn({ dropped_completions: this.droppedCompletions }, 'the log takes the workers\' records again; completions beyond the held bound were lost (their records end at shutdown or the next start)');
      this.droppedCompletions = 0;
    }
    if (this.spentSpools.length > 0) this.removeSpentSpools();
  }

  /** A dead worker's spool files, all of whose entries have passed: removed once the log has them. */
  spent(files: readonly SpoolFile[]): void {
    this.spentSpools.push(...files);
    if (this.empty) this.removeSpentSpools();
  }

  private removeSpentSpools(): void {
    const files = this.spentSpools;
    this.spentSpools = [];
    if (!removeSpoolFiles(files)) this.logger.warn('a dead worker\'s spool files could not be removed; the next start reads them again');
  }

  /**
   * While the log fails, records are few (the workers refuse new ones once told) but connections
   * keep closing: completions beyond the bound go, the oldest first, as the store drops its own.
   */
  private boundHeld(): void {
    let completions = 0;
    for (const entry of this.unappended) if (entry.type === 'complete') completions += 1;
    if (completions <= MAX_HELD_COMPLETIONS) return;
    let drop = completions - Math.floor(MAX_HELD_COMPLETIONS * 0.9);
    this.droppedCompletions += drop;
    this.unappended = this.unappended.filter((entry) => entry.type !== 'complete' || drop-- <= 0);
  }
}
