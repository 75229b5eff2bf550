import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { openAuditStore, MAX_TEXT_LENGTH } from '../src/audit/store';
import type { AuditStore } from '../src/audit/store';
import { applyMigrations, MIGRATIONS_DIR, readMigrations } from '../src/audit/migrate';
import {
  AUDIT_RECORD_FIELDS,
  DEFAULT_NODE,
  getRequest,
  listRequests,
  QueryInputError,
  encodeCursor,
} from '../src/audit/query';
import type { AuditCompletion, AuditOpen } from '../src/audit/record-types';

/** SPEC §4, written out by hand so that a change to the code's list shows up here. */
const SPEC_FIELDS = [
  'id', 'started_at', 'ended_at', 'duration_ms', 'client_ip', 'client_port', 'peer_ip', 'clients', 'user',
  'kind', 'method', 'scheme', 'host', 'port', 'path', 'resolved_ip', 'sni', 'tunnel_id', 'decision', 'would_deny',
  'rule', 'rule_source', 'reason', 'status', 'bytes_up', 'bytes_down', 'error', 'policy_version',
  // SPEC §6 (fleet): every record gains node.
  'node',
];

const ISO_MS_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const STARTED = new Date('2025-03-01T12:00:00.123Z');

function openFacts(overrides: Partial<AuditOpen> = {}): AuditOpen {
  return {
    startedAt: STARTED,
    clientIp: '10.0.8.7',
    clientPort: 51234,
    clients: ['ci-runners', 'everyone'],
    user: 'ci-bot',
    kind: 'connect',
    method: 'CONNECT',
    scheme: null,
    host: 'api.github.com',
    port: 443,
    path: null,
    resolvedIp: '140.82.112.6',
    decision: 'allow',
    wouldDeny: false,
    rule: 'ci-github',
    ruleSource: 'policies/10-ci.yaml:12',
    reason: 'matched rule ci-github',
    policyVersion: 'sha256:abc',
    ...overrides,
  };
}

function completion(overrides: Partial<AuditCompletion> = {}): AuditCompletion {
  return {
    endedAt: new Date(STARTED.getTime() + 1500),
    status: 200,
    bytesUp: 517,
    bytesDown: 4096,
    error: null,
    ...overrides,
  };
}

let dir: string;
let dbFile: string;
const opened: AuditStore[] = [];

function openStore(clock?: () => Date): AuditStore {
  const store = openAuditStore(dbFile, { clock });
  opened.push(store);
  return store;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-audit-'));
  dbFile = path.join(dir, 'nested', 'audit.db');
});

