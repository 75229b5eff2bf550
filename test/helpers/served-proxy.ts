import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { AuditRecordJson } from '../../src/audit/record-types';
import type { ServeConfig } from '../../src/config';
import { startServing } from '../../src/serve';
import type { RunningProxy } from '../../src/serve';
import type { AuditDependencies } from '../../src/serve-audit';
import { PROXY_TEST_POLICY } from './policies';
import { parseHead, rawConnect, readAll, startOrigin } from './proxy-harness';
import { testServeConfig } from './serve-config';
import type { Origin } from './proxy-harness';

/**
 * The real `serve` wiring in-process (writer thread, admin app, disk watermark, retention), on
 * port 0, with a real audit file in a temp folder and a loopback origin. The log is captured so
 * tests can await its lines.
 */

export interface LogLine {
  msg: string;
  [key: string]: unknown;
}

export interface ServedProxy {
  readonly running: RunningProxy;
  readonly dir: string;
  readonly dbFile: string;
  readonly origin: Origin;
  readonly lines: LogLine[];
  /** A plain HTTP GET of `path` on the origin through the proxy (Connection: close). */
  get(pathname: string): Promise<{ status: number; headers: Record<string, string>; body: string }>;
  /** GET on the admin address; the body parsed as JSON when it is JSON. */
  admin(pathname: string): Promise<{ status: number; body: unknown; text: string }>;
  /** Every record the admin API returns (newest first, up to 500). */
  records(): Promise<AuditRecordJson[]>;
  /** The first log line matching, already seen or yet to come (bounded). */
  waitForLog(match: (line: LogLine) => boolean, limitMs?: number): Promise<LogLine>;
  close(): Promise<void>;
}

export interface ServedOptions {
  config?: Partial<ServeConfig>;
  deps?: AuditDependencies;
  /** Runs with the audit file's path before serve opens it (to seed old records). */
  seed?: (dbFile: string) => void;
}

export async function startServed(options: ServedOptions = {}): Promise<ServedProxy> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-served-'));
  mkdirSync(path.join(dir, 'policies'));
  writeFileSync(path.join(dir, 'policies', 'policy.yaml'), PROXY_TEST_POLICY);
  const dbFile = path.join(dir, 'data', 'audit.db');
  mkdirSync(path.dirname(dbFile));
  options.seed?.(dbFile);
  const lines: LogLine[] = [];
  const waiters = new Set<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }>();
  const destination = {
    write(text: string): void {
      const line = JSON.parse(text) as LogLine;
      lines.push(line);
      for (const waiter of [...waiters]) {
        if (!waiter.match(line)) continue;
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    },
  };
  const origin = await startOrigin((req, res) => res.end(`origin saw ${req.url ?? ''}`));
  const config = testServeConfig({ policiesDir: path.join(dir, 'policies'), dbFile, ...options.config });
  const running = await startServing(config, pino({ level: 'info', base: undefined }, destination), options.deps);
  const adminBase = `http://127.0.0.1:${running.adminAddress.port}`;
  const admin = async (pathname: string): Promise<{ status: number; body: unknown; text: string }> => {
    const response = await fetch(`${adminBase}${pathname}`);
    const text = await response.text();
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    return { status: response.status, body, text };
  };
  let closed = false;
  return {
    running,
    dir,
    dbFile,
    origin,
    lines,
    get: async (pathname) => {
      const socket = await rawConnect(running.proxyAddress.port);
      socket.write(`GET http://127.0.0.1:${origin.port}${pathname} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      return parseHead(await readAll(socket));
    },
    admin,
    records: async () => ((await admin('/api/requests?limit=500')).body as { items: AuditRecordJson[] }).items,
    waitForLog: (match, limitMs = 15_000) => {
      const seen = lines.find(match);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = {
          match,
          resolve: (line: LogLine) => {
            clearTimeout(timer);
            resolve(line);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching log line within ${limitMs} ms; last lines: ${JSON.stringify(lines.slice(-5))}`));
        }, limitMs);
        waiters.add(waiter);
      });
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await running.shutdown();
      await origin.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
