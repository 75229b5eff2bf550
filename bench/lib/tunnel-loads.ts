import { connect } from 'node:net';
import type { Socket } from 'node:net';
import type { Route, ThroughputResult } from './tool-loads';

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

/**
 * One `GET path` with `Connection: close`, through a fresh tunnel (or directly), read to the
 * close. Counts the body without keeping it, so a 1 GiB response costs no memory.
 */
export function exchangeOnce(route: Route, requestPath: string, options: ExchangeOptions): Promise<ExchangeResult> {
  const request = `GET ${requestPath} HTTP/1.1\r\nHost: 127.0.0.1:${route.originPort}\r\nConnection: close\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const socket = connect({
      port: route.proxyPort ?? route.originPort,
      host: '127.0.0.1',
      onread: { buffer: READ_BUFFER, callback: (size) => (onData(READ_BUFFER.subarray(0, size)), true) },
    });
    let phase: 'tunnel' | 'head' | 'body' = route.proxyPort === null ? 'head' : 'tunnel';
    let head: Buffer = Buffer.alloc(0);
    let status = '';
    let bodyBytes = 0;
    let sentAt = 0;
    let cut = false;
    let deadline: NodeJS.Timeout | undefined;
    const fail = (err: Error): void => {
      clearTimeout(deadline);
      socket.destroy();
      reject(err);
    };
    const sendRequest = (): void => {
      sentAt = performance.now();
      socket.write(request);
      if (options.deadlineMs !== undefined) deadline = setTimeout(() => ((cut = true), socket.destroy()), options.deadlineMs);
    };
    /** Gathers a head (copied out of the shared buffer); returns the bytes after it once complete. */
    const readHead = (chunk: Buffer): Buffer | null => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf(HEAD_END);
      if (end === -1) {
        if (head.length > HEAD_LIMIT) fail(new Error('no end of head within 16 KiB'));
        return null;
      }
      const rest = head.subarray(end + HEAD_END.length);
      status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      head = Buffer.alloc(0);
      return rest;
    };
    function onData(chunk: Buffer): void {
      if (phase === 'body') return void (bodyBytes += chunk.length);
      const rest = readHead(chunk);
      if (rest === null) return;
      if (phase === 'tunnel') {
        if (!TUNNEL_OPEN.test(status)) return fail(new Error(`CONNECT answered ${JSON.stringify(status)}`));
        phase = 'head';
        sendRequest();
        if (rest.length > 0) onData(rest);
        return;
      }
      phase = 'body';
      bodyBytes += rest.length;
    }
    socket.setNoDelay(true);
    socket.setTimeout(options.idleMs, () => fail(new Error(`no bytes for ${options.idleMs} ms (${phase})`)));
    socket.on('error', fail);
    socket.on('connect', () => (phase === 'tunnel' ? socket.write(connectRequest(route.originPort)) : sendRequest()));
    socket.on('close', () => {
      clearTimeout(deadline);
      if (socket.errored && !cut) return;
      if (phase !== 'body') return fail(new Error(`closed before the response (${phase})`));
      resolve({ status, bodyBytes, complete: !cut, ms: performance.now() - sentAt });
    });
  });
}

/** Counts failures and keeps the first few messages for the report. */
export interface Failures {
  count: number;
  first: string[];
}

function noteFailure(failures: Failures, err: unknown): void {
  failures.count += 1;
  if (failures.first.length < 3) failures.first.push(err instanceof Error ? err.message : String(err));
}

/**
 * (2) `concurrency` clients, each in a loop for `seconds`: open a tunnel, one small GET through
 * it, close. The rate counts exchanges that got the whole `hello`.
 */
export async function runConnectRate(route: Route, concurrency: number, seconds: number, failures: Failures): Promise<ThroughputResult> {
  const started = performance.now();
  const until = started + seconds * 1000;
  let completed = 0;
  const client = async (): Promise<void> => {
    while (performance.now() < until) {
      try {
        const result = await exchangeOnce(route, '/', { idleMs: 10_000 });
        if (RESPONSE_OK.test(result.status) && result.bodyBytes === 5) completed += 1;
        else noteFailure(failures, new Error(`answered ${JSON.stringify(result.status)} with ${result.bodyBytes} body bytes`));
      } catch (err) {
        noteFailure(failures, err);
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
