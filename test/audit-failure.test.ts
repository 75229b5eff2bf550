import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Socket } from 'node:net';
import Database from 'better-sqlite3';
import { getRequest } from '../src/audit/query';
import { probeRecord } from '../src/audit/record-params';
import type { AuditCompletion, AuditOpen } from '../src/audit/record-types';
import { AUDIT_STORE_DEFAULTS, AuditUnavailableError, openAuditStore } from '../src/audit/store';
import type { AuditStore, AuditStoreOptions } from '../src/audit/store';
import { sqliteCode } from '../src/audit/write-health';
import { AuditChanges } from './helpers/audit-changes';
import { parseHead, rawConnect, readAll, readUntil, startOrigin, startProxy } from './helpers/proxy-harness';
import type { Origin, ProxyHarness } from './helpers/proxy-harness';
import { PROXY_TEST_HOSTS, PROXY_TEST_POLICY } from './helpers/policies';

/**
 * SPEC §3: "audit log cannot be written → 503, fail closed", and the store recovers by itself.
 * The three ways a file stops taking writes are made real, not mocked: SQLite's own page limit
 * (SQLITE_FULL, as on a full disk; tests run as root, so chmod would not stop a write), a second
 * connection holding the write lock (SQLITE_BUSY), and unlinking or renaming the open file.
 */

const STARTED = new Date('2025-03-01T12:00:00.000Z');

function openFacts(overrides: Partial<AuditOpen> = {}): AuditOpen {
  return {
    startedAt: STARTED, clientIp: '10.0.8.7', clientPort: 51234, clients: [], user: null,
    kind: 'connect', method: 'CONNECT', scheme: null, host: 'api.github.com', port: 443, path: null,
    resolvedIp: '140.82.112.6', decision: 'allow', wouldDeny: false, rule: 'ci-github',
    ruleSource: 'policies/10-ci.yaml:12', reason: 'matched rule ci-github', policyVersion: 'sha256:abc',
    ...overrides,
  };
}

function finished(overrides: Partial<AuditCompletion> = {}): AuditCompletion {
  return { endedAt: new Date(STARTED.getTime() + 1500), status: 200, bytesUp: 517, bytesDown: 4096, error: null, ...overrides };
}


/**
 * Simulates a full disk with SQLite's own limit: no new page may be added, so inserts fail with
 * SQLITE_FULL once the pages in hand are full. They are filled with rows of exactly the probe's
 * shape, so the store's probe is then as sure to fail as the last filler was. Returns the error
 * and a function that lifts the limit again.
 */
function fillUntilFull(store: AuditStore): { error: unknown; lastId: number; restore: () => void } {
  const db = store.db;
  const limit = db.pragma('max_page_count', { simple: true }) as number;
  db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
  let lastId = 0;
  for (let i = 0; i < 10_000; i += 1) {
    const { open, completion } = probeRecord(new Date());
    try {
      lastId = store.record(open, completion);
    } catch (error) {
      return { error, lastId, restore: () => void db.pragma(`max_page_count = ${limit}`) };
    }
  }
  throw new Error('the database never filled up');
}

function readOnly(file: string): Database.Database {
  return new Database(file, { readonly: true, fileMustExist: true });
}

let dir: string;
let dbFile: string;
const cleanups: Array<() => void> = [];

