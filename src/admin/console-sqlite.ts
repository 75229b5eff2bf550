import path from 'node:path';
import Database from 'better-sqlite3';
import { isInMemory } from '../audit/connection';
import { applyMigrations } from '../audit/migrate';
import { eventOf, MAX_VIEWS, viewOf, ViewConflictError } from './console-store';
import type { ConsoleAction, ConsoleEvent, ConsoleStore, EventRow, SavedView, ViewRow } from './console-store';
import type { Identity } from './identity';

/** migrations/console at the package root (two levels up from src/admin and dist/admin). */
export const CONSOLE_MIGRATIONS_DIR = path.resolve(__dirname, '..', '..', 'migrations', 'console');

/**
 * The console's file beside the audit store: `data/audit.db` keeps its views in
 * `data/audit.console.db`. Never the index file itself: that one is rebuilt from the audit log
 * when lost, and is written by the index thread alone.
 */
export function consoleFileFor(dbFile: string): string {
  if (isInMemory(dbFile)) return ':memory:';
  const resolved = path.resolve(dbFile);
  return path.join(path.dirname(resolved), `${path.parse(resolved).name}.console.db`);
}

/** The console's tables in their own SQLite file (migrations/console/), on the admin's thread: a few small writes. */
export class SqliteConsoleStore implements ConsoleStore {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    if (file !== ':memory:') this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 2000');
    applyMigrations(this.db, { dir: CONSOLE_MIGRATIONS_DIR });
  }

  async listViews(): Promise<SavedView[]> {
    const rows = this.db.prepare('SELECT id, name, query, created_by, created_at_ms FROM console_views ORDER BY name, id').all() as ViewRow[];
    return rows.map(viewOf);
  }

  async createView(view: { name: string; query: string }, actor: Identity, at: Date): Promise<SavedView> {
    const create = this.db.transaction((): SavedView => {
      const count = this.db.prepare('SELECT count(*) FROM console_views').pluck().get() as number;
      if (count >= MAX_VIEWS) throw new ViewConflictError(`at most ${MAX_VIEWS} views are kept: delete one first`);
      if (this.db.prepare('SELECT 1 FROM console_views WHERE name = ?').get(view.name) !== undefined) {
        throw new ViewConflictError(`a view named "${view.name}" exists`);
      }
      const row = this.db
        .prepare('INSERT INTO console_views (name, query, created_by, created_at_ms) VALUES (?, ?, ?, ?) RETURNING id, name, query, created_by, created_at_ms')
        .get(view.name, view.query, actor.name, at.getTime()) as ViewRow;
      const saved = viewOf(row);
      this.insertEvent('view_create', { view_id: saved.id, name: saved.name, query: saved.query }, actor, at);
      return saved;
    });
    return create.immediate();
  }

  async deleteView(id: number, actor: Identity, at: Date): Promise<SavedView | null> {
    const remove = this.db.transaction((): SavedView | null => {
      const row = this.db.prepare('DELETE FROM console_views WHERE id = ? RETURNING id, name, query, created_by, created_at_ms').get(id) as ViewRow | undefined;
      if (row === undefined) return null;
      const view = viewOf(row);
      this.insertEvent('view_delete', { view_id: view.id, name: view.name, query: view.query }, actor, at);
      return view;
    });
    return remove.immediate();
  }

  async recordEvent(action: ConsoleAction, detail: Record<string, unknown>, actor: Identity, at: Date): Promise<void> {
    this.insertEvent(action, detail, actor, at);
  }

  async listEvents(limit: number, beforeId: number | null, action: ConsoleAction | null): Promise<ConsoleEvent[]> {
    const rows = this.db
      .prepare('SELECT id, at_ms, actor, actor_source, action, detail FROM console_events WHERE id < ? AND (? IS NULL OR action = ?) ORDER BY id DESC LIMIT ?')
      .all(beforeId ?? Number.MAX_SAFE_INTEGER, action, action, limit) as EventRow[];
    return rows.map(eventOf);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private insertEvent(action: ConsoleAction, detail: Record<string, unknown>, actor: Identity, at: Date): void {
    this.db
      .prepare('INSERT INTO console_events (at_ms, actor, actor_source, action, detail) VALUES (?, ?, ?, ?, ?)')
      .run(at.getTime(), actor.name, actor.source, action, JSON.stringify(detail));
  }
}
