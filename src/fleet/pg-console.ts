import type { Pool } from 'pg';
import { eventOf, MAX_VIEWS, viewOf, ViewConflictError } from '../admin/console-store';
import type { ConsoleAction, ConsoleEvent, ConsoleStore, EventRow, SavedView, ViewRow } from '../admin/console-store';
import type { Identity } from '../admin/identity';
import { inTransaction } from './pg-client';
import { pgText } from './pg-text';

/** PostgreSQL's code for a unique constraint broken (a view name taken by a concurrent save). */
const UNIQUE_VIOLATION = '23505';

/**
 * The console's tables in the shared history (migration 008), for `tollgate admin`: every admin
 * of the fleet sees the same views, and who looked is kept with the history it is about.
 */
export class PgConsoleStore implements ConsoleStore {
  constructor(private readonly pool: Pool) {}

  async listViews(): Promise<SavedView[]> {
    const result = await this.pool.query<ViewRow>('SELECT id, name, query, created_by, created_at_ms FROM console_views ORDER BY name COLLATE "C", id');
    return result.rows.map(viewOf);
  }

  async createView(view: { name: string; query: string }, actor: Identity, at: Date): Promise<SavedView> {
    return inTransaction(this.pool, async (client) => {
      const count = await client.query<{ n: string }>('SELECT count(*) AS n FROM console_views');
      if (Number(count.rows[0].n) >= MAX_VIEWS) throw new ViewConflictError(`at most ${MAX_VIEWS} views are kept: delete one first`);
      let row: ViewRow;
      try {
        row = (await client.query<ViewRow>(
          'INSERT INTO console_views (name, query, created_by, created_at_ms) VALUES ($1, $2, $3, $4) RETURNING id, name, query, created_by, created_at_ms',
          [pgText(view.name), pgText(view.query), pgText(actor.name), at.getTime()],
        )).rows[0];
      } catch (err) {
        if ((err as { code?: string }).code === UNIQUE_VIOLATION) throw new ViewConflictError(`a view named "${view.name}" exists`);
        throw err;
      }
      const saved = viewOf(row);
      await this.insertEvent(client, 'view_create', { view_id: saved.id, name: saved.name, query: saved.query }, actor, at);
      return saved;
    });
  }

  async deleteView(id: number, actor: Identity, at: Date): Promise<SavedView | null> {
    return inTransaction(this.pool, async (client) => {
      const result = await client.query<ViewRow>('DELETE FROM console_views WHERE id = $1 RETURNING id, name, query, created_by, created_at_ms', [id]);
      if (result.rows.length === 0) return null;
      const view = viewOf(result.rows[0]);
      await this.insertEvent(client, 'view_delete', { view_id: view.id, name: view.name, query: view.query }, actor, at);
      return view;
    });
  }

  async recordEvent(action: ConsoleAction, detail: Record<string, unknown>, actor: Identity, at: Date): Promise<void> {
    await this.insertEvent(this.pool, action, detail, actor, at);
  }

  async listEvents(limit: number, beforeId: number | null, action: ConsoleAction | null): Promise<ConsoleEvent[]> {
    const result = await this.pool.query<EventRow>(
      'SELECT id, at_ms, actor, actor_source, action, detail FROM console_events WHERE id < $1 AND ($3::text IS NULL OR action = $3) ORDER BY id DESC LIMIT $2',
      [beforeId ?? Number.MAX_SAFE_INTEGER, limit, action],
    );
    return result.rows.map(eventOf);
  }

  /** The pool belongs to the command that made it. */
  async close(): Promise<void> {}

  private async insertEvent(on: Pick<Pool, 'query'>, action: ConsoleAction, detail: Record<string, unknown>, actor: Identity, at: Date): Promise<void> {
    await on.query('INSERT INTO console_events (at_ms, actor, actor_source, action, detail) VALUES ($1, $2, $3, $4, $5)', [
      // jsonb refuses the escape \u0000 (PostgreSQL text holds no NUL): as the shipper does, U+FFFD.
      at.getTime(), pgText(actor.name), actor.source, action, JSON.stringify(detail).replace(/\\u0000/g, '\\ufffd'),
    ]);
  }
}
