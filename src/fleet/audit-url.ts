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

/** A path as an error shows it: a URL given where a path belongs (with its password) is redacted. */
function shownPath(file: string): string {
  return file.includes('://') ? redactAuditUrl(file) : file;
}

/** The URL from the file's first non-empty line; the file may end in a newline. */
export function readAuditUrlFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new AuditUrlError(`--audit-url-file ${shownPath(file)}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`);
  }
  const line = text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== '');
  if (line === undefined) throw new AuditUrlError(`--audit-url-file ${shownPath(file)} is empty`);
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

export interface AuditUrlSources {
  /** --audit-url */
  url?: string;
  /** --audit-url-file */
  file?: string;
  /** TOLLGATE_AUDIT_URL */
  env?: string;
}

/**
 * The audit URL from the flag, the file or the environment, checked; null when none is given.
 * A flag beats the variable (as every serve option does); the flag and the file together are
 * ambiguous and refused rather than one silently winning.
 */
export function resolveAuditUrl(sources: AuditUrlSources): string | null {
  const { url, file, env } = sources;
  if (url !== undefined && file !== undefined) throw new AuditUrlError('give --audit-url or --audit-url-file, not both');
  if (url !== undefined) return checkAuditUrl(url);
  if (file !== undefined) return checkAuditUrl(readAuditUrlFile(file));
  if (env !== undefined && env !== '') return checkAuditUrl(env);
  return null;
}

/**
 * An error from talking to the shared history, for a person: the driver's message (pg's never
 * carry the password, but a server or proxy in between may echo a connection string) with any
 * trace of the URL's password replaced, and the redacted URL it concerns.
 */
export function describeAuditError(err: unknown, url: string): string {
  let message = err instanceof Error ? err.message : String(err);
  if (message === '' && err instanceof AggregateError) message = err.errors.map((e: unknown) => (e instanceof Error ? e.message : String(e))).join('; ');
  return `${redactAuditUrl(url)}: ${scrubSecret(message, url) || 'unknown error'}`;
}

function decodeSafely(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * `text` with every form of the URL's password replaced by `***`: as written in the URL, decoded,
 * and a `password=` parameter. The one scrubber for logs, /readyz and command output.
 */
export function scrubSecret(text: string, url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return text;
  }
  const forms = new Set([parsed.password, decodeSafely(parsed.password), parsed.searchParams.get('password') ?? '']);
  let scrubbed = text;
  for (const form of forms) if (form !== '') scrubbed = scrubbed.split(form).join('***');
  return scrubbed;
}
