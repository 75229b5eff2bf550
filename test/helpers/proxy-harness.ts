import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { openAuditStore } from '../../src/audit/store';
import type { AuditStore, AuditStoreOptions } from '../../src/audit/store';
import { listRequests } from '../../src/audit/query';
import { GroupCommit } from '../../src/audit/group-commit';
import type { AuditRecordJson, AuditSink } from '../../src/audit/record-types';
import { loadPolicy } from '../../src/policy/load';
import { activatePolicy } from '../../src/policy/watch';
import type { ProxyContext, ProxyLimits, ProxyTimeouts } from '../../src/proxy/context';

/** Generous for loopback; tests that exercise a timeout pass a short one. */
const DEFAULT_TEST_TIMEOUTS: ProxyTimeouts = {
  dnsMs: 2000,
  connectMs: 2000,
  tunnelIdleMs: 60_000,
  tunnelLifetimeMs: 0,
  requestIdleMs: 30_000,
};
import type { Resolver } from '../../src/proxy/dial';
import type { Authenticator } from '../../src/auth/authenticator';
import { createMetrics } from '../../src/metrics';
import { createUpstreamPool } from '../../src/proxy/relay-direct';
import { createProxyServer } from '../../src/proxy/server';
import { ParentAgents } from '../../src/proxy/parent-agents';
import { TunnelRegistry } from '../../src/proxy/tunnel-registry';
import { parseRange } from '../../src/policy/ip-range';
import type { IpRange } from '../../src/policy/ip-range';
import type { Inspection } from '../../src/inspect/types';

export interface ProxyHarness {
  readonly port: number;
  readonly dir: string;
  readonly store: AuditStore;
  readonly ctx: ProxyContext;
  readonly server: Server;
  /** Every audit record, newest first. */
  records(): AuditRecordJson[];
  /** The first record matching `predicate`, awaiting audit writes (bounded). */
  waitForRecord(predicate: (r: AuditRecordJson) => boolean, limitMs?: number): Promise<AuditRecordJson>;
  /** Commit the completions group commit is holding (up to 20 ms), as a shutdown does. */
  flushAudit(): void;
  /**
   * Copy the whole write-ahead log into the database file and empty it, so the file's bytes
   * can be searched. Retried while the checkpoint worker is running one of its own (busy).
   */
  checkpointAudit(): Promise<void>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** File name -> YAML text of the policies folder. */
  policies: Record<string, string>;
  /** Name -> addresses; names not listed fail with ENOTFOUND. */
  hosts?: Record<string, string[]>;
  resolver?: Resolver;
  timeouts?: Partial<ProxyTimeouts>;
  limits?: Partial<ProxyLimits>;
  authenticator?: Authenticator;
  /** Passed to openAuditStore (e.g. a short busy timeout for lock tests). */
  auditOptions?: AuditStoreOptions;
  /** --proxy-protocol-from ranges (CIDR text); none: off. */
  proxyProtocolFrom?: string[];
  /** --inspect-ca: what rules with tls: inspect terminate TLS with; none: no tunnel is inspected. */
  inspect?: Inspection;
}

function testRange(text: string): IpRange {
  const parsed = parseRange(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed.range;
}

/** A resolver over a fixed table: tests never touch real DNS. */
export function tableResolver(hosts: Record<string, string[]>): Resolver {
  return async (host) => {
    const addresses = hosts[host];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }) as const);
  };
}