function openStore(opts: AuditStoreOptions = {}): { store: AuditStore; changes: AuditChanges } {
  const changes = new AuditChanges();
  const store = openAuditStore(dbFile, { probeIntervalMs: 20, onStateChange: changes.listener, ...opts });
  cleanups.push(() => store.close());
  return { store, changes };
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-audit-failure-'));
  dbFile = path.join(dir, 'audit.db');
});

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('a full database (SQLITE_FULL)', () => {
  test('fails closed, fails fast, holds completions, and recovers by itself when space returns', async () => {
    const { store, changes } = openStore();
    const inFlight = store.open(openFacts());
    const { error, lastId, restore } = fillUntilFull(store);
    expect(sqliteCode(error)).toBe('SQLITE_FULL');

    const health = store.health();
    expect(health).toMatchObject({ writable: false, lastError: expect.stringMatching(/^SQLITE_FULL: /), pendingCompletions: 0 });
    expect(new Date(health.failingSince ?? '').toISOString()).toBe(health.failingSince);
    expect(changes.events()).toEqual(['failing']);
    expect(changes.seen[0].message).toMatch(/audit log cannot be written, new requests get 503: SQLITE_FULL/);

    // Later writes throw at once, naming the cause, without touching the file.
    expect(() => store.open(openFacts())).toThrow(AuditUnavailableError);
    expect(() => store.record(openFacts(), finished())).toThrow(/audit log unavailable since .*SQLITE_FULL/);
    // The probe is a real insert: rewriting an existing row would still succeed on a full file.
    store.db.prepare('UPDATE heartbeat SET at_ms = at_ms + 1').run();
    expect(store.isWritable()).toBe(false);
    // A connection that ends now has its completion held, not lost.
    store.complete(inFlight, finished({ bytesUp: 7 }));
    expect(store.health().pendingCompletions).toBe(1);
    expect(getRequest(store.db, inFlight)?.ended_at).toBeNull();

    const recovered = changes.next('recovered');
    restore();
    expect((await recovered).message).toMatch(/^audit log writable again after \d+ ms; wrote 1 held completions$/);
    expect(store.health()).toEqual({ writable: true, lastError: null, failingSince: null, pendingCompletions: 0, droppedCompletions: 0, fsync: false });
    expect(getRequest(store.db, inFlight)).toMatchObject({ bytes_up: 7, status: 200, ended_at: expect.any(String) });
    // No restart, and neither the failed inserts nor the probes used up an id.
    expect(store.record(openFacts(), finished())).toBe(lastId + 1);
    expect(store.isWritable()).toBe(true);
    expect(changes.events()).toEqual(['failing', 'recovered']);
  });

  test('completeOpenRecords at shutdown writes held completions first, and throws while still failing', () => {
    const { store } = openStore({ probeIntervalMs: 60_000 });
    const early = store.open(openFacts());
    const late = store.open(openFacts());
    const { restore } = fillUntilFull(store);
    store.complete(early, finished({ bytesDown: 99 }));
    expect(() => store.completeOpenRecords(new Date(), 'shutdown')).toThrow(AuditUnavailableError);
    restore();
    expect(store.completeOpenRecords(new Date('2025-03-01T13:00:00.000Z'), 'shutdown')).toBe(1);
    expect(getRequest(store.db, early)).toMatchObject({ bytes_down: 99, error: null });
    expect(getRequest(store.db, late)).toMatchObject({ ended_at: '2025-03-01T13:00:00.000Z', error: 'shutdown' });
  });

  test('holds at most maxPendingCompletions; past that the oldest is dropped and its record stays open', async () => {
    const { store, changes } = openStore({ maxPendingCompletions: 2 });
    const ids = [store.open(openFacts()), store.open(openFacts()), store.open(openFacts())];
    const { restore } = fillUntilFull(store);
    for (const id of ids) store.complete(id, finished());
    store.complete(ids[2], finished({ bytesUp: 1 }));
    expect(store.health()).toMatchObject({ pendingCompletions: 2, droppedCompletions: 1 });
    const recovered = changes.next('recovered');
    restore();
    expect((await recovered).message).toMatch(/wrote 2 held completions, 1 dropped since start$/);
    expect(ids.map((id) => getRequest(store.db, id)?.ended_at !== null)).toEqual([false, true, true]);
    // The first completion of a record wins, held or not.
    expect(getRequest(store.db, ids[2])?.bytes_up).toBe(517);
  });

  test('close() while failing neither throws nor keeps the process alive', () => {
    const { store } = openStore({ probeIntervalMs: 60_000 });
    const id = store.open(openFacts());
    fillUntilFull(store);
    store.complete(id, finished());
    expect(() => store.close()).not.toThrow();
    expect(store.isWritable()).toBe(false);
    expect(() => store.open(openFacts())).toThrow(/closed/);
    expect(() => store.complete(id, finished())).toThrow(/closed/);
  });
});

