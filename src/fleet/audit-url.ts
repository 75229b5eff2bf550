import fs from 'node:fs';
import { Pool } from 'pg';

/**
 * Where the shared history lives: `--audit-url`, `--audit-url-file FILE` (the URL is read from the
 * file, so the password is in neither the process list nor the environment of child processes),
 * or TOLLGATE_AUDIT_URL. The URL is never logged or shown whole: redactAuditUrl() first.
 */
export class AuditUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AuditUrlError';
  }
}

/** The URL from the file's first non-empty line; the file may end in a newline. */
export function readAuditUrlFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new AuditUrlError(`--audit-url-file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const line = text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '');
  if (line === undefined) throw new AuditUrlError(`--audit-url-file ${file} is empty`);
  return line;
}

/** A postgres:// or postgresql:// URL, checked without echoing it (it may hold a password). */
export function checkAuditUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new AuditUrlError('the audit URL is not a URL (expected postgres://USER@HOST:PORT/DB)');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new AuditUrlError(`the audit URL must start with postgres:// (got ${parsed.protocol}//)`);
  }
  return url;
}

/** The URL with its password (and any password= parameter) replaced by `***`. */
export function redactAuditUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    if (parsed.searchParams.has('password')) parsed.searchParams.set('password', '***');
    return parsed.toString();
  } catch {
    return '(unparseable audit URL)';
  }
}

export interface AuditPoolOptions {
  /** Connections (default 4). */
  max?: number;
  /** How long a connection attempt may take (default 5 s): a down server must not hang callers. */
  connectTimeoutMs?: number;
  /** application_name in pg_stat_activity. */
  applicationName?: string;
  /** Per-statement limit set on each connection (default 60 s). */
  statementTimeoutMs?: number;
}

/**
 * A pool on the shared history. TLS comes from the URL itself, as libpq reads it:
 * `sslmode=verify-full&sslrootcert=/path/ca.pem` verifies the server's certificate against that
 * CA and its name against the host (pg-connection-string turns both into Node's TLS options).
 * A pool's idle-client errors (the server restarted) are swallowed here: the next query reports.
 */
export function openAuditPool(url: string, opts: AuditPoolOptions = {}): Pool {
  const pool = new Pool({
    connectionString: checkAuditUrl(url),
    max: opts.max ?? 4,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'tollgate',
    statement_timeout: opts.statementTimeoutMs ?? 60_000,
  });
  pool.on('error', () => undefined);
  return pool;
}
