import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { getRequest } from '../src/audit/query';
import { heldCompletionsFile, readHeldCompletions, saveHeldCompletions } from '../src/audit/held-completions-file';
import { completeAtShutdown, completeLeftOpen } from '../src/audit/left-open';
import { RecordEnd } from '../src/audit/record-types';
import type { AuditCompletion, AuditOpen } from '../src/audit/record-types';
import { openAuditStore } from '../src/audit/store';
import type { AuditStore } from '../src/audit/store';

/** The pieces of left-open.ts on a real file; serve-restart.test.ts runs them in a served process. */

const T0 = Date.parse('2025-03-01T12:00:00.000Z');

function openFacts(startedAtMs: number): AuditOpen {
  return {
    startedAt: new Date(startedAtMs), clientIp: '10.0.8.7', clientPort: 51234, clients: [], user: null,
    kind: 'connect', method: 'CONNECT', scheme: null, host: 'api.github.com', port: 443, path: null,
    resolvedIp: '140.82.112.6', decision: 'allow', wouldDeny: false, rule: 'ci-github',
    ruleSource: 'policies/10-ci.yaml:12', reason: 'matched rule ci-github', policyVersion: 'sha256:abc',
  };
}

function ended(atMs: number, overrides: Partial<AuditCompletion> = {}): AuditCompletion {
  return { endedAt: new Date(atMs), status: 200, bytesUp: 517, bytesDown: 4096, error: null, ...overrides };
}

let dir: string;
let dbFile: string;
const stores: AuditStore[] = [];

function openStore(busyTimeoutMs = 250): AuditStore {
  const store = openAuditStore(dbFile, { busyTimeoutMs, probeIntervalMs: 60_000 });
  stores.push(store);
  return store;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-left-open-'));
  dbFile = path.join(dir, 'audit.db');
});
afterEach(() => {
  for (const store of stores.splice(0)) store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('at start, saved completions are written first; the rest end as proxy_restarted at the last sign of life', async () => {
  const store = openStore();
  const saved = store.open(openFacts(T0));
  const leftOpen = store.open(openFacts(T0 + 1000));
  const heartbeatOnly = store.open(openFacts(T0 + 2000));
  // The heartbeat (a /readyz probe) is later than the newest record's start: the run was alive then.
  store.db.prepare('INSERT OR REPLACE INTO heartbeat (id, at_ms) VALUES (1, ?)').run(T0 + 5000);
  const file = heldCompletionsFile(dbFile) as string;
  saveHeldCompletions(file, [[saved, ended(T0 + 700, { bytesUp: 7 })]]);
  fs.appendFileSync(file, 'not json\n{"id":-1}\n');

  const done = await completeLeftOpen(store, new Date(T0 + 60_000));
  expect(done).toEqual({ heldWritten: 1, heldUnreadable: 2, closed: 2, endedAt: new Date(T0 + 5000) });
  expect(getRequest(store.db, saved)).toMatchObject({ bytes_up: 7, status: 200, error: null, ended_at: new Date(T0 + 700).toISOString() });
  for (const id of [leftOpen, heartbeatOnly]) {
    expect(getRequest(store.db, id)).toMatchObject({ status: null, error: RecordEnd.proxyRestarted, ended_at: new Date(T0 + 5000).toISOString() });
  }
  expect(fs.existsSync(file)).toBe(false);
  // Nothing left: a second start changes nothing.
  expect(await completeLeftOpen(store, new Date(T0 + 70_000))).toMatchObject({ heldWritten: 0, closed: 0 });
});

test('a record that started after the last sign of life (clock set back) never ends before it started', async () => {
  const store = openStore();
  const id = store.open(openFacts(T0 + 10_000));
  const done = await completeLeftOpen(store, new Date(T0));
  expect(done.endedAt).toEqual(new Date(T0));
  expect(getRequest(store.db, id)).toMatchObject({ duration_ms: 0, error: RecordEnd.proxyRestarted });
});

test('saving merges with a file already there: the first completion of a record wins', () => {
  const file = heldCompletionsFile(dbFile) as string;
  saveHeldCompletions(file, [[1, ended(T0, { bytesUp: 1 })]]);
  expect(saveHeldCompletions(file, [[1, ended(T0, { bytesUp: 2 })], [2, ended(T0)]])).toBe(2);
  expect(readHeldCompletions(file)).toEqual({ entries: [[1, ended(T0, { bytesUp: 1 })], [2, ended(T0)]], unreadable: 0 });
  expect(heldCompletionsFile(':memory:')).toBeNull();
});

describe('at shutdown, with the write lock held by another connection', () => {
  let locker: Database.Database;
  let store: AuditStore;
  let id: number;

  beforeEach(() => {
    store = openStore(20);
    id = store.open(openFacts(T0));
    locker = new Database(dbFile);
    locker.prepare('BEGIN IMMEDIATE').run();
    // The connection ended, but its completion cannot be written: the store holds it.
    store.complete(id, ended(T0 + 500, { bytesDown: 99 }));
    expect(store.heldCompletions()).toHaveLength(1);
  });
  afterEach(() => {
    if (locker.inTransaction) locker.prepare('ROLLBACK').run();
    locker.close();
  });

  test('the held completions are saved beside the database, and reach it at the next start', async () => {
    const done = completeAtShutdown(store, new Date(T0 + 1000));
    expect(done).toMatchObject({ ok: false, held: 1, savedTo: heldCompletionsFile(dbFile), saveError: null });
    locker.prepare('ROLLBACK').run();
    const next = openStore();
    expect(await completeLeftOpen(next, new Date(T0 + 2000))).toMatchObject({ heldWritten: 1, closed: 0 });
    expect(getRequest(next.db, id)).toMatchObject({ bytes_down: 99, error: null });
  });

  test('a side file that cannot be written is reported, not thrown', () => {
    fs.mkdirSync(heldCompletionsFile(dbFile) as string);
    const done = completeAtShutdown(store, new Date(T0 + 1000));
    expect(done).toMatchObject({ ok: false, held: 1, savedTo: null, saveError: expect.objectContaining({ code: 'EISDIR' }) });
  });
});
