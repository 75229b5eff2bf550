import { connect } from 'node:net';
import type { Socket } from 'node:net';
import type { Route, ThroughputResult } from './tool-loads';
import { noteFailure } from './tunnel-client';
import type { TunnelFailures } from './tunnel-client';

/**
 * Loads no existing tool fits: hey and wrk cannot open a CONNECT tunnel without TLS (whose
 * handshakes would cost more CPU than the proxies on two cores), and curl is too slow for
 * throughput. So a small raw-socket client: CONNECT, wait for the 200, then plain HTTP/1.1
 * inside the tunnel. With no proxy (`proxyPort` null) the same request goes straight to the origin.
 */

const HEAD_END = Buffer.from('\r\n\r\n');
const HEAD_LIMIT = 16 * 1024;
/** tinyproxy answers CONNECT with HTTP/1.0. */
const TUNNEL_OPEN = /^HTTP\/1\.[01] 200[ \r]/;
const RESPONSE_OK = /^HTTP\/1\.[01] 200[ \r]/;
/**
 * Every exchange reads into this one buffer (`onread`): no allocation per read, and reads of up to
 * 1 MiB, so the client stays cheap next to the proxy it measures. Sharing it is safe because each
 * read is consumed (counted, or a head copied out) before the callback returns.
 */
const READ_BUFFER = Buffer.alloc(1024 * 1024);

export interface ExchangeResult {
  /** The origin's response status line. */
  status: string;
  bodyBytes: number;
  /** False when `deadlineMs` cut the response short. */
  complete: boolean;
  /** From writing the request (after the tunnel's 200) to the close. */
  ms: number;
}

export interface ExchangeOptions {
  /** No bytes either way for this long fails the exchange. */
  idleMs: number;
  /** Cut the response at this point and report what arrived (bulk loads are bounded in time). */
  deadlineMs?: number;
}

function connectRequest(originPort: number): string {
  return `CONNECT 127.0.0.1:${originPort} HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\n\r\n`;
}

/** Heads are small: gathered by copying out of the shared read buffer, until their blank line. */
class HeadReader {
  private head: Buffer = Buffer.alloc(0);

  /** The status line and the bytes after the head once it is complete; null until then. */
  read(chunk: Buffer): { status: string; rest: Buffer } | null {
    this.head = Buffer.concat([this.head, chunk]);
    const end = this.head.indexOf(HEAD_END);
    if (end === -1) {
      if (this.head.length > HEAD_LIMIT) throw new Error('no end of head within 16 KiB');
      return null;
    }
    const status = this.head.subarray(0, this.head.indexOf('\r\n')).toString('latin1');
    const rest = this.head.subarray(end + HEAD_END.length);
    this.head = Buffer.alloc(0);
    return { status, rest };
  }
}

/**
 * One `GET path` with `Connection: close` on a fresh connection: through a tunnel (CONNECT,
 * wait for the 200, then the GET) or straight to the origin. Reads to the close and counts the
 * body without keeping it, so a 1 GiB response costs no memory.
 */
class OneExchange {
  private phase: 'tunnel' | 'head' | 'body';
  private readonly heads = new HeadReader();
  private readonly socket: Socket;
  private status = '';
  private bodyBytes = 0;
  private sentAt = 0;
  private cut = false;
  private deadline: NodeJS.Timeout | undefined;

  constructor(
    private readonly route: Route,
    private readonly requestPath: string,
    private readonly options: ExchangeOptions,
    private readonly settle: { resolve: (result: ExchangeResult) => void; reject: (err: Error) => void },
  ) {
    this.phase = route.proxyPort === null ? 'head' : 'tunnel';
    this.socket = connect({
      port: route.proxyPort ?? route.originPort,
      host: '127.0.0.1',
      onread: { buffer: READ_BUFFER, callback: (size) => (this.onData(READ_BUFFER.subarray(0, size)), true) },
    });
    this.socket.setNoDelay(true);
    this.socket.setTimeout(options.idleMs, () => this.fail(new Error(`no bytes for ${options.idleMs} ms (${this.phase})`)));
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('connect', () => (this.phase === 'tunnel' ? this.socket.write(connectRequest(route.originPort)) : this.sendRequest()));
    this.socket.on('close', () => this.onClose());
  }

  private fail(err: Error): void {
    clearTimeout(this.deadline);
    this.socket.destroy();
    this.settle.reject(err);
  }

  private sendRequest(): void {
    this.sentAt = performance.now();
    this.socket.write(`GET ${this.requestPath} HTTP/1.1\r\nHost: 127.0.0.1:${this.route.originPort}\r\nConnection: close\r\n\r\n`);
    const { deadlineMs } = this.options;
    if (deadlineMs !== undefined) this.deadline = setTimeout(() => ((this.cut = true), this.socket.destroy()), deadlineMs);
  }

