/** What the audit store reports about itself (logs, /metrics, /readyz detail). */
export interface AuditHealth {
  /** False from the first failed write until a probe write succeeds again. */
  writable: boolean;
  /** The error that made writes fail; null while writable. */
  lastError: string | null;
  /** ISO-8601 UTC time of the first failure of the current outage; null while writable. */
  failingSince: string | null;
  /** Completions held in memory until writes work again. */
  pendingCompletions: number;
  /** Completions dropped since start because the in-memory queue was full (a counter). */
  droppedCompletions: number;
  /** The writer's connection fsyncs every commit (--audit-fsync, PRAGMA synchronous=FULL). */
  fsync: boolean;
  /** The audit log (log-store.ts) only: damage found at start (a torn tail cut off), as a sentence. */
  logDamage?: string | null;
}

/**
 * The audit log chain's head (GET /api/audit/head): the last entry's record id and its hash in
 * hex, as `tollgate audit verify` prints it. Not in AuditHealth: /readyz shows that unauthenticated.
 */
export interface AuditChainHead {
  id: number;
  hash: string;
}

/** One transition, for a single log line: `message` is written to be logged as it is. */
export interface AuditStateChange {
  event: 'failing' | 'recovered' | 'reopened' | 'damaged' | 'spooled';
  message: string;
  health: AuditHealth;
}

/** Thrown, without touching the database, by writes while the store is known to be failing. */
export class AuditUnavailableError extends Error {
  readonly code = 'audit_unavailable';
  constructor(message: string) {
    super(message);
    this.name = 'AuditUnavailableError';
  }
}

/**
 * SQLite errors that concern one record, not the database: the next record may well succeed,
 * so they neither stop writes nor are retried. Everything else (FULL, BUSY, IOERR, READONLY,
 * CANTOPEN, CORRUPT, a closed connection, ...) means the log cannot be written right now.
 */
const RECORD_ERROR = /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/;

/**
 * The SQLite result code of an error, if it is one. Duck-typed, not `instanceof SqliteError`
 * (or even `instanceof Error`): the native addon throws the SqliteError class of whichever copy
 * of better-sqlite3 registered last, and under jest each test file has its own copy and realm.
 */
export function sqliteCode(err: unknown): string | null {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : null;
}

export function isRecordError(err: unknown): boolean {
  return RECORD_ERROR.test(sqliteCode(err) ?? '');
}

export function describeError(err: unknown): string {
  const text = typeof err === 'object' && err !== null ? (err as { message?: unknown }).message : undefined;
  const message = typeof text === 'string' ? text : String(err);
  const code = sqliteCode(err);
  return code === null ? message : `${code}: ${message}`;
}

export interface WriteHealthOptions {
  clock: () => Date;
  /** How often a failing store tries a probe write (the only way back to writable). */
  probeIntervalMs: number;
  /** Called by the timer while failing; it calls recovered() or fail() itself. */
  probe: () => void;
  counts: () => Pick<AuditHealth, 'pendingCompletions' | 'droppedCompletions' | 'fsync' | 'logDamage'>;
  onStateChange?: (change: AuditStateChange) => void;
}

/**
 * The store's circuit breaker. After a failed write, writes fail fast (no database call, so no
 * busy_timeout stall per request) and an unref'd timer probes until a write succeeds.
 */
export class WriteHealth {
  private since: Date | null = null;
  private lastError: string | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: WriteHealthOptions) {}

  get failing(): boolean {
    return this.since !== null;
  }

  fail(err: unknown): void {
    this.lastError = describeError(err);
    if (this.since !== null) return;
    this.since = this.opts.clock();
    this.timer = setInterval(this.opts.probe, this.opts.probeIntervalMs);
    // A failing audit log must not keep a stopping process alive.
    this.timer.unref();
    this.emit('failing', `audit log cannot be written, new requests get 503: ${this.lastError}`);
  }

  recovered(detail: string): void {
    if (this.since === null) return;
    const downMs = this.opts.clock().getTime() - this.since.getTime();
    this.since = null;
    this.lastError = null;
    this.stop();
    this.emit('recovered', `audit log writable again after ${downMs} ms${detail}`);
  }

  unavailable(): AuditUnavailableError {
    const since = this.since === null ? '' : ` since ${this.since.toISOString()}`;
    return new AuditUnavailableError(`audit log unavailable${since}: ${this.lastError ?? 'unknown error'}`);
  }

  snapshot(): AuditHealth {
    return {
      writable: this.since === null,
      lastError: this.lastError,
      failingSince: this.since === null ? null : this.since.toISOString(),
      ...this.opts.counts(),
    };
  }

  emit(event: AuditStateChange['event'], message: string): void {
    try {
      this.opts.onStateChange?.({ event, message, health: this.snapshot() });
    } catch {
      // A throwing log callback must not turn a working write into a failed request.
    }
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
