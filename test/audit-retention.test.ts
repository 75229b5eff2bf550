import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Socket } from 'node:net';
import Database from 'better-sqlite3';
import { auditLogDir } from '../src/audit/log/segment-files';
import { pruneBatch, pruneIntervalMs, Retention } from '../src/audit/retention';
import type { PruneReport } from '../src/audit/retention';
import { openAuditStore } from '../src/audit/store';
import type { AuditStore } from '../src/audit/store';
import type { AuditCompletion, AuditOpen } from '../src/audit/record-types';
import { rawConnect, readUntil } from './helpers/proxy-harness';
import { startServed } from './helpers/served-proxy';
import type { ServedProxy } from './helpers/served-proxy';

/**
 * `serve --retain` (issue 14): records that started longer ago than the retention period are
 * deleted at start and periodically, on the writer's side, in small batches; an open record is
 * never deleted; the side tables follow (migration 002's delete trigger) except first_seen_*.
 */

const HOUR = 3_600_000;

function open(startedAt: Date, host: string, clients: string[] = ['ci']): AuditOpen {
  return {
    startedAt, clientIp: '10.0.8.7', clientPort: 51234, clients, user: null, kind: 'http', method: 'GET',
    scheme: 'http', host, port: 80, path: '/', resolvedIp: '127.0.0.1', decision: 'allow', wouldDeny: false,
    rule: 'origin', ruleSource: 'policy.yaml:3', reason: 'matched rule origin', policyVersion: 'v1',
  };
}

function done(startedAt: Date): AuditCompletion {
  return { endedAt: new Date(startedAt.getTime() + 10), status: 200, bytesUp: 10, bytesDown: 20, error: null };
}

/** `count` completed records starting at `startedAt`, one second apart; returns their ids. */
function seedCompleted(store: AuditStore, startedAt: Date, count: number, host: string): number[] {
  const finished = Array.from({ length: count }, (_, i) => {
    const at = new Date(startedAt.getTime() + i * 1000);
    return [open(at, host), done(at)] as const;
  });
  return store.commitBatch([], [], finished).ids as number[];
}

describe('pruneBatch and Retention on a real audit file', () => {
  let dir: string;
  let store: AuditStore;
  const now = Date.parse('2025-03-01T12:00:00.000Z');

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-retention-'));
    store = openAuditStore(path.join(dir, 'audit.db'));
  });

  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const ids = (): number[] => (store.db.prepare('SELECT id FROM requests ORDER BY id').pluck().all() as number[]);

  test('deletes completed records older than the cutoff, keeps open and newer ones, in batches', () => {
    const old = seedCompleted(store, new Date(now - 3 * HOUR), 5, 'old.test');
    const stillOpen = store.open(open(new Date(now - 3 * HOUR), 'tunnel.test'));
    const recent = seedCompleted(store, new Date(now - 60_000), 2, 'new.test');
    const cutoff = now - HOUR;
    expect([pruneBatch(store.db, cutoff, 2), pruneBatch(store.db, cutoff, 2), pruneBatch(store.db, cutoff, 2)]).toEqual([2, 2, 1]);
    expect(pruneBatch(store.db, cutoff, 2)).toBe(0);
    expect(ids()).toEqual([stillOpen, ...recent]);
    expect(old).toHaveLength(5);
  });

  test('the side tables follow the deletes, except first-seen destinations', () => {
    seedCompleted(store, new Date(now - 3 * HOUR), 3, 'old.test');
    seedCompleted(store, new Date(now - 60_000), 1, 'new.test');
    pruneBatch(store.db, now - HOUR, 1000);
    const db = store.db;
    expect(db.prepare('SELECT count(*) FROM request_clients').pluck().get()).toBe(1);
    expect(db.prepare('SELECT sum(allowed) FROM request_minutes').pluck().get()).toBe(1);
    expect(db.prepare('SELECT host FROM first_seen_hosts ORDER BY host').pluck().all()).toEqual(['new.test', 'old.test']);
  });

  test('a pass runs batch after batch, yielding between them, and reports what it deleted', async () => {
    seedCompleted(store, new Date(now - 3 * HOUR), 5, 'old.test');
    const reports: PruneReport[] = [];
    const passed = new Promise<void>((resolve) => {
      const retention = new Retention({
        retainMs: HOUR, db: () => store.db, now: () => now, batchRows: 2, intervalMs: 60_000,
        onPass: (report) => {
          reports.push(report);
          retention.stop();
          resolve();
        },
      });
      retention.start();
    });
    await passed;
    expect(reports).toEqual([{ deleted: 5, cutoff: new Date(now - HOUR).toISOString(), batches: 3, ms: expect.any(Number), error: null }]);
    expect(ids()).toEqual([]);
    // Every minute of the deleted records is gone from the per-minute table too.
    expect(store.db.prepare('SELECT count(*) FROM request_minutes').pluck().get()).toBe(0);
  });

  test('at least once a minute; twice per period for a short retention', () => {
    expect(pruneIntervalMs(14 * 24 * HOUR)).toBe(60_000);
    expect(pruneIntervalMs(20_000)).toBe(10_000);
    expect(pruneIntervalMs(1000)).toBe(1000);
  });
});

