import { EventEmitter, once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { GroupCommit } from '../src/audit/group-commit';
import type { BatchTarget } from '../src/audit/group-commit';
import type { BatchOutcome, CompletionEntry } from '../src/audit/connection';
import type { AuditCompletion, AuditOpen } from '../src/audit/record-types';
import { WriterThread } from '../src/audit/writer-thread';
import type { WriterThreadOptions } from '../src/audit/writer-thread';
import { AuditChanges } from './helpers/audit-changes';

/**
 * The audit store on its own thread (src/audit/writer-thread.ts): the proxy's writes reach a
 * real SQLite file through a real worker thread, and the store's rules (fail closed, hold
 * completions, reopen a removed file) hold across the thread boundary.
 */

const STARTED = new Date('2026-02-01T10:00:00.000Z');

function openFacts(n: number, overrides: Partial<AuditOpen> = {}): AuditOpen {
  return {
    startedAt: STARTED, clientIp: '10.0.0.9', clientPort: 41000 + n, clients: ['ci'], user: null,
    kind: 'http', method: 'GET', scheme: 'http', host: `host${n}.example`, port: 80, path: `/n/${n}`,
    resolvedIp: '203.0.113.9', decision: 'allow', wouldDeny: false, rule: 'r', ruleSource: 'p.yaml:3',
    reason: 'matched rule r', policyVersion: 'sha256:y', ...overrides,
  };
}

function ended(bytesDown: number): AuditCompletion {
  return { endedAt: new Date(STARTED.getTime() + 30), status: 200, bytesUp: 5, bytesDown, error: null };
}

interface Row { id: number; host: string; bytes_down: number | null; ended_at_ms: number | null }

/** What is on disk, through a connection of the test's own. */
function onDisk(file: string): Row[] {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT id, host, bytes_down, ended_at_ms FROM requests ORDER BY id').all() as Row[];
  } finally {
    db.close();
  }
}

let dir: string;
let file: string;
const opened: WriterThread[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-writer-thread-'));
  file = path.join(dir, 'audit.db');
});

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function openThread(opts: WriterThreadOptions = {}): { store: WriterThread; changes: AuditChanges } {
  const changes = new AuditChanges();
  const store = new WriterThread(file, { onStateChange: changes.listener, ...opts });
  opened.push(store);
  return { store, changes };
}

