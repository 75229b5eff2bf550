import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { startServing } from '../src/serve';
import type { RunningProxy } from '../src/serve';
import { listenOn, parseHead, rawConnect, readAll } from './helpers/proxy-harness';
import { testServeConfig } from './helpers/serve-config';

/**
 * Plain HTTP through a parent proxy uses a pooled keep-alive agent per parent. This runs the
 * real `serve` wiring in-process: a reload retires the agents of parents the new policy no
 * longer names (idle connections close at once, busy ones once their answer is complete), one
 * that still names the parent keeps its pool, and shutdown closes every parent connection.
 */
interface FakeParent {
  server: Server;
  port: number;
  /** Every connection the parent accepted, in order. */
  sockets: Socket[];
  /** Paths the parent was asked for, with the connection each arrived on. */
  seen: Array<{ url: string; socket: Socket }>;
  /** Answers held back by the parent (paths ending in /slow), resolved when one arrives. */
  held: (url: string) => Promise<ServerResponse>;
}

async function startFakeParent(): Promise<FakeParent> {
  const waiting = new Map<string, (res: ServerResponse) => void>();
  const arrived = new Map<string, ServerResponse>();
  const parent: FakeParent = {
    server: createServer((req, res) => {
      const url = req.url ?? '';
      parent.seen.push({ url, socket: req.socket });
      if (!url.endsWith('/slow')) return void res.end(`parent relayed ${url}`);
      arrived.set(url, res);
      waiting.get(url)?.(res);
    }),
    port: 0,
    sockets: [],
    seen: [],
    held: (url) => new Promise((resolve) => (arrived.has(url) ? resolve(arrived.get(url) as ServerResponse) : waiting.set(url, resolve))),
  };
  parent.server.on('connection', (socket: Socket) => parent.sockets.push(socket));
  parent.port = await listenOn(parent.server);
  return parent;
}

/** Resolves once the parent's side of `socket` is closed; fails clearly if it stays open. */
function closed(socket: Socket, limitMs = 5000): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the connection to the parent is still open after ${limitMs} ms`)), limitMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const policy = (parentPort: number | null, note = ''): string => `version: 1
${parentPort === null ? '' : `settings:\n  upstream: http://tollgate:secret@127.0.0.1:${parentPort}\n`}network:
  parent_ranges: [127.0.0.1/32]
rules:
  - name: origin
    action: allow
    hosts: [origin.test]
    ports: any
# ${note}
`;

describe('pooled agents of parent proxies', () => {
  let dir: string;
  let parent: FakeParent;
  let running: RunningProxy;
  let stopped: boolean;

  const writePolicy = (text: string): void => writeFileSync(path.join(dir, 'policies', 'policy.yaml'), text);

  async function get(url: string): Promise<{ status: number; body: string }> {
    const socket = await rawConnect(running.proxyAddress.port);
    socket.write(`GET ${url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    return parseHead(await readAll(socket));
  }

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-parent-agents-'));
    mkdirSync(path.join(dir, 'policies'));
    parent = await startFakeParent();
    writePolicy(policy(parent.port));
    const config = testServeConfig({ policiesDir: path.join(dir, 'policies'), dbFile: path.join(dir, 'audit.db') });
    running = await startServing(config, pino({ level: 'silent' }));
    stopped = false;
  });

  afterEach(async () => {
    if (!stopped) await running.shutdown();
    parent.server.closeAllConnections();
    await new Promise((resolve) => parent.server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  test('a reload that still names the parent keeps its pooled connection', async () => {
    expect(await get('http://origin.test/first')).toMatchObject({ status: 200, body: 'parent relayed http://origin.test/first' });
    const before = running.holder.active().policy.version;
    writePolicy(policy(parent.port, 'an unrelated edit'));
    running.reload();
    // The reload took the edit: the pool was kept across a real reload, not for want of one.
    expect(running.holder.active().policy.version).not.toBe(before);
    expect(await get('http://origin.test/second')).toMatchObject({ status: 200, body: 'parent relayed http://origin.test/second' });
    expect(parent.sockets).toHaveLength(1);
    expect(parent.seen.map((s) => s.socket)).toEqual([parent.sockets[0], parent.sockets[0]]);
  });

  test('a reload that no longer names the parent closes its idle connection', async () => {
    expect((await get('http://origin.test/idle')).status).toBe(200);
    expect(parent.sockets).toHaveLength(1);
    writePolicy(policy(null));
    running.reload();
    await closed(parent.sockets[0]);
  });

  test('a request in flight when its parent is dropped still gets its whole answer, then the connection closes', async () => {
    const answer = (async () => {
      const socket = await rawConnect(running.proxyAddress.port);
      socket.write('GET http://origin.test/slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      return parseHead(await readAll(socket));
    })();
    const res = await parent.held('http://origin.test/slow');
    writePolicy(policy(null));
    running.reload();
    res.end('the slow answer, complete');
    expect(await answer).toMatchObject({ status: 200, body: 'the slow answer, complete' });
    await closed(parent.sockets[0]);
  });

  test('shutdown closes pooled connections to parents', async () => {
    expect((await get('http://origin.test/before-shutdown')).status).toBe(200);
    stopped = true;
    await running.shutdown();
    await closed(parent.sockets[0]);
  });
});