describe('serve --retain', () => {
  let served: ServedProxy | null = null;

  afterEach(async () => {
    await served?.close();
    served = null;
  });

  const pruned = (line: { msg: string }): boolean => line.msg === 'audit records pruned (--retain)';

  test('records older than the retention period are deleted at start', async () => {
    let old: number[] = [];
    let recent: number[] = [];
    served = await startServed({
      config: { retainMs: HOUR },
      seed: (dbFile) => {
        const store = openAuditStore(dbFile);
        old = seedCompleted(store, new Date(Date.now() - 3 * HOUR), 3, 'old.test');
        recent = seedCompleted(store, new Date(Date.now() - 60_000), 2, 'new.test');
        store.close();
      },
    });
    expect(await served.waitForLog(pruned)).toMatchObject({ pruned: 3 });
    expect((await served.records()).map((r) => r.id).sort()).toEqual(recent);
    expect((await served.admin(`/api/requests/${old[0]}`)).status).toBe(404);
  });

  test('keeping everything (the default) says so at start', async () => {
    served = await startServed();
    await served.waitForLog((line) => /--retain is 0: audit records are kept for ever/.test(line.msg));
  });

  test('a served proxy prunes periodically, never an open tunnel, and keeps new records', async () => {
    // 6 s: the requests and reads between two checks must fit in it, however slow the machine.
    const live = await startServed({ config: { retainMs: 6000 } });
    served = live;
    // The tunnel first: once the later records are past the cutoff, so is it.
    const tunnel: Socket = await rawConnect(live.running.proxyAddress.port);
    tunnel.write(`CONNECT 127.0.0.1:${live.origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${live.origin.port}\r\n\r\n`);
    expect(await readUntil(tunnel, '\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
    for (const n of [1, 2, 3]) expect((await live.get(`/early-${n}`)).status).toBe(200);
    const early = (await live.records()).filter((r) => r.path?.startsWith('/early-'));
    expect(early).toHaveLength(3);
    // Bounded: the passes run every second; the early records are due 6 s after they started.
    await live.waitForLog((line) => pruned(line) && (line.pruned as number) >= 1, 15_000);
    const deadline = Date.now() + 15_000;
    let left = await live.records();
    while (left.some((r) => r.path?.startsWith('/early-')) && Date.now() < deadline) {
      const seen = live.lines.length;
      await live.waitForLog((line) => pruned(line) && live.lines.indexOf(line) >= seen, 15_000);
      left = await live.records();
    }
    expect(left.filter((r) => r.path?.startsWith('/early-'))).toEqual([]);
    // The tunnel opened before them is past the cutoff too, but still open.
    const open = left.filter((r) => r.kind === 'connect');
    expect(open).toHaveLength(1);
    expect(open[0].ended_at).toBeNull();
    expect((await live.get('/late')).status).toBe(200);
    expect((await live.records()).some((r) => r.path === '/late')).toBe(true);
    // The log drops whole segments: the first one holds the open tunnel's entry, so it stays
    // until the tunnel ends, then goes at a later pass.
    const firstSegment = path.join(auditLogDir(live.dbFile), '000000000001.seg');
    expect(existsSync(firstSegment)).toBe(true);
    tunnel.end();
    tunnel.destroy();
    await live.waitForLog((line) => line.msg === 'audit log segments dropped (--retain)' && !existsSync(firstSegment), 20_000);
  }, 40_000);
});
