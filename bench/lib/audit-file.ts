import Database from 'better-sqlite3';

/**
 * Reads the proxy's audit file from outside, as an auditor would. A record is completed when its
 * tunnel has fully closed in the proxy, so "no open record" is the proxy's own word that every
 * tunnel is gone: there is no event another process could await instead.
 */
export class AuditFile {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file, { readonly: true, fileMustExist: true });
  }

  counts(): { total: number; open: number; completedOk: number } {
    const row = this.db
      .prepare(
        `SELECT COUNT(*) AS total,
                COALESCE(SUM(ended_at_ms IS NULL), 0) AS open,
                COALESCE(SUM(ended_at_ms IS NOT NULL AND status = 200 AND error IS NULL), 0) AS completedOk
           FROM requests WHERE kind = 'connect'`,
      )
      .get() as { total: number; open: number; completedOk: number };
    return row;
  }

  close(): void {
    this.db.close();
  }
}
