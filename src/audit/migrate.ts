import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';

/**
 * The migrations folder at the package root. Two levels up from this file is the root both for
 * src/audit/migrate.ts (ts-jest) and for dist/audit/migrate.js (the build), and the folder ships
 * next to dist/ in the package and the container image.
 */
export const MIGRATIONS_DIR = path.resolve(__dirname, '..', '..', 'migrations');

/** `NNN_name.sql`; anything else in the folder (a README, an editor backup) is not a migration. */
const MIGRATION_FILE = /^(\d{3,}_[a-z0-9_]+)\.sql$/;

export interface Migration {
  /** The file name without `.sql`, e.g. `001_audit`; recorded in schema_migrations. */
  version: string;
  sql: string;
}

export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

/** The migrations in a folder, in name order (the zero-padded number makes that the apply order). */
export function readMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  return fs
    .readdirSync(dir)
    .map((name) => MIGRATION_FILE.exec(name))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => ({
      version: match[1],
      sql: fs.readFileSync(path.join(dir, match[0]), 'utf8'),
    }))
    .sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
}

function ensureMigrationsTable(db: Database.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version       TEXT    PRIMARY KEY,
    applied_at_ms INTEGER NOT NULL
  ) STRICT`);
}

function appliedVersions(db: Database.Database): Set<string> {
  const rows = db.prepare('SELECT version FROM schema_migrations').pluck().all() as string[];
  return new Set(rows);
}

/**
 * A database migrated by a newer tollgate may hold tables or constraints this build does not
 * know; writing to it could corrupt the log's meaning, so refuse rather than guess.
 */
function refuseUnknownVersions(applied: Set<string>, known: Migration[]): void {
  const knownVersions = new Set(known.map((m) => m.version));
  const unknown = [...applied].filter((v) => !knownVersions.has(v));
  if (unknown.length > 0) {
    throw new MigrationError(
      `the database was migrated by a newer tollgate (unknown migrations: ${unknown.join(', ')}); ` +
        'upgrade tollgate or point --db at another file',
    );
  }
}

/**
 * Applies every migration not yet recorded, each in its own transaction together with its
 * schema_migrations row, so a crash leaves either both or neither. Returns the versions applied.
 */
export function applyMigrations(
  db: Database.Database,
  opts: { dir?: string; clock?: () => Date } = {},
): string[] {
  const migrations = readMigrations(opts.dir);
  const clock = opts.clock ?? (() => new Date());
  ensureMigrationsTable(db);
  refuseUnknownVersions(appliedVersions(db), migrations);
  const record = db.prepare('INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?, ?)');
  const applied: string[] = [];
  for (const migration of migrations) {
    // IMMEDIATE takes the write lock before re-reading what is applied, so two processes opening
    // the same file at once (serve and policy replay) cannot both apply a migration.
    const applyOne = db.transaction(() => {
      if (appliedVersions(db).has(migration.version)) return;
      db.exec(migration.sql);
      record.run(migration.version, clock().getTime());
      applied.push(migration.version);
    });
    applyOne.immediate();
  }
  return applied;
}
