import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LogAuditStore } from '../src/audit/log-store';
import type { AuditOpen } from '../src/audit/record-types';
import { catchUpIndex } from './helpers/audit-index';
import { withReader } from './helpers/audit-index-fixtures';
import { completion, openFacts } from './helpers/audit-log-fixtures';

/** serve's audit store (issue 14): the log as the write, on real files in a temp folder. */

const open = (host: string, overrides: Partial<AuditOpen> = {}): AuditOpen => openFacts(0, { host, ...overrides });
const done = (status: number) => completion(0, { status });

describe('LogAuditStore', () => {
  let dir: string;
  let dbFile: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-log-store-'));
    dbFile = path.join(dir, 'audit.db');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function rows(): Array<{ id: number; host: string; status: number | null }> {
    catchUpIndex(dbFile);
    return withReader(dbFile, (db) => db.prepare('SELECT id, host, status FROM requests ORDER BY id').all() as Array<{ id: number; host: string; status: number | null }>);
  }

  test('a record the codec refuses fails alone: the rest of its batch, completions included, is appended', () => {
    const store = new LogAuditStore(dbFile, {});
    try {
      const [first] = store.commitBatch([open('first.test')], []).ids as number[];
      // A start time past the codec's 48-bit range: no client can send one, a bug could.
      const outcome = store.commitBatch([open('kept.test'), open('refused.test', { startedAt: new Date(2 ** 48 + 1000) })], [[first, done(204)]]);
      expect(typeof outcome.ids[0]).toBe('number');
      expect(outcome.ids[1]).toBeInstanceOf(Error);
      expect(outcome.refusedCompletions).toBe(0);
      expect(store.writable()).toBe(true);
      expect(rows().map((r) => [r.host, r.status])).toEqual([['first.test', 204], ['kept.test', null]]);
    } finally {
      store.close();
    }
  });

  test('completeOpenRecords ends what is still open, once', () => {
    const store = new LogAuditStore(dbFile, {});
    try {
      const ids = store.commitBatch([open('a.test'), open('b.test')], []).ids as number[];
      store.commitBatch([], [[ids[0], done(200)]]);
      expect(store.completeOpenRecords(new Date(), 'shutdown: proxy stopped')).toBe(1);
      expect(store.completeOpenRecords(new Date(), 'shutdown: proxy stopped')).toBe(0);
      expect(rows().map((r) => r.status)).toEqual([200, null]);
    } finally {
      store.close();
    }
  });
});
