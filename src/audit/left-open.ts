import type Database from 'better-sqlite3';
import type { CompletionEntry } from './connection';
import { heldCompletionsFile, readHeldCompletions, removeHeldCompletions, saveHeldCompletions } from './held-completions-file';
import { RecordEnd } from './record-types';
import type { ServingStore } from './writer-thread';

/**
 * SPEC §4: a record is completed when its connection ends. A run that is killed (or loses its
 * audit log while stopping) cannot complete the records it has open; the next start does,
 * before the proxy accepts a connection, so no record stays open for ever.
 */

/** What the start did with records earlier runs left open. */
export interface LeftOpenAtStart {
  /** Completions a failed shutdown saved beside the database, now written. */
  heldWritten: number;
  /** Lines of that file that could not be read (skipped). */
  heldUnreadable: number;
  /** Records still open after that: completed as `proxy_restarted`. */
  closed: number;
  /** The end they were given (see lastSignOfLife). */
  endedAt: Date;
}

/**
 * First the completions a failed shutdown saved (their real bytes and status win), then every
 * record still open ends as `proxy_restarted`. Throws when the store cannot be written; the
 * saved file is then kept for the next start.
 */
export async function completeLeftOpen(store: ServingStore, now: Date): Promise<LeftOpenAtStart> {
  const file = heldCompletionsFile(store.file);
  const held = file === null ? { entries: [], unreadable: 0 } : readHeldCompletions(file);
  let heldWritten = 0;
  if (held.entries.length > 0) {
    const outcome = await store.commitBatch([], held.entries, []);
    heldWritten = held.entries.length - outcome.refusedCompletions;
  }
  if (file !== null) removeHeldCompletions(file);
  const endedAt = new Date(Math.min(now.getTime(), lastSignOfLife(store.db) ?? now.getTime()));
  const closed = store.completeOpenRecords(endedAt, RecordEnd.proxyRestarted);
  return { heldWritten, heldUnreadable: held.unreadable, closed, endedAt };
}

/**
 * The last moment the run that wrote the file is known to have been alive: the start of its
 * newest record or its last heartbeat (each /readyz probe writes one), whichever is later. When
 * it died is unknown; this keeps a record killed with it from looking as if it lasted through
 * the downtime. Both are cheap reads: an index and a one-row table.
 */
function lastSignOfLife(db: Database.Database): number | null {
  const row = db
    .prepare(
      `SELECT MAX(COALESCE((SELECT MAX(started_at_ms) FROM requests), 0),
                  COALESCE((SELECT at_ms FROM heartbeat WHERE id = 1), 0)) AS at_ms`,
    )
    .get() as { at_ms: number };
  return row.at_ms > 0 ? row.at_ms : null;
}

/** How a shutdown's last audit writes went. */
export type AtShutdown =
  | { ok: true; closed: number }
  /**
   * The open records could not be completed: `held` completions (connections that ended but
   * could not be written) were saved to `savedTo` for the next start, or could not be
   * (`saveError`). Records without one end as `proxy_restarted` at the next start.
   */
  | { ok: false; error: unknown; held: number; savedTo: string | null; saveError: unknown };

/** Complete what is still open as `shutdown`; when that cannot be written, save what is held. */
export function completeAtShutdown(store: ServingStore, now: Date): AtShutdown {
  try {
    return { ok: true, closed: store.completeOpenRecords(now, RecordEnd.shutdown) };
  } catch (error) {
    return { ok: false, error, ...saveHeld(store) };
  }
}

function saveHeld(store: ServingStore): { held: number; savedTo: string | null; saveError: unknown } {
  const file = heldCompletionsFile(store.file);
  let held: CompletionEntry[] = [];
  try {
    held = store.heldCompletions();
    if (held.length === 0 || file === null) return { held: held.length, savedTo: null, saveError: null };
    saveHeldCompletions(file, held);
    return { held: held.length, savedTo: file, saveError: null };
  } catch (saveError) {
    return { held: held.length, savedTo: null, saveError };
  }
}