/** Start the proxy in-process on 127.0.0.1:0 with a real SQLite audit file in a temp folder. */
export async function startProxy(options: HarnessOptions): Promise<ProxyHarness> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-test-'));
  const policiesDir = path.join(dir, 'policies');
  mkdirSync(policiesDir);
  for (const [name, text] of Object.entries(options.policies)) writeFileSync(path.join(policiesDir, name), text);
  const loaded = loadPolicy(policiesDir);
  if (!loaded.ok) throw new Error(`test policy invalid: ${JSON.stringify(loaded.problems)}`);
  const store = openAuditStore(path.join(dir, 'audit.db'), options.auditOptions);
  const writes = new EventEmitter();
  const audit = observed(store, writes);
  const self: Array<{ host: string; port: number }> = [];
  let active = activatePolicy(loaded.policy, self);
  const timeouts: ProxyTimeouts = { ...DEFAULT_TEST_TIMEOUTS, ...options.timeouts };
  const ctx: ProxyContext = {
    active: () => active,
    audit,
    resolver: options.resolver ?? tableResolver(options.hosts ?? {}),
    clock: () => new Date(),
    timeouts,
    limits: { maxTunnels: 5000, maxTunnelsPerSource: 5000, maxClientConnections: 100_000, ...options.limits },
    gauges: { clientSockets: 0, refusingSockets: 0, activeRequests: 0 },
    metrics: createMetrics(),
    authenticator: options.authenticator ?? null,
    log: pino({ level: 'silent' }),
    upstreamPool: createUpstreamPool(timeouts),
    parentAgents: new ParentAgents(),
    tunnels: new TunnelRegistry(),
    proxyProtocolFrom: (options.proxyProtocolFrom ?? []).map(testRange),
    inspect: options.inspect,
  };
  const server = createProxyServer(ctx);
  const port = await listenOn(server);
  self.push({ host: '127.0.0.1', port });
  active = activatePolicy(loaded.policy, self);
  const records = (): AuditRecordJson[] => listRequests(store.db, { limit: 1000 }).items;
  return {
    port,
    dir,
    store,
    ctx,
    server,
    records,
    waitForRecord: (predicate, limitMs = 5000) => waitForRecord(records, writes, predicate, limitMs),
    flushAudit: () => audit.flush(),
    checkpointAudit: async () => {
      for (let attempt = 0; attempt < 200; attempt += 1) {
        const [result] = store.db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
        if (result.busy === 0) return;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      throw new Error('the write-ahead log could not be checkpointed in 200 attempts');
    },
    close: async () => {
      ctx.tunnels.destroyAll();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await ctx.tunnels.whenEmpty();
      await ctx.upstreamPool.destroy();
      ctx.parentAgents.destroyAll();
      audit.flush();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function listenOn(server: Server | import('node:net').Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve) => server.listen(0, host, () => resolve((server.address() as AddressInfo).port)));
}

export interface Origin {
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

/** A local HTTP origin on port 0. */
export async function startOrigin(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Origin> {
  const server = createServer(handler);
  const port = await listenOn(server);
  return {
    port,
    server,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Open a raw TCP connection to the proxy. */
export function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: tests drive half-close themselves, like a real TLS client would.
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Read from a socket until the bytes contain `marker` (or the socket ends). */
export function readUntil(socket: Socket, marker: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (text.includes(marker)) done();
    };
    const done = (): void => {
      socket.off('data', onData);
      socket.off('end', done);
      socket.off('error', reject);
      resolve(text);
    };
    socket.on('data', onData);
    socket.once('end', done);
    socket.once('error', reject);
  });
}

/** Read everything until the peer ends its side, then end ours. */
export function readAll(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const finish = (): void => {
      socket.end();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    if (socket.readableEnded) return finish();
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', finish);
    socket.once('close', finish);
    socket.once('error', reject);
  });
}

/** Parse a raw HTTP response head. */
export function parseHead(text: string): { status: number; headers: Record<string, string>; body: string } {
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const [statusLine, ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: end === -1 ? '' : text.slice(end + 4) };
}

/** The proxy's audit sink (group commit), announcing every write so tests await records instead of polling. */
function observed(store: AuditStore, writes: EventEmitter): GroupCommit {
  return new GroupCommit({
    writable: () => store.health().writable,
    commitBatch: (opens, completions, finished) => {
      try {
        return store.commitBatch(opens, completions, finished);
      } finally {
        writes.emit('write');
      }
    },
  });
}

/** Resolves with the first record matching `predicate`, checked now and after each audit write. */
function waitForRecord(
  records: () => AuditRecordJson[],
  writes: EventEmitter,
  predicate: (r: AuditRecordJson) => boolean,
  limitMs: number,
): Promise<AuditRecordJson> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const hit = records().find(predicate);
      if (!hit) return false;
      clearTimeout(timer);
      writes.off('write', check);
      resolve(hit);
      return true;
    };
    const timer = setTimeout(() => {
      writes.off('write', check);
      reject(new Error(`no matching audit record within ${limitMs} ms: ${JSON.stringify(records().slice(0, 3))}`));
    }, limitMs);
    writes.on('write', check);
    check();
  });
}
