import { promises as dns } from 'node:dns';
import net from 'node:net';
import { describeBlock, type Guard, type GuardBlock } from '../policy/guard';
import { ProxyError } from '../request/errors';
import type { Target } from '../request/target-types';

/**
 * Resolve once, guard every address, connect only to an address that passed (SPEC §2). The
 * address that passed is what the socket connects to — never the name again — so a DNS answer
 * that changes between check and connect (rebinding) cannot switch the destination.
 * Side effects (resolver, connect) come in as parameters, so guard and DNS tests need no network.
 */

export type Resolver = (host: string) => Promise<Array<{ address: string; family: 4 | 6 }>>;

export type ConnectFunction = (address: string, port: number) => net.Socket;

/** getaddrinfo through libuv's thread pool; `verbatim` keeps the resolver's order (no IPv4 first). */
export const systemResolver: Resolver = async (host) => {
  const answers = await dns.lookup(host, { all: true, verbatim: true });
  return answers.map(({ address, family }) => ({ address, family: family === 6 ? 6 : 4 }));
};

/** Reason phrases: code and tests build them from here, so the two cannot drift apart. */
export const DialReason = {
  dnsFailed: (host: string, code: string): string => `DNS lookup of ${host} failed: ${code}`,
  dnsTimeout: (host: string, ms: number): string => `DNS lookup of ${host} timed out after ${ms} ms`,
  connectRefused: (hostPort: string): string => `connection to ${hostPort} refused`,
  connectReset: (hostPort: string): string => `connection to ${hostPort} reset`,
  connectFailed: (hostPort: string, code: string): string => `connection to ${hostPort} failed: ${code}`,
  connectTimeout: (hostPort: string, ms: number): string => `connection to ${hostPort} timed out after ${ms} ms`,
  noAddress: 'no checked address to connect to',
} as const;

/** A guard refusal: a 403 ProxyError that also carries the block, so the proxy can record rule `(guard)`. */
export class GuardError extends ProxyError {
  constructor(readonly block: GuardBlock) {
    super(403, 'denied', describeBlock(block));
    this.name = 'GuardError';
  }
}

function errorCode(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'EUNKNOWN';
}

