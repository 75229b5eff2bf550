import type Database from 'better-sqlite3';

/**
 * Prepared statements per connection, by SQL text. Filters combine into a bounded number of
 * query shapes, so the cache stays small; preparing costs more than most page queries. A
 * connection the store replaces (file reopened) takes its entry with it. `pluck()` changes the
 * cached statement itself, so every caller of one SQL text must use the same mode.
 */
const byConnection = new WeakMap<Database.Database, Map<string, Database.Statement>>();

export function statement(db: Database.Database, sql: string): Database.Statement {
  let cache = byConnection.get(db);
  if (cache === undefined) {
    cache = new Map();
    byConnection.set(db, cache);
  }
  let prepared = cache.get(sql);
  if (prepared === undefined) {
    prepared = db.prepare(sql);
    cache.set(sql, prepared);
  }
  return prepared;
}
