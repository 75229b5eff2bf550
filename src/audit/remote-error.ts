import type { BatchOutcome } from './connection';
import { AuditUnavailableError } from './write-health';
import type { RemoteError } from './writer-protocol';

/**
 * Errors as they cross to another thread (the writer thread) or process (a proxy worker and its
 * primary): structured cloning and JSON keep an Error's message but drop its `code`, which says
 * what kind of failure it was, so both sides use these.
 */
export function toRemote(err: unknown): RemoteError {
  const { message, code } = (err ?? {}) as { message?: unknown; code?: unknown };
  return { message: typeof message === 'string' ? message : String(err), code: typeof code === 'string' ? code : null };
}

/** The error as the proxy would have seen it thrown here (record.ts reads `code`). */
export function fromRemote(error: RemoteError): Error {
  if (error.code === 'audit_unavailable') return new AuditUnavailableError(error.message);
  return Object.assign(new Error(error.message), { code: error.code ?? undefined });
}

/** A batch outcome's ids as they cross: numbers, or the error that refused that record. */
export function idsToRemote(ids: BatchOutcome['ids']): Array<number | RemoteError> {
  return ids.map((id) => (typeof id === 'number' ? id : toRemote(id)));
}

export function outcomeFromRemote(ids: ReadonlyArray<number | RemoteError>, refusedCompletions: number): BatchOutcome {
  return { ids: ids.map((id) => (typeof id === 'number' ? id : fromRemote(id))), refusedCompletions };
}
