import type Database from 'better-sqlite3';
import { SideTableBatch } from './log/side-tables';
import type { RowParams } from './record-params';

/**
 * What moves from a removed audit file into the new file at the same path: rows that would
 * otherwise vanish with the old inode, and the id sequence, so ids are never reused (SPEC §4).
 */
export interface CarriedRows {
  lastId: number;
  rows: Array<Record<string, unknown>>;
}

/**
 * Reads, from the connection to the removed file (still readable through its open descriptor):
 * every open record (its connection is still running and will complete it by id), and every
 * record written or completed since the file was last seen at its path (`touched`), which may
 * have been written after the removal.
 */
export function collectCarriedRows(db: Database.Database, touched: Iterable<number>): CarriedRows {
  const lastId = db
    .prepare(`SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'requests'), 0)`)
    .pluck()
    .get() as number;
  const rows = db
    .prepare('SELECT * FROM requests WHERE ended_at_ms IS NULL OR id IN (SELECT value FROM json_each(?)) ORDER BY id')
    .all(JSON.stringify([...touched])) as Array<Record<string, unknown>>;
  return { lastId, rows };
}

/** Writes carried rows (same ids) and their side tables into the new file in one transaction; returns how many. */
export function restoreCarriedRows(db: Database.Database, carried: CarriedRows): number {
  const restore = db.transaction(() => {
    let written = 0;
    if (carried.rows.length > 0) {
      // Column names come from the old file's own schema, created by the same migrations.
      const columns = Object.keys(carried.rows[0]).map((name) => `"${name.replaceAll('"', '""')}"`);
      // OR IGNORE: the path may now hold a restored copy that already has some of these ids.
      const insert = db.prepare(
        `INSERT OR IGNORE INTO requests (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`,
      );
      // No trigger keeps the side tables (migration 003): only rows really inserted count.
      const sideTables = new SideTableBatch(db);
      for (const row of carried.rows) {
        if (insert.run(...Object.values(row)).changes !== 1) continue;
        sideTables.add(row.id as number, row as RowParams);
        written += 1;
      }
      sideTables.flush();
    }
    const raised = db
      .prepare(`UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'requests'`)
      .run(carried.lastId).changes;
    if (raised === 0) db.prepare(`INSERT INTO sqlite_sequence (name, seq) VALUES ('requests', ?)`).run(carried.lastId);
    return written;
  });
  return restore.immediate();
}