/** `1.2.3.4:443` or `[::1]:443`. */
export function formatHostPort(address: string, port: number): string {
  return net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Runs `work` with a deadline; the timer is always cleared. A late settle of `work` is ignored. */
async function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function resolveOnce(host: string, resolver: Resolver, timeoutMs: number): Promise<string[]> {
  // Promise.resolve().then(): a resolver that throws synchronously still becomes a 502.
  const lookup = Promise.resolve().then(() => resolver(host));
  const timeout = () => new ProxyError(504, 'dns_timeout', DialReason.dnsTimeout(host, timeoutMs));
  let answers: Array<{ address: string }>;
  try {
    answers = await withDeadline(lookup, timeoutMs, timeout);
  } catch (err) {
    if (err instanceof ProxyError) throw err;
    throw new ProxyError(502, 'dns_failed', DialReason.dnsFailed(host, errorCode(err)));
  }
  if (answers.length === 0) throw new ProxyError(502, 'dns_failed', DialReason.dnsFailed(host, 'ENODATA'));
  return [...new Set(answers.map((a) => a.address))];
}

/**
 * IP literals skip DNS; a name is resolved exactly once. Returns, in the resolver's order, the
 * addresses the guard lets through; throws GuardError (403) with the first block when none does.
 */
export async function resolveChecked(
  target: Target,
  guard: Guard,
  resolver: Resolver,
  timeoutMs: number,
): Promise<{ addresses: string[] }> {
  const candidates = target.hostKind === 'name' ? await resolveOnce(target.host, resolver, timeoutMs) : [target.host];
  const addresses: string[] = [];
  let firstBlock: GuardBlock | null = null;
  for (const address of candidates) {
    const block = guard.check(address, target.port);
    if (block === null) addresses.push(address);
    else firstBlock ??= block;
  }
  if (addresses.length === 0 && firstBlock !== null) throw new GuardError(firstBlock);
  return { addresses };
}

/** Maps a socket error of a destination connection to the client's answer (SPEC §3: 502 / 504). */
export function upstreamError(err: unknown, address: string, port: number): ProxyError {
  const hostPort = formatHostPort(address, port);
  const code = errorCode(err);
  if (code === 'ECONNREFUSED') return new ProxyError(502, 'connect_refused', DialReason.connectRefused(hostPort));
  if (code === 'ECONNRESET') return new ProxyError(502, 'connect_reset', DialReason.connectReset(hostPort));
  if (code === 'ETIMEDOUT') return new ProxyError(504, 'connect_timeout', DialReason.connectFailed(hostPort, code));
  return new ProxyError(502, 'connect_failed', DialReason.connectFailed(hostPort, code));
}

/** Connects to the IP itself: net.connect does no lookup for an IP host, so nothing can re-resolve. */
// allowHalfOpen: a destination's FIN must not end the client -> destination direction of a tunnel.
const connectToAddress: ConnectFunction = (address, port) => net.connect({ host: address, port, allowHalfOpen: true, noDelay: true });

/**
 * Swallows an error emitted between resolve() and the caller's continuation (an `error` with no
 * listener kills the process, so every socket gets one at once). The socket is destroyed on
 * error anyway, so the caller still sees `close`; the caller attaches its own `error` listener
 * right away.
 */
function ignoreLateError(): void {}

function attemptConnect(address: string, port: number, timeoutMs: number, connect: ConnectFunction): Promise<net.Socket> {
  const hostPort = formatHostPort(address, port);
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    try {
      socket = connect(address, port);
    } catch (err) {
      reject(upstreamError(err, address, port));
      return;
    }
    const finish = (failure: ProxyError | null): void => {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('connect', onConnect);
      if (failure === null) {
        socket.on('error', ignoreLateError);
        resolve(socket);
      } else {
        socket.destroy();
        reject(failure);
      }
    };
    const onError = (err: Error): void => finish(upstreamError(err, address, port));
    const onConnect = (): void => finish(null);
    const timer = setTimeout(
      () => finish(new ProxyError(504, 'connect_timeout', DialReason.connectTimeout(hostPort, timeoutMs))),
      timeoutMs,
    );
    socket.on('error', onError);
    socket.on('connect', onConnect);
    // No system call when the socket was made with `noDelay: true`: Node then sets TCP_NODELAY
    // once, on connect, where setNoDelay() on a connecting socket costs a setsockopt() of its own.
    socket.setNoDelay(true);
  });
}

/**
 * Tries the checked addresses in order until one connects, never anything else. The overall
 * budget is shared: each attempt gets an equal part of what is left, so one black-holed address
 * cannot starve the rest. The error of the last attempt is thrown when all fail.
 *
 * On success the returned socket has no listeners of ours except a no-op `error` listener
 * (ignoreLateError) and no timer: the caller must attach its own `error` handler at once.
 */
export async function connectChecked(
  addresses: string[],
  port: number,
  timeoutMs: number,
  connect: ConnectFunction = connectToAddress,
): Promise<{ socket: net.Socket; address: string }> {
  if (addresses.length === 0) throw new ProxyError(502, 'connect_failed', DialReason.noAddress);
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (const [index, address] of addresses.entries()) {
    const left = Math.max(deadline - Date.now(), 1);
    const budget = Math.max(Math.floor(left / (addresses.length - index)), 1);
    try {
      return { socket: await attemptConnect(address, port, budget, connect), address };
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

export interface DialOptions {
  resolver: Resolver;
  dnsTimeoutMs: number;
  connectTimeoutMs: number;
  connect?: ConnectFunction;
}

/** resolveChecked then connectChecked: what a CONNECT tunnel needs in one call. */
export async function dialChecked(
  target: Target,
  guard: Guard,
  options: DialOptions,
): Promise<{ socket: net.Socket; address: string }> {
  const { addresses } = await resolveChecked(target, guard, options.resolver, options.dnsTimeoutMs);
  return connectChecked(addresses, target.port, options.connectTimeoutMs, options.connect);
}

/**
 * A `lookup` for http.request / http.Agent that always answers the checked address, so pooled
 * plain-HTTP forwarding connects where the guard said yes. Node 20's autoSelectFamily asks with
 * `all: true` and expects an array, so both shapes are answered.
 */
export function pinnedLookup(address: string): net.LookupFunction {
  const family = net.isIP(address);
  if (family === 0) throw new Error(`pinnedLookup: not an IP address: ${address}`);
  return (_hostname, options, callback) => {
    if (options.all === true) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}
