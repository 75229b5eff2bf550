import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { connectAudit } from '../../src/audit/connection';
import { auditLogDir } from '../../src/audit/log/segment-files';
import { rebuildSideTables } from '../../src/audit/log/side-tables';
import { IndexConsumer } from '../../src/audit/log/index-consumer';
import type { IndexConsumerOptions } from '../../src/audit/log/index-consumer';
import type { AuditCompletion, AuditOpen } from '../../src/audit/record-types';
import { completion, openFacts } from './audit-log-fixtures';

/** A temp folder with the audit file's path and its log folder beside it, as serve lays them out. */
export function tempAuditFolder(): { dbFile: string; logDir: string; remove: () => void } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-index-'));
  const dbFile = path.join(root, 'audit.db');
  return { dbFile, logDir: auditLogDir(dbFile), remove: () => fs.rmSync(root, { recursive: true, force: true }) };
}

/** Consumers opened by a test, closed after it. */
export function consumers(): { open: (opts: IndexConsumerOptions) => IndexConsumer; closeAll: () => void } {
  const opened: IndexConsumer[] = [];
  return {
    open: (opts) => {
      const consumer = new IndexConsumer(opts);
      opened.push(consumer);
      return consumer;
    },
    closeAll: () => {
      for (const c of opened.splice(0)) c.close();
    },
  };
}

/** Every row of `requests`, by id. */
export function allRows(db: Database.Database): Array<Record<string, unknown>> {
  return db.prepare('SELECT * FROM requests ORDER BY id').all() as Array<Record<string, unknown>>;
}

/** The four side tables of migration 002, each in a fixed order. */
export function sideTables(db: Database.Database): Record<string, unknown[]> {
  return {
    request_clients: db.prepare('SELECT * FROM request_clients ORDER BY client, request_id').all(),
    request_minutes: db.prepare('SELECT * FROM request_minutes ORDER BY minute').all(),
    first_seen_hosts: db.prepare('SELECT * FROM first_seen_hosts ORDER BY host').all(),
    first_seen_client_hosts: db.prepare('SELECT * FROM first_seen_client_hosts ORDER BY client_ip, host').all(),
  };
}

/**
 * The side tables that `rows` must have, by definition: the rows copied into a fresh in-memory
 * database (no side tables kept on insert since migration 003), then 002's backfill statements
 * (rebuildSideTables) over all of them at once. Independent of how a writer batched its inserts.
 */
export function referenceSideTables(rows: Array<Record<string, unknown>>): Record<string, unknown[]> {
  const { db } = connectAudit(':memory:', { clock: () => new Date(), busyTimeoutMs: 1000 });
  try {
    if (rows.length > 0) {
      const columns = Object.keys(rows[0]);
      const insert = db.prepare(`INSERT INTO requests (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`);
      for (const row of rows) insert.run(row);
    }
    expect(Object.values(sideTables(db)).flat()).toEqual([]);
    rebuildSideTables(db);
    return sideTables(db);
  } finally {
    db.close();
  }
}

/** Reads the file through a connection of its own, as the admin API would. */
export function withReader<T>(file: string, read: (db: Database.Database) => T): T {
  const db = new Database(file, { readonly: true });
  try {
    return read(db);
  } finally {
    db.close();
  }
}

/**
 * Records with the variety the side tables care about: several client groups (one twice), no
 * group, denied and would-deny records, a null host, repeated hosts and client addresses, starts
 * that go backwards (a slow CONNECT inserted late), and minutes that change within the set.
 */
export function variedOpen(n: number): AuditOpen {
  const backwards = n % 7 === 3 ? -90_000 : 0;
  return openFacts(n, {
    startedAt: new Date(openFacts(0).startedAt.getTime() + n * 7_000 + backwards),
    clientIp: `10.0.8.${n % 3}`,
    clients: n % 5 === 0 ? [] : n % 5 === 1 ? ['ci', 'prod', 'ci'] : ['dev'],
    host: n % 11 === 4 ? null : `host${n % 4}.example.com`,
    decision: n % 4 === 1 ? 'deny' : 'allow',
    wouldDeny: n % 6 === 2,
  });
}

export function variedCompletion(n: number): AuditCompletion {
  return completion(n, { endedAt: new Date(variedOpen(n).startedAt.getTime() + 250) });
}
