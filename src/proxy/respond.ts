import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import type { ProxyError } from '../request/errors';
import type { Exchange } from './exchange';
import { formatAuthority } from '../request/target';

/** Response headers tollgate sets on every answer it makes itself (SPEC §3). */
export const Header = {
  decision: 'X-Tollgate-Decision',
  rule: 'X-Tollgate-Rule',
  requestId: 'X-Tollgate-Request-Id',
  proxyAuthenticate: 'Proxy-Authenticate',
} as const;

export const PROXY_CHALLENGE = 'Basic realm="tollgate"';

/** What a client over a tunnel limit is told to wait before trying again. */
export const RETRY_AFTER_SECONDS = 5;

export interface ProxyAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * The one place that turns an error into what the client sees, so every refusal looks alike
 * and matches its audit record: a status, the
 * X-Tollgate-* headers and a one-line text body naming host:port, rule and reason.
 */
export function answerFor(error: ProxyError, exchange: Exchange): ProxyAnswer {
  const record = exchange.toOpen();
  const headers: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
  };
  if (error.status === 403) {
    headers[Header.decision] = 'deny';
    headers[Header.rule] = headerSafe(record.rule ?? '(default)');
  }
  if (error.status === 429) headers['Retry-After'] = String(error.retryAfterSeconds ?? RETRY_AFTER_SECONDS);
  // RFC 9110 §11.7.1: a 407 carries the challenge the client answers with credentials.
  if (error.status === 407) headers[Header.proxyAuthenticate] = PROXY_CHALLENGE;
  if (exchange.recordId !== null) headers[Header.requestId] = String(exchange.recordId);
  return { status: error.status, headers, body: `${describe(error, exchange, record.rule)}\n` };
}

function describe(error: ProxyError, exchange: Exchange, rule: string | null): string {
  const what = exchange.target
    ? `${exchange.kind === 'connect' ? 'CONNECT' : (exchange.method ?? 'request')} ${formatAuthority(exchange.target)}`
    : 'request';
  if (error.status === 403) return `tollgate: ${what} denied by rule ${rule ?? '(default)'}: ${printable(error.reason)}`;
  return `tollgate: ${what} failed: ${printable(error.reason)}`;
}

/** Bodies and headers echo text derived from client input: keep it printable ASCII. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
}

function headerSafe(text: string): string {
  return printable(text);
}

/**
 * Answer on a raw socket (CONNECT, or a request the HTTP parser rejected), then close it.
 * `linger: false` closes at once, the answer already handed to the kernel: for connections
 * refused in a burst, whose descriptors must not outlive the accept that opened them.
 */
export function writeRawAnswer(socket: Socket, answer: ProxyAnswer, { linger = true }: { linger?: boolean } = {}): void {
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const body = Buffer.from(answer.body, 'utf8');
  const lines = [`HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Error'}`];
  for (const [name, value] of Object.entries(answer.headers)) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${body.length}`, 'Connection: close', '', '');
  socket.end(Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), body]));
  if (linger) lingerThenClose(socket);
  else socket.destroy();
}

/** How long a refused client may take to read the answer and close its side. */
const LINGER_MS = 2000;

/**
 * After our FIN, read and discard what the client still sends (destroying at once could turn
 * unread bytes into a RST that makes the client lose the answer), but never wait for its FIN
 * for long: a half-open socket must not be a way to hold descriptors.
 */
function lingerThenClose(socket: Socket): void {
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/** Answer a plain HTTP request; the connection stays usable for the client's next request. */
export function sendAnswer(res: ServerResponse, answer: ProxyAnswer): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(answer.status, { ...answer.headers, 'Content-Length': Buffer.byteLength(answer.body) });
  res.end(answer.body);
}
