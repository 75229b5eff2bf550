import { connect } from 'node:net';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { IncomingHttpHeaders } from 'node:http';
import { startOrigin } from '../helpers/proxy-harness';
import type { Origin, ProxyHarness } from '../helpers/proxy-harness';

/** What one raw exchange with the proxy produced. */
export interface RawOutcome {
  /** Status of the first final (non-1xx) response, or null if none arrived. */
  status: number | null;
  /** Every byte the proxy sent, latin1. */
  text: string;
  /** How the exchange ended: a complete response, the peer closing, an error, or our time limit. */
  ended: 'response' | 'close' | 'error' | 'timeout';
}

export interface SendOptions {
  /** Half-close (FIN) right after writing. */
  halfClose?: boolean;
  /** The request was a HEAD: its answer has no body whatever Content-Length says. */
  headRequest?: boolean;
  /** How many complete final responses to wait for (pipelined requests); default 1. */
  responses?: number;
}

/**
 * How many final responses in `text` are complete (head, and body by Content-Length). A
 * tunnel's 200 is complete at its head and ends the count: what follows is tunnel payload.
 */
function completeResponses(text: string, options: SendOptions): number {
  let rest = text;
  let complete = 0;
  for (let guard = 0; guard < 20; guard += 1) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) return complete;
    const head = rest.slice(0, end);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? NaN);
    if (Number.isNaN(status)) return complete;
    rest = rest.slice(end + 4);
    if (status >= 100 && status < 200) continue;
    if (status === 200 && / Connection Established$/.test(head.split('\r\n')[0])) return complete + 1;
    const length = options.headRequest ? '0' : /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
    // No length: the body runs to the close, which the caller waits for.
    if (length === undefined || rest.length < Number(length)) return complete;
    complete += 1;
    rest = rest.slice(Number(length));
  }
  return complete;
}

function statusOf(text: string): number | null {
  const final = /(?:^|\r\n\r\n)HTTP\/1\.[01] ([2-5]\d\d)/.exec(text);
  return final ? Number(final[1]) : null;
}

/**
 * Send raw bytes on a fresh connection and read until the complete response(s), the close,
 * or `limitMs`; then destroy the socket. Never rejects: a reset is an outcome, not a failure.
 */
export function sendRaw(port: number, bytes: string | Buffer, limitMs = 2000, options: SendOptions = {}): Promise<RawOutcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const socket: Socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const finish = (ended: RawOutcome['ended']): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ status: statusOf(text), text, ended });
    };
    const timer = setTimeout(() => finish('timeout'), limitMs);
    socket.on('connect', () => {
      const data = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
      if (options.halfClose) socket.end(data);
      else socket.write(data);
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (completeResponses(Buffer.concat(chunks).toString('latin1'), options) >= (options.responses ?? 1)) finish('response');
    });
    socket.on('end', () => finish('close'));
    socket.on('close', () => finish('close'));
    socket.on('error', () => finish('error'));
  });
}

/** Resolves when the proxy's side of the next accepted connection has closed. */
export function nextConnectionClosed(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.once('connection', (socket: Socket) => {
      if (socket.closed) return resolve();
      // A tunnel already puts ten 'close' listeners on the client socket (http.Server, gauges,
      // registry, two pipelines, splice): ours must not trip Node's leak warning.
      socket.setMaxListeners(socket.getMaxListeners() + 1);
      socket.once('close', () => resolve());
    });
  });
}

/** Highest audit record id so far (0 when empty). */
export function maxRecordId(proxy: ProxyHarness): number {
  return proxy.records().reduce((max, r) => Math.max(max, r.id), 0);
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

/** A local origin that records every request it receives and answers "ok". */
export async function startRecordingOrigin(): Promise<Origin & { seen: SeenRequest[] }> {
  const seen: SeenRequest[] = [];
  const origin = await startOrigin((req, res) => {
    // Counted on arrival, so a request whose body never ends still shows as forwarded.
    const entry: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: '' };
    seen.push(entry);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      entry.body = Buffer.concat(chunks).toString('latin1');
      res.end('ok');
    });
  });
  return Object.assign(origin, { seen });
}
