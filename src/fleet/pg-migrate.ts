import path from 'node:path';
import type { Pool, PoolClient } from 'pg';
import { transaction, withClient } from './pg-client';
import { MIGRATIONS_DIR, MigrationError, readMigrations } from '../audit/migrate';

/** migrations/postgres/: the shared history's schema, forward-only like SQLite's. */
export const PG_MIGRATIONS_DIR = path.join(MIGRATIONS_DIR, 'postgres');

/**
 * Any constant works as long as every tollgate uses the same one: it names the lock that
 * serialises migrations across replicas started at once (a rolling upgrade).
 */
const MIGRATION_LOCK = 0x746f6c6c; // "toll"

async function appliedVersions(client: PoolClient): Promise<Set<string>> {
  const result = await client.query<{ version: string }>('SELECT version FROM schema_migrations');
  return new Set(result.rows.map((row) => row.version));
}

/**
 * Applies every migration of migrations/postgres/ not yet recorded, under a session advisory
 * lock, each in its own transaction with its schema_migrations row. A database migrated by a
 * newer tollgate (a version this build does not know) is refused, as for SQLite. Returns the
 * versions applied.
 */
export async function applyPgMigrations(pool: Pool, opts: { dir?: string } = {}): Promise<string[]> {
  const migrations = readMigrations(opts.dir ?? PG_MIGRATIONS_DIR);
  return withClient(pool, async (client) => {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version       text   PRIMARY KEY,
        applied_at_ms bigint NOT NULL
      )`);
      const applied = await appliedVersions(client);
      const known = new Set(migrations.map((m) => m.version));
      const unknown = [...applied].filter((v) => !known.has(v));
      if (unknown.length > 0) {
        throw new MigrationError(
          `the PostgreSQL audit database was migrated by a newer tollgate (unknown migrations: ${unknown.join(', ')}); upgrade tollgate`,
        );
      }
      const done: string[] = [];
      for (const migration of migrations) {
        if (applied.has(migration.version)) continue;
        await transaction(client, async () => {
          await client.query(migration.sql);
          await client.query('INSERT INTO schema_migrations (version, applied_at_ms) VALUES ($1, $2)', [migration.version, Date.now()]);
        });
        done.push(migration.version);
      }
      return done;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    }
  });
}

/** PostgreSQL's insufficient_privilege: a least-privilege role (docs/operations.md) may not change the schema. */
const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * The schema as this build needs it. A role that may migrate (the owner) brings it up to date; a
 * least-privilege role (the shipper, the console) cannot, and goes on when an owner already has,
 * or says which migrations are missing. Returns the versions applied here.
 */
export async function ensurePgSchema(pool: Pool): Promise<string[]> {
  try {
    return await applyPgMigrations(pool);
  } catch (err) {
    if ((err as { code?: unknown }).code !== INSUFFICIENT_PRIVILEGE) throw err;
  }
  const result = await pool.query<{ version: string }>('SELECT version FROM schema_migrations');
  const applied = new Set(result.rows.map((row) => row.version));
  const missing = readMigrations(PG_MIGRATIONS_DIR).map((m) => m.version).filter((v) => !applied.has(v));
  if (missing.length > 0) {
    throw new MigrationError(`the PostgreSQL schema lacks migrations ${missing.join(', ')} and this role may not apply them: run tollgate once with the owner role's URL`);
  }
  return [];
}
