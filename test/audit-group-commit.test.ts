import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { GroupCommit } from '../src/audit/group-commit';
import { openAuditStore } from '../src/audit/store';
import type { AuditStore, AuditStoreOptions } from '../src/audit/store';
import type { AuditCompletion, AuditOpen } from '../src/audit/record-types';
import { WriterThread } from '../src/audit/writer-thread';
import type { ServingStore, WriterThreadOptions } from '../src/audit/writer-thread';
import { AuditChanges } from './helpers/audit-changes';

/**
 * Group commit (src/audit/group-commit.ts) and the checkpoint worker (src/audit/checkpointer.ts)
 * against real SQLite files: what a commit holds, when an open is on disk, what a failing
 * store does to waiting opens and completions, and that the write-ahead log stays bounded.
 */

const STARTED = new Date('2026-01-05T08:00:00.000Z');

function openFacts(n: number, overrides: Partial<AuditOpen> = {}): AuditOpen {
  return {
    startedAt: STARTED,
    clientIp: '10.0.0.7',
    clientPort: 40000 + n,
    clients: ['ci'],
    user: null,
    kind: 'http',
    method: 'GET',
    scheme: 'http',
    host: `host${n}.example`,
    port: 80,
    path: `/item/${n}`,
    resolvedIp: '203.0.113.5',
    decision: 'allow',
    wouldDeny: false,
    rule: 'r',
    ruleSource: 'p.yaml:3',
    reason: 'matched rule r',
    policyVersion: 'sha256:x',
    ...overrides,
  };
}

function ended(bytesDown: number): AuditCompletion {
  return { endedAt: new Date(STARTED.getTime() + 20), status: 200, bytesUp: 10, bytesDown, error: null };
}

const stores: Array<{ close(): void }> = [];

/** The same rules hold for the store on the proxy's thread and on the writer thread (serve). */
const STORE_KINDS: Array<[string, (file: string, opts: WriterThreadOptions) => ServingStore]> = [
  ['on this thread', (file, opts) => openAuditStore(file, opts)],
  ['on the writer thread', (file, opts) => new WriterThread(file, opts)],
];
let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-group-commit-'));
});

afterEach(() => {
  for (const store of stores.splice(0)) store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function openStore(opts: AuditStoreOptions = {}): { store: AuditStore; file: string } {
  const file = path.join(dir, 'audit.db');
  const store = openAuditStore(file, opts);
  stores.push(store);
  return { store, file };
}

/** A second, independent connection: what is on disk, not what the writer's connection sees. */
function onDisk(file: string): Array<{ id: number; host: string; bytes_down: number | null; ended_at_ms: number | null }> {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT id, host, bytes_down, ended_at_ms FROM requests ORDER BY id').all() as Array<{
      id: number; host: string; bytes_down: number | null; ended_at_ms: number | null;
    }>;
  } finally {
    db.close();
  }
}

