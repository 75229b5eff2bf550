import type { Socket } from 'node:net';
import type { ProxyHeaderRefusal } from '../metrics';
import type { IpRange } from '../policy/ip-range';
import { inRanges, rangeContains } from '../policy/ip-range';
import { ProxyError } from '../request/errors';
import { peerAddress, setProxiedClient } from './client-address';
import type { ClientAddress } from './client-address';
import type { ProxyContext } from './context';
import { Exchange } from './exchange';
import { parseProxyHeader, startsLikeProxyHeader, V2_MAX_BYTES } from './proxy-protocol';
import type { ProxiedSource } from './proxy-protocol';
import { recordFailure } from './record';
import { answerFor, writeRawAnswer } from './respond';

/**
 * `--proxy-protocol-from`: before the HTTP parser sees a byte, a connection from a listed load
 * balancer must start with a PROXY protocol header, and one from anywhere else must not (a
 * workload could otherwise name any client it likes). The header is taken off the socket, the
 * bytes after it are put back (unshift), and only then does the HTTP server get the socket.
 */

/**
 * A load balancer sends its header as soon as it connects (HAProxy and AWS NLB both write it
 * first thing), so a few seconds is generous; past it the connection is refused.
 */
export const PROXY_HEADER_TIMEOUT_MS = 5_000;

/**
 * Take the header (if any) off a new connection, then call `serve` with the socket ready for the
 * HTTP server; a refused connection is answered 400, recorded and closed instead. Never throws.
 */
export function acceptProxyHeader(ctx: ProxyContext, from: readonly IpRange[], socket: Socket, serve: () => void): void {
  // Read once, now: Node asks the kernel lazily, and once the peer has reset the connection
  // (HAProxy ends its health checks with a reset) the address is gone.
  const peer = peerAddress(socket);
  if (peer.ip === '') {
    // Reset before it was even accepted: nobody to answer, and no address to decide or record.
    socket.destroy();
    return;
  }
  // A listed peer may (and must) send a PROXY header.
  const listed = inRanges(from, peer.ip);
  let received: Buffer = Buffer.alloc(0);
  let settled = false;
  const timer = setTimeout(() => settle(onDeadline), PROXY_HEADER_TIMEOUT_MS);
  const onData = (chunk: Buffer): void => {
    received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
    const verdict = listed ? listedVerdict(received) : unlistedVerdict(received);
    if (verdict !== null) settle(() => verdict);
  };
  // An unlisted client that ends while its first bytes could still be a header sent no request
  // either (fewer than 12 bytes): nothing to serve, and a parser attached to a closed socket leaks.
  const onEnd = (): void => settle(() => (received.length === 0 || (!listed && startsLikeProxyHeader(received) === 'undecided') ? { outcome: 'gone' } : listed ? refusal('malformed', 'connection closed inside the PROXY protocol header') : { outcome: 'serve', rest: received }));
  const settle = (decide: () => Outcome): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    socket.removeListener('close', onEnd);
    socket.pause();
    finish(ctx, socket, peer, decide(), serve);
  };
  const onDeadline = (): Outcome => {
    if (!listed) return { outcome: 'serve', rest: received };
    // A connection that never sent a byte is no request (an idle pre-opened connection).
    if (received.length === 0) return { outcome: 'gone', reason: 'timeout' };
    return refusal('timeout', 'PROXY protocol header not received in time', 408);
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.once('close', onEnd);
}

type Outcome =
  /** Hand the socket to the HTTP server with these bytes put back, as `source`'s when named. */
  /** `source`: the header's client; null for a header that names none (LOCAL, UNKNOWN); absent without a header. */
  | { outcome: 'serve'; rest: Buffer; source?: ProxiedSource | null }
  /** Closed (or never spoke): no request, no record. */
  | { outcome: 'gone'; reason?: ProxyHeaderRefusal }
  | { outcome: 'refuse'; reason: ProxyHeaderRefusal; error: ProxyError };

function refusal(reason: ProxyHeaderRefusal, message: string, status = 400): Outcome {
  return { outcome: 'refuse', reason, error: new ProxyError(status, 'bad_request', message) };
}

/** A listed load balancer's connection: a header, then whatever it carries. */
function listedVerdict(received: Buffer): Outcome | null {
  const parsed = parseProxyHeader(received);
  switch (parsed.state) {
    case 'incomplete':
      return null;
    case 'absent':
      return refusal('missing', 'PROXY protocol header required from this address (--proxy-protocol-from)');
    case 'invalid':
      return refusal('malformed', `malformed PROXY protocol header: ${parsed.message}`);
    case 'header':
      // LOCAL (a health check) and UNKNOWN name no client: what follows is the balancer's own.
      return { outcome: 'serve', rest: received.subarray(parsed.length), source: parsed.source };
  }
}

/** Anyone else: served as it is, unless it starts like a header it may not send. */
function unlistedVerdict(received: Buffer): Outcome | null {
  switch (startsLikeProxyHeader(received)) {
    case 'undecided':
      return received.length > V2_MAX_BYTES ? { outcome: 'serve', rest: received } : null;
    case 'yes':
      return refusal('unexpected', 'PROXY protocol header from an address not in --proxy-protocol-from');
    case 'no':
      return { outcome: 'serve', rest: received };
  }
}

function finish(ctx: ProxyContext, socket: Socket, peer: ClientAddress, outcome: Outcome, serve: () => void): void {
  switch (outcome.outcome) {
    case 'gone':
      if (outcome.reason) ctx.metrics.proxyHeaderRefused(outcome.reason);
      socket.destroy();
      return;
    case 'refuse': {
      ctx.metrics.proxyHeaderRefused(outcome.reason);
      // The header was not trusted: the record names the address that connected.
      const exchange = new Exchange('http', null, peer, null, ctx.clock());
      void recordFailure(ctx, exchange, outcome.error).then((answer) => writeRawAnswer(socket, answerFor(answer, exchange)));
      return;
    }
    case 'serve':
      // Closed while it was being decided: there is nobody left to serve (Node's HTTP parser
      // attached now would never see a 'close' and never be freed).
      if (socket.destroyed) return;
      // After LOCAL or UNKNOWN the balancer is the client (the spec's "real connection
      // endpoints"); peer_ip still says the connection came through the PROXY protocol.
      if (outcome.source !== undefined) {
        const { ip, port } = outcome.source ?? peer;
        setProxiedClient(socket, { ip, port, peerIp: peer.ip });
      }
      if (outcome.rest.length > 0) socket.unshift(outcome.rest);
      serve();
      // The HTTP server's 'data' listener does not restart a stream paused above.
      if (!socket.destroyed) socket.resume();
  }
}

/** A --proxy-protocol-from range that shares addresses with a client group's `sources`. */
export interface ProxyPeerOverlap {
  readonly from: string;
  readonly group: string;
  readonly source: string;
  readonly range: string;
}

/**
 * Ranges are CIDR blocks, so two overlap exactly when one holds the other's network address. A
 * workload inside an overlap may send a header, and so claim any address, hence any group.
 */
export function proxyPeerOverlaps(from: readonly IpRange[], groups: ReadonlyArray<{ name: string; source: string; sources: readonly IpRange[] }>): ProxyPeerOverlap[] {
  const out: ProxyPeerOverlap[] = [];
  for (const peer of from) {
    for (const group of groups) {
      for (const range of group.sources) {
        if (rangeContains(peer, range.addr) || rangeContains(range, peer.addr)) out.push({ from: peer.cidr, group: group.name, source: group.source, range: range.cidr });
      }
    }
  }
  return out;
}