describe('a database locked by another connection (SQLITE_BUSY)', () => {
  test('waits busy_timeout once, then fails fast until the lock is released', async () => {
    const { store, changes } = openStore({ busyTimeoutMs: 1000 });
    const other = new Database(dbFile);
    cleanups.push(() => other.close());
    other.exec('BEGIN EXCLUSIVE');

    let started = performance.now();
    let caught: unknown = null;
    try {
      store.record(openFacts(), finished());
    } catch (err) {
      caught = err;
    }
    expect(sqliteCode(caught)).toBe('SQLITE_BUSY');
    expect(performance.now() - started).toBeGreaterThanOrEqual(990);
    expect(store.health()).toMatchObject({ writable: false, lastError: expect.stringMatching(/^SQLITE_BUSY: /) });

    // The breaker is open: neither writes nor the readiness probe wait for the lock again (half the
    // busy timeout tells "did not wait" from "waited" with room for a busy machine).
    started = performance.now();
    expect(() => store.open(openFacts())).toThrow(AuditUnavailableError);
    expect(store.isWritable()).toBe(false);
    expect(performance.now() - started).toBeLessThan(500);

    const recovered = changes.next('recovered');
    other.exec('COMMIT');
    await recovered;
    expect(store.record(openFacts(), finished())).toBeGreaterThan(0);
    expect(store.db.pragma('busy_timeout', { simple: true })).toBe(1000);
  });

  test('the default busy timeout is short, because a waiting write stalls the whole event loop', () => {
    const { store } = openStore();
    expect(AUDIT_STORE_DEFAULTS.busyTimeoutMs).toBeLessThanOrEqual(500);
    expect(store.db.pragma('busy_timeout', { simple: true })).toBe(AUDIT_STORE_DEFAULTS.busyTimeoutMs);
  });
});

describe('a database file removed or renamed while open', () => {
  test('unlinked (with -wal and -shm): the next write reopens the path, and records land in the new file', async () => {
    const { store, changes } = openStore({ fileCheckIntervalMs: 0 });
    const before = store.record(openFacts({ host: 'before.example' }), finished());
    const inFlight = store.open(openFacts({ host: 'in-flight.example' }));
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(`${dbFile}${suffix}`, { force: true });

    const after = store.record(openFacts({ host: 'after.example' }), finished());
    store.complete(inFlight, finished({ bytesUp: 3 }));
    expect(changes.events()).toEqual(['reopened']);
    expect(changes.seen[0].message).toContain('removed or replaced while open');

    // Read as an auditor would, through a separate connection to whatever is at the path now.
    const reader = readOnly(dbFile);
    cleanups.push(() => reader.close());
    const hosts = reader.prepare('SELECT id, host, ended_at_ms IS NOT NULL AS ended FROM requests ORDER BY id').all();
    expect(hosts).toEqual([
      { id: inFlight, host: 'in-flight.example', ended: 1 },
      { id: after, host: 'after.example', ended: 1 },
    ]);
    expect(after).toBeGreaterThan(inFlight);
    expect(before).toBeLessThan(inFlight);
    expect(reader.prepare('SELECT COUNT(*) FROM schema_migrations').pluck().get()).toBeGreaterThan(0);
    expect(store.health().writable).toBe(true);
  });

  test('renamed: the old name keeps every record written before, the path gets a new file', () => {
    const { store } = openStore({ fileCheckIntervalMs: 0 });
    const before = store.record(openFacts({ host: 'before.example' }), finished());
    // Seen at its path after that write, so `before` is known to be in the file (not carried).
    expect(store.isWritable()).toBe(true);
    fs.renameSync(dbFile, `${dbFile}.1`);
    const after = store.record(openFacts({ host: 'after.example' }), finished());

    const rotated = readOnly(`${dbFile}.1`);
    const current = readOnly(dbFile);
    cleanups.push(() => rotated.close(), () => current.close());
    expect(rotated.prepare('SELECT id FROM requests').pluck().all()).toEqual([before]);
    expect(current.prepare('SELECT id FROM requests').pluck().all()).toEqual([after]);
  });

  test('records written between the removal and the next check are carried over, not lost', () => {
    const { store } = openStore({ fileCheckIntervalMs: 60_000 });
    store.record(openFacts({ host: 'before.example' }), finished());
    expect(store.isWritable()).toBe(true);
    fs.rmSync(dbFile);
    // Not checked yet: SQLite writes this to the removed inode.
    const ghost = store.record(openFacts({ host: 'ghost.example' }), finished());
    expect(fs.existsSync(dbFile)).toBe(false);
    // The readiness probe always checks the file.
    expect(store.isWritable()).toBe(true);
    const reader = readOnly(dbFile);
    cleanups.push(() => reader.close());
    expect(reader.prepare('SELECT id, host FROM requests').all()).toEqual([{ id: ghost, host: 'ghost.example' }]);
  });

  test('a path that cannot be reopened fails closed until it can', async () => {
    const { store, changes } = openStore({ fileCheckIntervalMs: 0 });
    const inFlight = store.open(openFacts());
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(`${dbFile}${suffix}`, { force: true });
    fs.mkdirSync(dbFile);

    expect(() => store.record(openFacts(), finished())).toThrow(AuditUnavailableError);
    expect(store.health()).toMatchObject({ writable: false, lastError: expect.stringContaining(`cannot reopen ${dbFile}`) });
    store.complete(inFlight, finished({ bytesUp: 11 }));

    const recovered = changes.next('recovered');
    fs.rmdirSync(dbFile);
    await recovered;
    expect(changes.events()).toEqual(['failing', 'reopened', 'recovered']);
    expect(getRequest(store.db, inFlight)).toMatchObject({ bytes_up: 11 });
    expect(store.record(openFacts(), finished())).toBe(inFlight + 1);
  });
});