  private onData(chunk: Buffer): void {
    if (this.phase === 'body') return void (this.bodyBytes += chunk.length);
    let head: { status: string; rest: Buffer } | null;
    try {
      head = this.heads.read(chunk);
    } catch (err) {
      return this.fail(err as Error);
    }
    if (head === null) return;
    this.status = head.status;
    if (this.phase === 'head') {
      this.phase = 'body';
      this.bodyBytes += head.rest.length;
      return;
    }
    if (!TUNNEL_OPEN.test(head.status)) return this.fail(new Error(`CONNECT answered ${JSON.stringify(head.status)}`));
    this.phase = 'head';
    this.sendRequest();
    if (head.rest.length > 0) this.onData(head.rest);
  }

  private onClose(): void {
    clearTimeout(this.deadline);
    // An error has already rejected; a cut at the deadline is a result.
    if (this.socket.errored && !this.cut) return;
    if (this.phase !== 'body') return this.fail(new Error(`closed before the response (${this.phase})`));
    this.settle.resolve({ status: this.status, bodyBytes: this.bodyBytes, complete: !this.cut, ms: performance.now() - this.sentAt });
  }
}

export function exchangeOnce(route: Route, requestPath: string, options: ExchangeOptions): Promise<ExchangeResult> {
  return new Promise((resolve, reject) => void new OneExchange(route, requestPath, options, { resolve, reject }));
}

/**
 * (2) `concurrency` clients, each in a loop for `seconds`: open a tunnel, one small GET through
 * it, close. The rate counts exchanges that got the whole `hello`.
 */
export async function runConnectRate(route: Route, concurrency: number, seconds: number, failures: TunnelFailures): Promise<ThroughputResult> {
  const started = performance.now();
  const until = started + seconds * 1000;
  let completed = 0;
  const client = async (): Promise<void> => {
    while (performance.now() < until) {
      try {
        const result = await exchangeOnce(route, '/', { idleMs: 10_000 });
        if (RESPONSE_OK.test(result.status) && result.bodyBytes === 5) completed += 1;
        else noteFailure(failures, `answered ${JSON.stringify(result.status)} with ${result.bodyBytes} body bytes`);
      } catch (err) {
        noteFailure(failures, err instanceof Error ? err.message : String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const elapsed = (performance.now() - started) / 1000;
  return { requests: completed, seconds: elapsed, rate: completed / elapsed, errors: failures.count, errorKinds: failures.first[0] ?? null };
}

export interface BulkResult {
  bytes: number;
  seconds: number;
  mibPerSecond: number;
  complete: boolean;
}

/** (3) One response of `bytes` through one tunnel, cut after `limitSeconds`. */
export async function runBulk(route: Route, bulkPath: string, bytes: number, limitSeconds: number): Promise<BulkResult> {
  const result = await exchangeOnce(route, bulkPath, { idleMs: 10_000, deadlineMs: limitSeconds * 1000 });
  if (!RESPONSE_OK.test(result.status)) throw new Error(`bulk GET answered ${JSON.stringify(result.status)}`);
  if (result.complete && result.bodyBytes !== bytes) throw new Error(`bulk GET ended after ${result.bodyBytes} of ${bytes} bytes`);
  const seconds = result.ms / 1000;
  return { bytes: result.bodyBytes, seconds, mibPerSecond: result.bodyBytes / 1048576 / seconds, complete: result.complete };
}

/**
 * (4) A tunnel to the echo origin with one small round trip through it, then left idle (as in
 * bench/idle-tunnels.ts, but accepting tinyproxy's HTTP/1.0 answer).
 */
export function openIdleTunnel(proxyPort: number, echoPort: number, limitMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port: proxyPort, host: '127.0.0.1' });
    let received = '';
    let open = false;
    const timer = setTimeout(() => fail(new Error(`tunnel not ready within ${limitMs} ms`)), limitMs);
    const stopListening = (): void => {
      clearTimeout(timer);
      socket.off('error', fail);
      socket.off('close', onClose);
      socket.off('data', onData);
    };
    function fail(err: Error): void {
      stopListening();
      socket.destroy();
      reject(err);
    }
    function onClose(): void {
      fail(new Error(`closed before the echo; got ${JSON.stringify(received.slice(0, 80))}`));
    }
    function onData(chunk: Buffer): void {
      received += chunk.toString('latin1');
      if (!open) {
        const end = received.indexOf('\r\n\r\n');
        if (end === -1) return;
        if (!TUNNEL_OPEN.test(received)) return fail(new Error(`CONNECT answered ${JSON.stringify(received.split('\r\n')[0])}`));
        open = true;
        received = received.slice(end + 4);
        socket.write('ping\n');
      }
      if (received !== 'ping\n') return;
      stopListening();
      // Held idle from here: a later reset must not become an uncaught 'error'.
      socket.on('error', () => socket.destroy());
      resolve(socket);
    }
    socket.on('error', fail);
    socket.once('close', onClose);
    socket.once('connect', () => socket.write(connectRequest(echoPort)));
    socket.on('data', onData);
  });
}
