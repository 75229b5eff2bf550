import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { auditLogDir } from '../src/audit/log/segment-files';
import { resolveServeConfig } from '../src/config';
import { readDescriptorLimit } from '../src/descriptors';
import { runCli } from './helpers/serve-process';
import { startServed } from './helpers/served-proxy';
import type { ServedProxy } from './helpers/served-proxy';

/**
 * GET /api/audit/head (issue 17) is the head `tollgate audit verify` ends at, on the real serve
 * wiring: the writer on the proxy's thread, and on the writer thread (--audit-fsync) with a key.
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Heads { heads: Array<{ chain: string; id: number; hash: string }> }

let served: ServedProxy | null = null;
afterEach(async () => {
  await served?.close();
  if (served !== null) fs.rmSync(served.dir, { recursive: true, force: true });
  served = null;
});

/**
 * `audit verify --expect-head` against the served head. The head follows the writer's answers,
 * which can reach the API a moment after the index shows the records: read again (bounded)
 * until they agree, which they must once the writer is idle.
 */
async function verifyAgainstServedHead(proxy: ServedProxy, ...extra: string[]): Promise<{ head: Heads['heads'][number]; run: ReturnType<typeof runCli> }> {
  for (let attempt = 1; ; attempt += 1) {
    const head = ((await proxy.admin('/api/audit/head')).body as Heads).heads[0];
    const run = runCli('audit', 'verify', '--db', proxy.dbFile, ...extra, '--expect-head', head.hash);
    if (run.status === 0 || attempt === 20) return { head, run };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function requestsThenHead(proxy: ServedProxy, n: number): Promise<Heads['heads'][number]> {
  for (let i = 0; i < n; i += 1) expect((await proxy.get(`/chain/${i}`)).status).toBe(200);
  // The read barrier: every answered request is in the index, so the writer has written them all.
  const records = await proxy.records();
  expect(records).toHaveLength(n);
  expect(records.every((r) => r.path?.startsWith('/chain/'))).toBe(true);
  const answer = await proxy.admin('/api/audit/head');
  expect(answer.status).toBe(200);
  const { heads } = answer.body as Heads;
  expect(heads).toHaveLength(1);
  return heads[0];
}

test('the served head equals what audit verify prints, and follows new requests', async () => {
  served = await startServed();
  const head = await requestsThenHead(served, 3);
  expect(head.chain).toMatch(UUID);
  expect(head.chain).toBe(fs.readFileSync(path.join(auditLogDir(served.dbFile), 'store-id'), 'utf8').trim());
  expect(head.hash).toMatch(/^[0-9a-f]{64}$/);
  const { head: verified, run } = await verifyAgainstServedHead(served);
  expect(run.status).toBe(0);
  // The head's id is its last entry's record (often a completion of an earlier record), not the highest id.
  const shown = new RegExp(`^verified \\d+ entries \\(records 1\\.\\.(\\d+)\\), head ${verified.hash}\\n$`).exec(run.stdout);
  expect(shown).not.toBeNull();
  expect(Number(shown?.[1])).toBeGreaterThanOrEqual(verified.id);
  expect((await served.get('/chain/more')).status).toBe(200);
  await served.records();
  const later = await verifyAgainstServedHead(served);
  expect(later.head.hash).not.toBe(head.hash);
  expect(later.run.status).toBe(0);
});

test('on the writer thread (--audit-fsync) with --audit-key: the head is mirrored, and only the key verifies it', async () => {
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-key-'));
  const keyFile = path.join(keyDir, 'audit.key');
  fs.writeFileSync(keyFile, 'served key bytes', { mode: 0o600 });
  try {
    served = await startServed({ config: { auditFsync: true, auditKeyFile: keyFile } });
    await requestsThenHead(served, 4);
    const { head, run } = await verifyAgainstServedHead(served, '--audit-key', keyFile);
    expect(run.stdout).toContain(`head ${head.hash}`);
    expect(`${run.status} ${run.stderr}`).toBe('0 ');
    expect(runCli('audit', 'verify', '--db', served.dbFile).status).toBe(1);
    expect(served.lines.map((l) => JSON.stringify(l)).join('\n')).not.toContain('served key bytes');
  } finally {
    fs.rmSync(keyDir, { recursive: true, force: true });
  }
});

test('serve refuses a key file others can read, or an empty one, at start', () => {
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-key-'));
  try {
    const loose = path.join(keyDir, 'loose.key');
    fs.writeFileSync(loose, 'k');
    fs.chmodSync(loose, 0o644);
    const empty = path.join(keyDir, 'empty.key');
    fs.writeFileSync(empty, '', { mode: 0o600 });
    expect(() => resolveServeConfig({ auditKey: loose, db: path.join(keyDir, 'a.db') }, {}, readDescriptorLimit())).toThrow(/readable or writable by group or others/);
    expect(() => resolveServeConfig({}, { TOLLGATE_AUDIT_KEY: empty, TOLLGATE_DB: path.join(keyDir, 'a.db') }, readDescriptorLimit())).toThrow(/empty/);
  } finally {
    fs.rmSync(keyDir, { recursive: true, force: true });
  }
});
