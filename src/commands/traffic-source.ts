import { AuditUrlError, resolveAuditUrl } from '../fleet/audit-url';

/**
 * Where a command reads the recorded traffic: --db FILE, else the shared history's URL (from
 * --audit-url, --audit-url-file or TOLLGATE_AUDIT_URL), or why neither can be used.
 */
export type TrafficSource =
  | { readonly kind: 'sqlite'; readonly file: string }
  | { readonly kind: 'pg'; readonly url: string }
  | { readonly kind: 'invalid'; readonly message: string };

/** The flags as parseArgs gives them; only --db, --audit-url and --audit-url-file are read. */
type SourceFlags = Readonly<Record<string, unknown>>;

const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

export function trafficSource(values: SourceFlags): TrafficSource {
  const url = text(values['audit-url']);
  const file = text(values['audit-url-file']);
  const db = text(values.db);
  if (db !== undefined) {
    const flagged = url !== undefined || file !== undefined;
    return flagged ? { kind: 'invalid', message: 'give --db FILE or --audit-url URL, not both' } : { kind: 'sqlite', file: db };
  }
  try {
    const resolved = resolveAuditUrl({ url, file, env: process.env.TOLLGATE_AUDIT_URL });
    if (resolved !== null) return { kind: 'pg', url: resolved };
    return { kind: 'invalid', message: '--db FILE is required (or --audit-url URL, --audit-url-file FILE, TOLLGATE_AUDIT_URL)' };
  } catch (err) {
    if (err instanceof AuditUrlError) return { kind: 'invalid', message: err.message };
    throw err;
  }
}