describe('the audit writer thread', () => {
  test('opens resolve once their records are on disk; completions follow; reads see both', async () => {
    const { store } = openThread();
    const audit = new GroupCommit(store);
    const ids = await Promise.all([1, 2, 3].map((n) => audit.open(openFacts(n))));
    expect(ids).toEqual([ids[0], ids[0] + 1, ids[0] + 2]);
    expect(onDisk(file).map((r) => [r.host, r.ended_at_ms])).toEqual([
      ['host1.example', null], ['host2.example', null], ['host3.example', null],
    ]);
    ids.forEach((id, i) => audit.complete(id, ended(100 + i)));
    await audit.drain();
    expect(onDisk(file).map((r) => r.bytes_down)).toEqual([100, 101, 102]);
    // The admin API's connection on this thread sees the writer's commits.
    expect(store.db.prepare('SELECT count(*) FROM requests WHERE ended_at_ms IS NOT NULL').pluck().get()).toBe(3);
  });

  test('a refusal asked for while a batch is in flight goes in the next batch, with the next id', async () => {
    const { store } = openThread();
    const audit = new GroupCommit(store);
    const pending = audit.open(openFacts(1));
    audit.flush();
    const refused = await audit.record(openFacts(2, { decision: 'deny' }), { ...ended(0), status: 403 });
    expect(refused).toBe((await pending) + 1);
    expect(onDisk(file).map((r) => r.host)).toEqual(['host1.example', 'host2.example']);
  });

  test('one record the schema refuses is rejected alone, with its SQLite code', async () => {
    const { store } = openThread();
    const audit = new GroupCommit(store);
    const bad = { ...openFacts(2), kind: 'smtp' } as unknown as AuditOpen;
    const outcomes = await Promise.allSettled([audit.open(openFacts(1)), audit.open(bad), audit.open(openFacts(3))]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ code: expect.stringMatching(/^SQLITE_CONSTRAINT/) });
    await expect(audit.record(bad, ended(0))).rejects.toMatchObject({ code: expect.stringMatching(/^SQLITE_CONSTRAINT/) });
    expect(store.writable()).toBe(true);
  });

  // Locked by another connection: test/audit-group-commit.test.ts runs that case on both kinds of store.

  test('a file removed while open is reopened at its path, and reads follow the new file', async () => {
    const { store, changes } = openThread({ fileCheckIntervalMs: 0 });
    const audit = new GroupCommit(store);
    const first = await audit.open(openFacts(1));
    // Read first, so the read connection holds the old file (and its log) open.
    expect(store.db.prepare('SELECT host FROM requests WHERE id = ?').pluck().get(first)).toBe('host1.example');
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
    const id = await audit.open(openFacts(2));
    expect(changes.events()).toEqual(['reopened']);
    expect(onDisk(file).map((r) => r.host)).toEqual(expect.arrayContaining(['host2.example']));
    expect(store.db.prepare('SELECT host FROM requests WHERE id = ?').pluck().get(id)).toBe('host2.example');
  });

  test('close() commits nothing twice and leaves no write-ahead log behind', async () => {
    const { store } = openThread();
    const audit = new GroupCommit(store);
    const id = await audit.open(openFacts(1));
    audit.complete(id, ended(9));
    await audit.drain();
    expect(store.completeOpenRecords(new Date(), 'shutdown')).toBe(0);
    store.close();
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
    expect(onDisk(file).map((r) => r.bytes_down)).toEqual([9]);
  });

  test('a file that cannot be opened throws from the constructor, as openAuditStore does', () => {
    fs.mkdirSync(file);
    expect(() => new WriterThread(file)).toThrow(/directory|unable to open|SQLITE_CANTOPEN/i);
  });

  test('if the thread dies, writes fail closed at once and say why; a new thread takes over', async () => {
    // Probes 2 s apart: the checks of the dead thread must run before the next probe replaces it.
    const { store, changes } = openThread({ probeIntervalMs: 2000 });
    const audit = new GroupCommit(store);
    await audit.open(openFacts(1));
    // The thread's handle is private; ending it from outside is what a fatal error in it does.
    const { worker } = (store as unknown as { thread: { worker: Worker } }).thread;
    await worker.terminate();
    await changes.seenCount(1);
    expect(store.writable()).toBe(false);
    await expect(audit.open(openFacts(2))).rejects.toMatchObject({ code: 'audit_unavailable' });
    await expect(audit.record(openFacts(3), ended(0))).rejects.toThrow(/writer thread/);
    expect(store.isWritable()).toBe(false);
    expect(store.health()).toMatchObject({ writable: false, lastError: expect.stringMatching(/exited/) });
    await changes.seenCount(2, 30_000);
    expect(store.writable()).toBe(true);
    const id = await audit.open(openFacts(4));
    expect(store.db.prepare('SELECT host FROM requests WHERE id = ?').pluck().get(id)).toBe('host4.example');
    expect(changes.events()).toEqual(['failing', 'recovered']);
  });

  test.each([
    ['a batch (this thread in its event loop)', async (_store: WriterThread, audit: GroupCommit) => audit.open(openFacts(2))],
    ['a probe (this thread waiting for the answer)', async (store: WriterThread, audit: GroupCommit) => {
      expect(store.isWritable()).toBe(true);
      return audit.open(openFacts(2));
    }],
  ])('renamed while open, reopened during %s: the reader lets go of the old file first', async (_name, write) => {
    const { store, changes } = openThread({ fileCheckIntervalMs: 0 });
    const audit = new GroupCommit(store);
    const first = await audit.open(openFacts(1));
    const reader = store.db;
    expect(reader.prepare('SELECT host FROM requests WHERE id = ?').pluck().get(first)).toBe('host1.example');
    // The log and its index stay at the path: the new file's connection must not share them.
    fs.renameSync(file, `${file}.1`);
    const id = await write(store, audit);
    expect(reader.open).toBe(false);
    await changes.seenCount(1);
    expect(changes.seen[0].event).toBe('reopened');
    expect(changes.seen[0].message).not.toMatch(/did not close/);
    expect(store.db.prepare('SELECT host FROM requests WHERE id = ?').pluck().get(id)).toBe('host2.example');
    expect(onDisk(`${file}.1`).map((r) => r.host)).toEqual(['host1.example']);
    expect(onDisk(file).map((r) => r.host)).toContain('host2.example');
  });
});

/** A target that commits later, when the test says so: what group commit does meanwhile. */
class ManualTarget implements BatchTarget {
  readonly batches: Array<{ opens: number; completions: number; settle: () => void }> = [];
  private readonly arrived = new EventEmitter();
  private next = 1;

  writable(): boolean {
    return true;
  }

  commitBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[]): Promise<BatchOutcome> {
    return new Promise((resolve) => {
      this.batches.push({
        opens: opens.length,
        completions: completions.length,
        settle: () => resolve({ ids: opens.map(() => this.next++), refusedCompletions: 0 }),
      });
      this.arrived.emit('batch');
    });
  }

  /** Resolves once `count` batches have been asked for (group commit posts them on later turns). */
  async batchCount(count: number): Promise<void> {
    while (this.batches.length < count) await once(this.arrived, 'batch');
  }
}

describe('group commit with a target on another thread', () => {
  test('one batch is in flight; what arrives meanwhile goes in the next, as one batch', async () => {
    const target = new ManualTarget();
    const audit = new GroupCommit(target);
    const first = audit.open(openFacts(1));
    await new Promise(setImmediate);
    expect(target.batches.map((b) => b.opens)).toEqual([1]);
    const more = [2, 3, 4].map((n) => audit.open(openFacts(n)));
    await new Promise(setImmediate);
    await new Promise(setImmediate);
    // Still one: the others wait for the first to settle.
    expect(target.batches).toHaveLength(1);
    target.batches[0].settle();
    expect(await first).toBe(1);
    await target.batchCount(2);
    expect(target.batches[1].opens).toBe(3);
    target.batches[1].settle();
    expect(await Promise.all(more)).toEqual([2, 3, 4]);
  });

  test('drain() waits for the batch in flight and commits what queued behind it', async () => {
    const target = new ManualTarget();
    const audit = new GroupCommit(target);
    const first = audit.open(openFacts(1));
    audit.flush();
    audit.complete(1, ended(1));
    let drained = false;
    const draining = audit.drain().then(() => (drained = true));
    await new Promise(setImmediate);
    expect(drained).toBe(false);
    target.batches[0].settle();
    await first;
    await target.batchCount(2);
    expect(target.batches[1]).toMatchObject({ opens: 0, completions: 1 });
    target.batches[1].settle();
    await draining;
  });
});