afterEach(() => {
  for (const store of opened.splice(0)) store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('migrations', () => {
  it('creates the missing folder, applies every migration once and records it', () => {
    const store = openStore(() => new Date('2025-01-01T00:00:00.000Z'));
    expect(fs.existsSync(dbFile)).toBe(true);
    const versions = readMigrations().map((m) => m.version);
    expect(versions).toContain('001_audit');
    const rows = store.db.prepare('SELECT version, applied_at_ms FROM schema_migrations ORDER BY version').all();
    expect(rows).toEqual(versions.map((version) => ({ version, applied_at_ms: Date.parse('2025-01-01T00:00:00.000Z') })));
  });

  it('does not re-apply on a second open', () => {
    openStore(() => new Date('2025-01-01T00:00:00.000Z')).close();
    const again = openStore(() => new Date('2026-01-01T00:00:00.000Z'));
    const times = again.db.prepare('SELECT DISTINCT applied_at_ms FROM schema_migrations').pluck().all();
    expect(times).toEqual([Date.parse('2025-01-01T00:00:00.000Z')]);
    expect(applyMigrations(again.db)).toEqual([]);
  });

  it('applies a new migration in name order and only once', () => {
    const store = openStore();
    const extra = path.join(dir, 'migrations');
    fs.mkdirSync(extra);
    // Every shipped migration (already applied by the open), then one more after them.
    for (const { version } of readMigrations()) {
      fs.copyFileSync(path.join(MIGRATIONS_DIR, `${version}.sql`), path.join(extra, `${version}.sql`));
    }
    fs.writeFileSync(path.join(extra, '999_note.sql'), 'ALTER TABLE requests ADD COLUMN note TEXT;');
    fs.writeFileSync(path.join(extra, 'README.md'), 'not a migration');
    expect(applyMigrations(store.db, { dir: extra })).toEqual(['999_note']);
    expect(applyMigrations(store.db, { dir: extra })).toEqual([]);
  });

  it('refuses a database migrated by a newer tollgate', () => {
    const store = openStore();
    store.db.prepare('INSERT INTO schema_migrations VALUES (?, ?)').run('999_future', 0);
    store.close();
    expect(() => openAuditStore(dbFile)).toThrow(/newer tollgate.*999_future/);
  });
});

describe('audit store', () => {
  it('uses WAL with synchronous NORMAL', () => {
    const store = openStore();
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(store.db.pragma('synchronous', { simple: true })).toBe(1);
    expect(store.file).toBe(dbFile);
  });

  it('round-trips open -> complete with every SPEC §4 field and type', () => {
    const store = openStore();
    // The tunnel's ClientHello named the CONNECT host (SPEC §6 Trust: the record gains sni).
    const id = store.open(openFacts({ sni: 'api.github.com' }));
    expect(Number.isInteger(id)).toBe(true);

    const open = getRequest(store.db, id);
    expect(open).not.toBeNull();
    expect(open?.ended_at).toBeNull();
    expect(open?.duration_ms).toBeNull();
    expect(open?.status).toBeNull();

    store.complete(id, completion());
    const record = getRequest(store.db, id);
    expect(Object.keys(record ?? {}).sort()).toEqual([...AUDIT_RECORD_FIELDS].sort());
    expect([...AUDIT_RECORD_FIELDS].sort()).toEqual([...SPEC_FIELDS].sort());
    expect(record).toEqual({
      id,
      started_at: '2025-03-01T12:00:00.123Z',
      ended_at: '2025-03-01T12:00:01.623Z',
      duration_ms: 1500,
      client_ip: '10.0.8.7',
      client_port: 51234,
      peer_ip: null,
      clients: ['ci-runners', 'everyone'],
      user: 'ci-bot',
      kind: 'connect',
      method: 'CONNECT',
      scheme: null,
      host: 'api.github.com',
      port: 443,
      path: null,
      resolved_ip: '140.82.112.6',
      sni: 'api.github.com',
      tunnel_id: null,
      decision: 'allow',
      would_deny: false,
      rule: 'ci-github',
      rule_source: 'policies/10-ci.yaml:12',
      reason: 'matched rule ci-github',
      status: 200,
      bytes_up: 517,
      bytes_down: 4096,
      error: null,
      policy_version: 'sha256:abc',
      node: DEFAULT_NODE,
    });
    expect(record?.started_at).toMatch(ISO_MS_UTC);
    expect(record?.ended_at).toMatch(ISO_MS_UTC);
    expect(listRequests(store.db).items).toEqual([record]);
  });

  it('record() writes a finished record in one step', () => {
    const store = openStore();
    const id = store.record(
      openFacts({ kind: 'http', method: 'GET', scheme: 'http', host: 'evil.example', port: 80,
        path: '/x', resolvedIp: null, decision: 'deny', wouldDeny: true, rule: '(default)',
        reason: 'no rule matched' }),
      completion({ status: 403, bytesUp: 0, bytesDown: 0, error: 'denied' }),
    );
    const record = getRequest(store.db, id);
    expect(record).toMatchObject({
      kind: 'http', method: 'GET', scheme: 'http', path: '/x', decision: 'deny', would_deny: true,
      status: 403, error: 'denied', ended_at: '2025-03-01T12:00:01.623Z', resolved_ip: null, sni: null,
    });
    expect(typeof record?.would_deny).toBe('boolean');
  });

  it('keeps the first completion', () => {
    const store = openStore();
    const id = store.open(openFacts());
    store.complete(id, completion({ bytesUp: 1 }));
    store.complete(id, completion({ bytesUp: 2 }));
    expect(getRequest(store.db, id)?.bytes_up).toBe(1);
  });

  it('completeOpenRecords ends only the open records', () => {
    const store = openStore();
    const done = store.open(openFacts());
    store.complete(done, completion());
    const stillOpen = [store.open(openFacts()), store.open(openFacts())];
    const endedAt = new Date('2025-03-01T12:05:00.000Z');
    expect(store.completeOpenRecords(endedAt, 'shutdown')).toBe(2);
    for (const id of stillOpen) {
      expect(getRequest(store.db, id)).toMatchObject({ ended_at: endedAt.toISOString(), error: 'shutdown' });
    }
    expect(getRequest(store.db, done)).toMatchObject({ error: null, ended_at: '2025-03-01T12:00:01.623Z' });
    expect(store.completeOpenRecords(endedAt, 'shutdown')).toBe(0);
  });

  it('truncates hostile long strings', () => {
    const store = openStore();
    const id = store.record(
      openFacts({ host: 'a'.repeat(100_000), path: '/'.repeat(5000), user: 'u'.repeat(3000) }),
      completion({ error: 'e'.repeat(10_000) }),
    );
    const record = getRequest(store.db, id);
    for (const value of [record?.host, record?.path, record?.user, record?.error]) {
      expect(value).toHaveLength(MAX_TEXT_LENGTH);
      expect(value?.endsWith('…')).toBe(true);
    }
  });

  it('reports writability, and not after close', () => {
    const store = openStore();
    expect(store.isWritable()).toBe(true);
    store.close();
    expect(store.isWritable()).toBe(false);
  });

  it('refuses a file that is not a SQLite database', () => {
    fs.mkdirSync(path.dirname(dbFile), { recursive: true });
    fs.writeFileSync(dbFile, 'x'.repeat(4096));
    expect(() => openAuditStore(dbFile)).toThrow(/not a database/);
  });

  it('returns null for a missing id', () => {
    expect(getRequest(openStore().db, 12345)).toBeNull();
  });
});

describe('pagination', () => {
  function insertMany(store: AuditStore, count: number): number[] {
    const ids: number[] = [];
    for (let i = 0; i < count; i += 1) ids.push(store.record(openFacts({ host: `h${i}.example` }), completion()));
    return ids;
  }

  it('pages newest first, each id exactly once', () => {
    const store = openStore();
    const ids = insertMany(store, 120);
    const seen: number[] = [];
    let cursor: string | null = null;
    const sizes: number[] = [];
    do {
      const page = listRequests(store.db, { limit: 50, cursor });
      sizes.push(page.items.length);
      seen.push(...page.items.map((r) => r.id));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(sizes).toEqual([50, 50, 20]);
    expect(seen).toEqual([...ids].reverse());
  });

  it('is stable while records are written between pages', () => {
    const store = openStore();
    const ids = insertMany(store, 120);
    const first = listRequests(store.db, { limit: 50 });
    const newer = insertMany(store, 7);
    const second = listRequests(store.db, { limit: 50, cursor: first.next_cursor });
    insertMany(store, 3);
    const third = listRequests(store.db, { limit: 50, cursor: second.next_cursor });
    const seen = [first, second, third].flatMap((page) => page.items.map((r) => r.id));
    expect(third.next_cursor).toBeNull();
    expect(seen).toEqual([...ids].reverse());
    expect(seen.filter((id) => newer.includes(id))).toEqual([]);
  });

  it('defaults to 50, caps at 1000 and validates the limit', () => {
    const store = openStore();
    insertMany(store, 60);
    expect(listRequests(store.db).items).toHaveLength(50);
    expect(() => listRequests(store.db, { limit: 1001 })).toThrow(QueryInputError);
    expect(() => listRequests(store.db, { limit: 0 })).toThrow(QueryInputError);
    expect(() => listRequests(store.db, { limit: 2.5 })).toThrow(QueryInputError);
  });

  it('returns an empty page and no cursor on an empty log', () => {
    expect(listRequests(openStore().db)).toEqual({ items: [], next_cursor: null, partial: false, newest_id: null });
  });

  it.each([
    ['garbage', 'not a cursor!'],
    ['empty', ''],
    ['non-numeric payload', Buffer.from('abc').toString('base64url')],
    ['zero', Buffer.from('0').toString('base64url')],
    ['negative', Buffer.from('-5').toString('base64url')],
    ['non-canonical padding', `${encodeCursor(42)}==`],
    ['huge', Buffer.from('99999999999999999999').toString('base64url')],
  ])('rejects a bad cursor (%s)', (_name, cursor) => {
    const store = openStore();
    expect(() => listRequests(store.db, { cursor })).toThrow(QueryInputError);
  });
});

describe('durability', () => {
  /**
   * Runs the real store in a child process (TypeScript transpiled on load, as no build exists
   * under jest), kills it with SIGKILL after it reports a write, and reads the file back: a record
   * is durable on return from open()/record(), with no close, checkpoint or exit handler.
   */
  it('keeps committed records when the writer is killed with SIGKILL', async () => {
    const script = path.join(dir, 'writer.js');
    fs.writeFileSync(script, writerScript(dbFile, openFacts(), completion()));
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const exited = once(child, 'exit');
    const line = await firstLine(child.stdout);
    child.kill('SIGKILL');
    const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
    expect({ code, signal, stderr }).toEqual({ code: null, signal: 'SIGKILL', stderr: '' });

    const { openId, finishedId } = JSON.parse(line) as { openId: number; finishedId: number };
    // The records are still only in the write-ahead log, which the next open recovers.
    expect(fs.statSync(`${dbFile}-wal`).size).toBeGreaterThan(0);
    const store = openStore();
    expect(getRequest(store.db, finishedId)).toMatchObject({ status: 200, host: 'api.github.com' });
    expect(getRequest(store.db, openId)).toMatchObject({ ended_at: null, status: null });
  });
});

function writerScript(file: string, open: AuditOpen, done: AuditCompletion): string {
  const storePath = path.resolve(__dirname, '..', 'src', 'audit', 'store.ts');
  return `
const fs = require('node:fs');
const ts = require(${JSON.stringify(require.resolve('typescript'))});
require.extensions['.ts'] = (module, filename) => {
  const source = fs.readFileSync(filename, 'utf8');
  const out = ts.transpileModule(source, { fileName: filename, compilerOptions: {
    module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } });
  module._compile(out.outputText, filename);
};
const { openAuditStore } = require(${JSON.stringify(storePath)});
const revive = (key, value) => (key === 'startedAt' || key === 'endedAt' ? new Date(value) : value);
const open = JSON.parse(${JSON.stringify(JSON.stringify(open))}, revive);
const done = JSON.parse(${JSON.stringify(JSON.stringify(done))}, revive);
const store = openAuditStore(${JSON.stringify(file)});
const finishedId = store.record(open, done);
const openId = store.open(open);
process.stdout.write(JSON.stringify({ openId, finishedId }) + '\\n');
// The store stays reachable until the kill: once unreachable, garbage collection could close its
// connection, which checkpoints and deletes the write-ahead log (this test failed now and then so).
setInterval(() => void store, 60000);
`;
}

async function firstLine(stream: NodeJS.ReadableStream): Promise<string> {
  let buffered = '';
  for await (const chunk of stream) {
    buffered += String(chunk);
    const end = buffered.indexOf('\n');
    if (end >= 0) return buffered.slice(0, end);
  }
  throw new Error(`writer exited before reporting a write; output: ${buffered}`);
}
