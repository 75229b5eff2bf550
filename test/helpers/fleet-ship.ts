import type { Socket } from 'node:net';
import { Client } from 'pg';
import { auditLogDir } from '../../src/audit/log/segment-files';
import { readLog } from '../../src/audit/log/segment-reader';
import { parseHead, rawConnect, readAll, readUntil } from './proxy-harness';

/** Helpers for the shipping tests: requests through a served proxy, and what PostgreSQL holds. */

/** Polls `check` until it returns a value (not undefined/false), failing after `limitMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, limitMs = 30_000): Promise<T> {
  const until = Date.now() + limitMs;
  let last: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${limitMs} ms waiting for ${what}${last === null ? '' : ` (last error: ${String(last)})`}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A plain-HTTP request through the proxy on its own connection; its status (0 when refused). */
export async function proxyGet(proxyPort: number, target: string): Promise<number> {
  const socket = await rawConnect(proxyPort);
  socket.on('error', () => undefined);
  socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  return parseHead(await readAll(socket)).status;
}

/** A CONNECT tunnel to the echo origin, open and checked with one round trip. */
export async function openTunnel(proxyPort: number, echoPort: number): Promise<Socket> {
  const socket = await rawConnect(proxyPort);
  socket.on('error', () => undefined);
  socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
  const head = await readUntil(socket, '\r\n\r\n');
  if (!head.startsWith('HTTP/1.1 200')) throw new Error(`CONNECT refused: ${head.split('\r\n')[0]}`);
  socket.write('ping');
  await readUntil(socket, 'ping');
  return socket;
}

/** Closes a tunnel from the client's side and waits until the proxy has let go of it. */
export function closeTunnel(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.end();
  });
}

/** The ids of every record in a store's local log (opens and finished records), and of completions. */
export function localLogIds(dbFile: string): { records: number[]; completed: number[] } {
  const records: number[] = [];
  const completed = new Set<number>();
  for (const item of readLog(auditLogDir(dbFile))) {
    if (item.kind !== 'entry') continue;
    const { entry } = item;
    if (entry.type === 'complete') completed.add(entry.id);
    else records.push(entry.id);
    if (entry.type === 'finished') completed.add(entry.id);
  }
  return { records, completed: [...completed] };
}

export interface PgRecord {
  store_id: string;
  local_id: number;
  node: string;
  done: boolean;
}

/** Every record PostgreSQL holds, in local id order per store. */
export async function pgRecords(url: string): Promise<PgRecord[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const result = await client.query<{ store_id: string; local_id: string; node: string; done: boolean }>(
      'SELECT store_id::text, local_id, node, ended_at_ms IS NOT NULL AS done FROM requests ORDER BY store_id, local_id',
    );
    return result.rows.map((r) => ({ ...r, local_id: Number(r.local_id) }));
  } finally {
    await client.end();
  }
}

/** One sample of a metric from /metrics (the first line with that name), or null. */
export async function metricValue(adminPort: number, name: string): Promise<number | null> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
}

export async function readyz(adminPort: number, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`http://127.0.0.1:${adminPort}/readyz`, { headers });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