describe('options and callbacks', () => {
  test.each([
    ['busyTimeoutMs', -1],
    ['busyTimeoutMs', 1.5],
    ['probeIntervalMs', 0],
    ['maxPendingCompletions', 0],
    ['fileCheckIntervalMs', Number.NaN],
  ] as const)('rejects %s = %p', (name, value) => {
    expect(() => openAuditStore(dbFile, { [name]: value })).toThrow(RangeError);
  });

  test('a throwing onStateChange does not turn a working write into a failure', async () => {
    const { store } = openStore({
      onStateChange: () => {
        throw new Error('logger broke');
      },
    });
    const { restore } = fillUntilFull(store);
    restore();
    expect(store.isWritable()).toBe(true);
    expect(store.record(openFacts(), finished())).toBeGreaterThan(0);
  });
});

describe('the proxy while the audit log cannot be written', () => {
  let proxy: ProxyHarness;
  let origin: Origin;
  let changes: AuditChanges;
  const seenByOrigin = { connections: 0, bytes: 0, requests: 0 };

  /** A CONNECT the proxy refuses: its whole answer, read until the proxy closes. */
  async function refused(authority: string): Promise<{ status: number; body: string }> {
    const socket = await rawConnect(proxy.port);
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    const { status, body } = parseHead(await readAll(socket));
    return { status, body };
  }

  async function allowedTunnelWorks(): Promise<void> {
    const socket = await rawConnect(proxy.port);
    socket.write(`CONNECT origin.test:${origin.port} HTTP/1.1\r\nHost: origin.test:${origin.port}\r\n\r\n`);
    expect(parseHead(await readUntil(socket, '\r\n\r\n')).status).toBe(200);
    socket.write(`GET /after HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n`);
    expect(await readAll(socket)).toContain('hello from origin');
  }

  beforeEach(async () => {
    seenByOrigin.connections = 0;
    seenByOrigin.bytes = 0;
    seenByOrigin.requests = 0;
    origin = await startOrigin((_req, res) => {
      seenByOrigin.requests += 1;
      res.end('hello from origin');
    });
    origin.server.on('connection', (socket: Socket) => {
      seenByOrigin.connections += 1;
      socket.on('data', (chunk: Buffer) => (seenByOrigin.bytes += chunk.length));
    });
    changes = new AuditChanges();
    proxy = await startProxy({
      policies: { 'policy.yaml': PROXY_TEST_POLICY },
      hosts: PROXY_TEST_HOSTS,
      auditOptions: { busyTimeoutMs: 100, probeIntervalMs: 20, fileCheckIntervalMs: 0, onStateChange: changes.listener },
    });
  });

  afterEach(async () => {
    await proxy.close();
    await origin.close();
  });

  test('full: allowed and denied requests get 503 and nothing reaches the origin; recovery needs no restart', async () => {
    const { restore } = fillUntilFull(proxy.store);
    const recordsBefore = proxy.records().length;

    const allowed = await refused(`origin.test:${origin.port}`);
    expect(allowed.status).toBe(503);
    expect(allowed.body).toBe(`tollgate: CONNECT origin.test:${origin.port} failed: audit log cannot be written\n`);
    expect((await fetchThroughProxy(proxy.port, 'http://paste.test/')).status).toBe(503);
    expect((await fetchThroughProxy(proxy.port, `http://origin.test:${origin.port}/x`)).status).toBe(503);
    expect(seenByOrigin).toMatchObject({ bytes: 0, requests: 0 });
    expect(proxy.records()).toHaveLength(recordsBefore);
    expect(changes.events()).toEqual(['failing']);
    expect(changes.seen[0].message).toContain('SQLITE_FULL');

    const recovered = changes.next('recovered');
    restore();
    await recovered;
    await allowedTunnelWorks();
    const record = await proxy.waitForRecord((r) => r.host === 'origin.test' && r.ended_at !== null);
    expect(record).toMatchObject({ decision: 'allow', status: 200, port: origin.port });
    expect(seenByOrigin.requests).toBe(1);
  });

  test('locked: the first request waits busy_timeout, the rest fail fast; all get 503 until the lock is released', async () => {
    const other = new Database(path.join(proxy.dir, 'audit.db'));
    other.exec('BEGIN EXCLUSIVE');
    try {
      expect((await refused(`origin.test:${origin.port}`)).status).toBe(503);
      expect((await fetchThroughProxy(proxy.port, 'http://paste.test/')).status).toBe(503);
      expect(changes.seen[0]).toMatchObject({ event: 'failing', message: expect.stringContaining('SQLITE_BUSY') });
      expect(seenByOrigin).toMatchObject({ bytes: 0, requests: 0 });
      const recovered = changes.next('recovered');
      other.exec('COMMIT');
      await recovered;
    } finally {
      other.close();
    }
    await allowedTunnelWorks();
    await proxy.waitForRecord((r) => r.host === 'origin.test' && r.ended_at !== null && r.status === 200);
  });

  test('removed: after the file is unlinked, new records land in a new file at the same path', async () => {
    for (const suffix of ['', '-wal', '-shm']) fs.rmSync(path.join(proxy.dir, `audit.db${suffix}`), { force: true });
    await allowedTunnelWorks();
    await proxy.waitForRecord((r) => r.host === 'origin.test' && r.ended_at !== null);
    const reader = readOnly(path.join(proxy.dir, 'audit.db'));
    try {
      expect(reader.prepare('SELECT host, status FROM requests').all()).toEqual([{ host: 'origin.test', status: 200 }]);
    } finally {
      reader.close();
    }
    expect(changes.events()).toEqual(['reopened']);
  });

  // A denial that cannot be recorded must not be answered as if it were: 503, fail closed.
  test('a denied CONNECT that cannot be recorded gets 503, not 403', async () => {
    const { restore } = fillUntilFull(proxy.store);
    try {
      expect((await refused('paste.test:443')).status).toBe(503);
    } finally {
      restore();
    }
  });

  // The proxy checks the store's known state before resolving or dialling.
  test('while the store is known to be failing, a CONNECT opens no connection to the destination', async () => {
    const { restore } = fillUntilFull(proxy.store);
    try {
      expect((await refused(`origin.test:${origin.port}`)).status).toBe(503);
      expect(seenByOrigin.connections).toBe(0);
    } finally {
      restore();
    }
  });
});

/** A plain-HTTP request through the proxy, read raw (status only). */
async function fetchThroughProxy(proxyPort: number, url: string): Promise<{ status: number }> {
  const socket = await rawConnect(proxyPort);
  const host = new URL(url).host;
  socket.write(`GET ${url} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  return { status: parseHead(await readAll(socket)).status };
}
