import { writeFileSync } from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import pino from 'pino';
import type { SelfAddress } from '../src/policy/guard';
import { loadPolicy } from '../src/policy/load';
import { PolicyHolder } from '../src/policy/watch';
import type { ProxyContext } from '../src/proxy/context';
import { createProxyServer } from '../src/proxy/server';
import {
  listenOn, parseHead, rawConnect, readUntil, startOrigin, startProxy, type Origin, type ProxyHarness,
} from './helpers/proxy-harness';

/**
 * A policy reload swaps the policy for new requests at once and leaves open tunnels alone: a
 * decision is made once, when a tunnel or request starts. The harness's policy is fixed, so this
 * runs the proxy on a real PolicyHolder and reloads it directly; test/serve-process.test.ts
 * covers the file watcher, SIGHUP and the log and /readyz of a failed reload.
 */
const policyText = (action: 'allow' | 'deny'): string => `version: 1
network:
  allow_ranges: [127.0.0.0/8]
rules:
  - name: loopback-${action}
    action: ${action}
    hosts: [127.0.0.1]
    ports: any
`;

let harness: ProxyHarness;
let policies: string;
let holder: PolicyHolder;
let proxy: HttpServer;
let proxyPort: number;
let echo: Server;
let echoPort: number;
let origin: Origin;
const clients: Socket[] = [];

function writePolicy(text: string): void {
  writeFileSync(path.join(policies, 'policy.yaml'), text);
}

/**
 * The harness's context with a PolicyHolder in place of its fixed policy, on a server of its
 * own (as serve.ts wires it); audit, resolver, limits and the tunnel registry are the harness's.
 */
beforeEach(async () => {
  harness = await startProxy({ policies: { 'policy.yaml': policyText('allow') } });
  policies = path.join(harness.dir, 'policies');
  const loaded = loadPolicy(policies);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const self: SelfAddress[] = [];
  holder = new PolicyHolder(policies, loaded.policy, () => self, pino({ level: 'silent' }));
  const ctx: ProxyContext = { ...harness.ctx, active: holder.active };
  proxy = createProxyServer(ctx);
  proxyPort = await listenOn(proxy);
  self.push({ host: '127.0.0.1', port: proxyPort });
  holder.refreshGuard();
  echo = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.pipe(socket);
  });
  echoPort = await listenOn(echo);
  origin = await startOrigin((_req, res) => res.end('hello'));
});

afterEach(async () => {
  for (const socket of clients.splice(0)) socket.destroy();
  harness.ctx.tunnels.destroyAll();
  proxy.closeAllConnections();
  await new Promise<void>((resolve) => proxy.close(() => resolve()));
  await new Promise<void>((resolve) => echo.close(() => resolve()));
  await origin.close();
  holder.close();
  await harness.close();
});

async function connectThrough(): Promise<{ socket: Socket; head: ReturnType<typeof parseHead> }> {
  const socket = await rawConnect(proxyPort);
  clients.push(socket);
  socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
  return { socket, head: parseHead(await readUntil(socket, '\r\n\r\n')) };
}

async function roundTrip(socket: Socket, text: string): Promise<string> {
  const reply = readUntil(socket, text);
  socket.write(text);
  return reply;
}

function reload(action: 'allow' | 'deny'): string {
  writePolicy(policyText(action));
  const result = holder.reload();
  expect(result.ok).toBe(true);
  return result.version;
}

describe('policy reload', () => {
  test('an open tunnel keeps running across a reload; new tunnels get the new policy at once', async () => {
    const before = holder.active().policy.version;
    const open = await connectThrough();
    expect(open.head.status).toBe(200);
    expect(await roundTrip(open.socket, 'before the reload')).toBe('before the reload');

    const after = reload('deny');
    expect(after).not.toBe(before);
    expect(await roundTrip(open.socket, 'after the reload')).toBe('after the reload');

    const refused = await connectThrough();
    expect(refused.head.status).toBe(403);
    expect(refused.head.headers['x-tollgate-rule']).toBe('loopback-deny');
    // The old tunnel still carries bytes after the refusal.
    expect(await roundTrip(open.socket, 'still open')).toBe('still open');

    const records = harness.records();
    expect(records.map((r) => [r.decision, r.rule, r.policy_version])).toEqual([
      ['deny', 'loopback-deny', after],
      ['allow', 'loopback-allow', before],
    ]);
    expect(records[1].ended_at).toBeNull();
  });

  test('an invalid edit keeps the last good policy for new requests', async () => {
    reload('deny');
    writePolicy('version: 1\nrules:\n  - name: x\n    acton: allow\n');
    const failed = holder.reload();
    expect(failed.ok).toBe(false);
    expect(failed.problems[0]).toMatch(/^policy\.yaml:4: /);
    expect((await connectThrough()).head.status).toBe(403);
    reload('allow');
    expect((await connectThrough()).head.status).toBe(200);
  });

  test('the next request on a keep-alive connection is decided under the new policy', async () => {
    const socket = await rawConnect(proxyPort);
    clients.push(socket);
    const get = `GET http://127.0.0.1:${origin.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`;
    socket.write(get);
    const first = parseHead(await readUntil(socket, 'hello'));
    expect(first.status).toBe(200);
    reload('deny');
    socket.write(get);
    const second = parseHead(await readUntil(socket, '\r\n\r\n'));
    expect(second.status).toBe(403);
    expect(second.headers['x-tollgate-rule']).toBe('loopback-deny');
  });
});
