import type { Identity } from './identity';

/**
 * What the admin console keeps of its own (issue 19): saved views (SPEC §6) and who looked, apart
 * from the rebuildable audit index. Two stores: a small SQLite file beside the local audit store
 * (console-sqlite.ts) and tables in the shared history for `tollgate admin` (src/fleet/pg-console.ts).
 */

export interface SavedView {
  id: number;
  name: string;
  /** The filters as a URL query string, as /api/requests takes them (no leading `?`). */
  query: string;
  created_by: string;
  created_at: string;
}

export const CONSOLE_ACTIONS = ['export', 'view_create', 'view_delete'] as const;
export type ConsoleAction = (typeof CONSOLE_ACTIONS)[number];

export interface ConsoleEvent {
  id: number;
  at: string;
  actor: string;
  actor_source: Identity['source'];
  action: ConsoleAction;
  /** export: { format, query }; view_create / view_delete: { view_id, name, query }. */
  detail: Record<string, unknown>;
}

/** Why a view cannot be saved: the route answers 409. */
export class ViewConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ViewConflictError';
  }
}

/** At most this many views: a loop posting views cannot grow the store without end. */
export const MAX_VIEWS = 1000;

export interface ConsoleStore {
  listViews(): Promise<SavedView[]>;
  /** Saves a view and records `view_create`, in one transaction; ViewConflictError on a taken name or a full list. */
  createView(view: { name: string; query: string }, actor: Identity, at: Date): Promise<SavedView>;
  /** Deletes a view and records `view_delete`, in one transaction; null when there is no such view. */
  deleteView(id: number, actor: Identity, at: Date): Promise<SavedView | null>;
  recordEvent(action: ConsoleAction, detail: Record<string, unknown>, actor: Identity, at: Date): Promise<void>;
  /** Newest first, ids below `beforeId` when given, of one action when given. */
  listEvents(limit: number, beforeId: number | null, action: ConsoleAction | null): Promise<ConsoleEvent[]>;
  close(): Promise<void>;
}

export interface ViewRow {
  id: number | string;
  name: string;
  query: string;
  created_by: string;
  created_at_ms: number | string;
}

export function viewOf(row: ViewRow): SavedView {
  return { id: Number(row.id), name: row.name, query: row.query, created_by: row.created_by, created_at: new Date(Number(row.created_at_ms)).toISOString() };
}

export interface EventRow {
  id: number | string;
  at_ms: number | string;
  actor: string;
  actor_source: string;
  action: string;
  detail: string | Record<string, unknown>;
}

export function eventOf(row: EventRow): ConsoleEvent {
  return {
    id: Number(row.id),
    at: new Date(Number(row.at_ms)).toISOString(),
    actor: row.actor,
    actor_source: row.actor_source as Identity['source'],
    action: row.action as ConsoleAction,
    detail: typeof row.detail === 'string' ? (JSON.parse(row.detail) as Record<string, unknown>) : row.detail,
  };
}