describe('group commit', () => {
  test('opens asked for in one turn share one transaction, and each resolves once on disk', async () => {
    const { store, file } = openStore();
    const sizes: number[] = [];
    const audit = new GroupCommit(store, (_seconds, records) => sizes.push(records));
    const pending = Array.from({ length: 20 }, (_, n) => audit.open(openFacts(n)));
    // Nothing is written until the turn ends.
    expect(onDisk(file)).toHaveLength(0);
    const ids = await Promise.all(pending);
    expect(sizes).toEqual([20]);
    expect(new Set(ids).size).toBe(20);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    const rows = onDisk(file);
    expect(rows.map((r) => r.id)).toEqual(ids);
    expect(rows.map((r) => r.host)).toEqual(Array.from({ length: 20 }, (_, n) => `host${n}.example`));
    expect(rows.every((r) => r.ended_at_ms === null)).toBe(true);
  });

  test('completions are written with the next commit, together with the opens of that turn', async () => {
    const { store, file } = openStore();
    const sizes: number[] = [];
    const audit = new GroupCommit(store, (_seconds, records) => sizes.push(records));
    const [a, b] = await Promise.all([audit.open(openFacts(1)), audit.open(openFacts(2))]);
    audit.complete(a, ended(111));
    audit.complete(b, ended(222));
    const c = await audit.open(openFacts(3));
    expect(sizes).toEqual([2, 3]);
    const rows = onDisk(file);
    expect(rows.find((r) => r.id === a)?.bytes_down).toBe(111);
    expect(rows.find((r) => r.id === b)?.bytes_down).toBe(222);
    expect(rows.find((r) => r.id === c)?.ended_at_ms).toBeNull();
  });

  test('a completion alone waits at most completionDelayMs for opens to share a commit with; flush() commits at once', async () => {
    const { store, file } = openStore();
    const commits: number[] = [];
    let committed: () => void = () => undefined;
    const audit = new GroupCommit(store, (_seconds, records) => {
      commits.push(records);
      committed();
    }, 30);
    const [a, b] = await Promise.all([audit.open(openFacts(1)), audit.open(openFacts(2))]);
    const nextCommit = new Promise<void>((resolve) => (committed = resolve));
    const started = performance.now();
    audit.complete(a, ended(5));
    await new Promise((resolve) => setImmediate(resolve));
    expect(onDisk(file)[0].ended_at_ms).toBeNull();
    await nextCommit;
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(onDisk(file)[0].bytes_down).toBe(5);
    audit.complete(b, ended(6));
    audit.flush();
    expect(onDisk(file)[1].bytes_down).toBe(6);
    expect(commits).toEqual([2, 1, 1]);
  });

  test('one record the schema refuses is rejected alone; the rest of its commit is written', async () => {
    const { store, file } = openStore();
    const audit = new GroupCommit(store);
    const bad = { ...openFacts(2), kind: 'smtp' } as unknown as AuditOpen;
    const outcomes = await Promise.allSettled([audit.open(openFacts(1)), audit.open(bad), audit.open(openFacts(3))]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ code: expect.stringMatching(/^SQLITE_CONSTRAINT/) });
    expect(onDisk(file).map((r) => r.host)).toEqual(['host1.example', 'host3.example']);
  });

  test.each(STORE_KINDS)('finished records (refusals) share a store %s\'s commit with the opens of their turn; ids follow the opens', async (_kind, open) => {
    const file = path.join(dir, 'audit.db');
    const store = open(file, {});
    stores.push(store);
    const sizes: number[] = [];
    const audit = new GroupCommit(store, (_seconds, records) => sizes.push(records));
    const refused = (n: number): [AuditOpen, AuditCompletion] => [
      openFacts(n, { decision: 'deny', reason: 'no rule matched' }),
      { endedAt: new Date(STARTED.getTime() + 1), status: 403, bytesUp: 0, bytesDown: 0, error: null },
    ];
    const pending = [audit.record(...refused(1)), audit.open(openFacts(2)), audit.record(...refused(3))];
    // Nothing is written until the turn ends: a refusal no longer commits on its own, at once.
    expect(onDisk(file)).toHaveLength(0);
    const [deny1, allow2, deny3] = await Promise.all(pending);
    expect(sizes).toEqual([3]);
    // One transaction, opens first: the ids name the rows, whatever order they were asked in.
    expect(allow2).toBeLessThan(deny1);
    expect(deny1).toBeLessThan(deny3);
    const rows = onDisk(file);
    expect(rows.map((r) => [r.id, r.host, r.ended_at_ms === null])).toEqual([
      [allow2, 'host2.example', true],
      [deny1, 'host1.example', false],
      [deny3, 'host3.example', false],
    ]);
  });

  test.each(STORE_KINDS)('a refusal asked for while a store %s cannot write is rejected, and nothing of it is written', async (_kind, open) => {
    const file = path.join(dir, 'audit.db');
    const store = open(file, { busyTimeoutMs: 0, probeIntervalMs: 60_000 });
    stores.push(store);
    const audit = new GroupCommit(store);
    await audit.open(openFacts(1));
    const locker = new Database(file);
    try {
      locker.prepare('BEGIN IMMEDIATE').run();
      const outcomes = await Promise.allSettled([
        audit.record(openFacts(2, { decision: 'deny' }), { endedAt: STARTED, status: 403, bytesUp: 0, bytesDown: 0, error: null }),
      ]);
      expect(outcomes[0]).toMatchObject({ status: 'rejected', reason: { code: 'SQLITE_BUSY' } });
      locker.prepare('ROLLBACK').run();
    } finally {
      locker.close();
    }
    expect(onDisk(file).map((r) => r.host)).toEqual(['host1.example']);
  });

  test.each(STORE_KINDS)('a store %s that cannot write rejects waiting opens at once, holds the completions, and recovers by its probe', async (_kind, open) => {
    const file = path.join(dir, 'audit.db');
    const changes = new AuditChanges();
    const store = open(file, { busyTimeoutMs: 0, probeIntervalMs: 60_000, onStateChange: changes.listener });
    stores.push(store);
    const audit = new GroupCommit(store);
    const id = await audit.open(openFacts(1));
    const locker = new Database(file);
    try {
      locker.prepare('BEGIN IMMEDIATE').run();
      audit.complete(id, ended(77));
      const outcomes = await Promise.allSettled([audit.open(openFacts(2)), audit.open(openFacts(3))]);
      expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected']);
      expect((outcomes[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_BUSY' });
      // Known on the proxy's thread at once (from the batch's answer, for the writer thread).
      expect(audit.writable()).toBe(false);
      expect(store.health()).toMatchObject({ writable: false, pendingCompletions: 1 });
      await expect(audit.open(openFacts(4))).rejects.toMatchObject({ code: 'audit_unavailable' });
      locker.prepare('ROLLBACK').run();
    } finally {
      locker.close();
    }
    // The readiness probe is the way back: it writes the held completion.
    expect(store.isWritable()).toBe(true);
    expect(audit.writable()).toBe(true);
    // The writer thread's state changes come as messages, after the answer that carried them.
    await changes.seenCount(2);
    expect(changes.events()).toEqual(['failing', 'recovered']);
    const rows = onDisk(file);
    expect(rows.map((r) => [r.host, r.bytes_down])).toEqual([['host1.example', 77]]);
  });
});

describe('checkpoints from a worker thread', () => {
  test('the write-ahead log starts over under steady writes instead of growing with them', async () => {
    const { store, file } = openStore({ checkpoint: { intervalMs: 2, restartFrames: 64 } });
    const audit = new GroupCommit(store);
    await audit.open(openFacts(0));
    // The log's header carries two salts; a log that starts over from its first frame gets new ones.
    const salts = (): string => {
      const fd = fs.openSync(`${file}-wal`, 'r');
      try {
        const header = Buffer.alloc(32);
        fs.readSync(fd, header, 0, 32, 0);
        return header.subarray(16, 24).toString('hex');
      } finally {
        fs.closeSync(fd);
      }
    };
    const first = salts();
    let commits = 1;
    // Commits back to back, as under load (no pause for a PASSIVE checkpoint to catch up),
    // until the log has started over; bounded at 5,000 commits.
    while (commits < 5000 && salts() === first) {
      await Promise.all([audit.open(openFacts(commits)), audit.open(openFacts(commits + 1))]);
      commits += 1;
    }
    expect(salts()).not.toBe(first);
    expect(onDisk(file)).toHaveLength(commits * 2 - 1);
  });

  test('the automatic checkpoint on the writer connection is off', () => {
    const { store } = openStore();
    expect(store.db.pragma('wal_autocheckpoint', { simple: true })).toBe(0);
  });

  test('close() waits for the worker to let go of the file, so the last close removes the log', async () => {
    const { store, file } = openStore();
    const audit = new GroupCommit(store);
    await audit.open(openFacts(1));
    expect(fs.existsSync(`${file}-wal`)).toBe(true);
    store.close();
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
    expect(onDisk(file)).toHaveLength(1);
  });
});
