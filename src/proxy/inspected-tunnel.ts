import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Client } from 'undici';
import type { Inspection } from '../inspect/types';
import type { Decision, ParentProxy } from '../policy/types';
import type { RequestKind, Target } from '../request/target-types';
import { decideTarget, resolveDestination } from './authorise';
import type { ClientAddress } from './client-address';
import type { ProxyContext } from './context';
import { Exchange } from './exchange';
import { HostMismatchError, innerTarget, tunnelAuthority, type TunnelAuthority } from './inspect-target';
import { connectUpstreamTls, handshakeFailure, type UpstreamRoute } from './inspect-upstream';
import type { ProxyError } from '../request/errors';
import { parentAddresses } from './parent-proxy';
import type { Relay, Tally } from './relay';
import { relayDirect } from './relay-direct';

/**
 * One inspected tunnel as the requests inside it see it (SPEC §6): who opened it, to where, and
 * the record they link to. forward.ts finds it by the TLS socket the inner HTTP server reads
 * from, and decides and forwards each request as a plain HTTP one, with these differences:
 * the target comes from the tunnel (a Host naming another host is refused), the user is the
 * one the CONNECT authenticated (there is no Proxy-Authorization inside TLS), and the request
 * goes to the destination over tollgate's own verified TLS connection.
 */

/** The record kind of a request inside an inspected tunnel (SPEC §6). */
export const INNER_KIND: RequestKind = 'https';

/** The rule recorded for a request the inspection itself refused (another host in its Host). */
export const INSPECT_RULE = '(inspect)';

/** Where one allowed inner request goes: the checked address it is recorded with, and the route. */
export interface InnerRoute {
  address: string;
  parent: ParentProxy | null;
}

/** Idle upstream connections of a tunnel close after this, as the shared pool's do. */
const UPSTREAM_KEEP_ALIVE_MS = 30_000;

const tunnels = new WeakMap<Socket, InspectedTunnel>();

/** The inspected tunnel a socket of the inner HTTP server belongs to; null for any other socket. */
export function tunnelOf(socket: Socket): InspectedTunnel | null {
  return tunnels.get(socket) ?? null;
}

export class InspectedTunnel {
  /** Upstream clients by route ('direct' or a parent's label), each with its error mapping: one keep-alive connection each. */
  private readonly upstreams = new Map<string, { dispatcher: Client; mapError: (err: Error) => ProxyError | null }>();
  /** The CONNECT's authority, worked out once for every request inside. */
  private readonly authority: TunnelAuthority;
  private closed = false;
  /** Exchanges begun inside the tunnel (answered or not). */
  private requests = 0;
  private notHttp: (code: string) => void = () => undefined;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly inspection: Inspection,
    /** The CONNECT's target: every request inside goes here. */
    readonly target: Target,
    readonly client: ClientAddress,
    readonly user: string | null,
    /** The tunnel's own record (its id is the inner records' tunnel_id). */
    readonly recordId: number,
    /** Addresses the CONNECT resolved and the guard passed; null when it went through a parent. */
    private addresses: string[] | null,
  ) {
    this.authority = tunnelAuthority(target);
  }

  /**
   * From now on requests read from `socket` are this tunnel's. `notHttp` hears of a parse error
   * before the first request: the tunnel's record then says `not_http`.
   */
  attach(socket: Socket, notHttp: (code: string) => void): void {
    tunnels.set(socket, this);
    this.notHttp = notHttp;
  }

  /** The inner HTTP server could not parse what the client sent (server.ts). */
  parseFailed(code: string): void {
    if (this.requests === 0 && code.startsWith('HPE_')) this.notHttp(code);
  }

  /** A new exchange for a request read inside this tunnel. */
  exchange(method: string | null, rawTarget: string | null): Exchange {
    this.requests += 1;
    const exchange = new Exchange(INNER_KIND, method, this.client, rawTarget, this.ctx.clock());
    exchange.user = this.user;
    exchange.tunnelId = this.recordId;
    return exchange;
  }

  /**
   * Decide one request as if it were plain HTTP with scheme https (SPEC §6). Throws a 403 for a
   * denial (decideTarget) and for another host, whose record names rule (inspect).
   */
  decide(exchange: Exchange, req: IncomingMessage): void {
    let target: Target;
    try {
      target = innerTarget(req, this.authority);
    } catch (err) {
      if (err instanceof HostMismatchError) {
        // Recorded as a request to the tunnel's host (the reason names the other one).
        exchange.target = err.target;
        exchange.policyVersion = this.ctx.active().policy.version;
        exchange.decision = this.refusal(err.reason);
      }
      throw err;
    }
    decideTarget(this.ctx, exchange, target);
  }

  private refusal(reason: string): Decision {
    // Enforced in report mode too: domain fronting is no policy trial.
    return { action: 'deny', rule: INSPECT_RULE, ruleSource: null, reason, wouldDeny: false, clients: [], upstream: null, tls: 'inspect', mode: 'enforce' };
  }

  /** The route of an allowed request: its decision's parent proxy, else the tunnel's checked addresses. */
  async route(exchange: Exchange): Promise<InnerRoute> {
    const parent = exchange.decision?.upstream ?? null;
    if (parent !== null) {
      const [address] = await parentAddresses(this.ctx, parent);
      return { address, parent };
    }
    // Resolved once per tunnel: a later DNS answer can never move it (dial.ts).
    this.addresses ??= await resolveDestination(this.ctx, exchange, this.target);
    return { address: this.addresses[0], parent: null };
  }

  relay(exchange: Exchange, req: IncomingMessage, res: ServerResponse, tally: Tally, route: InnerRoute): Relay {
    return relayDirect(this.ctx, exchange, req, res, tally, route.address, this.upstreamFor(route));
  }

  private upstreamFor(route: InnerRoute): { dispatcher: Client; mapError: (err: Error) => ProxyError | null } {
    const key = route.parent === null ? 'direct' : route.parent.label;
    const known = this.upstreams.get(key);
    if (known !== undefined) return known;
    // Direct: only the address its requests are recorded with, as plain HTTP connects (relay-direct.ts),
    // so a record's resolved_ip is where its request went.
    const upstream: UpstreamRoute = route.parent === null ? { parent: null, addresses: [route.address] } : { parent: route.parent };
    const client = new Client(this.authority.origin, {
      keepAliveTimeout: UPSTREAM_KEEP_ALIVE_MS,
      keepAliveMaxTimeout: UPSTREAM_KEEP_ALIVE_MS,
      connect: (_options, callback) => {
        connectUpstreamTls(this.ctx, this.inspection, this.target, upstream).then(
          (socket) => (this.closed ? (socket.destroy(), callback(new Error('the tunnel closed'), null)) : callback(null, socket)),
          (err: Error) => callback(err, null),
        );
      },
    });
    // Errors reach the handler of the request that was waiting; one with no request is dropped here.
    client.on('connectionError', () => undefined);
    // TLS 1.3 finishes the handshake before the destination says what it refuses (a client
    // certificate it wanted, RFC 8446 §4.4.2.4): that alert reaches the request, named here.
    const mapError = (err: Error): ProxyError | null =>
      ((err as NodeJS.ErrnoException).code ?? '').startsWith('ERR_SSL_') ? handshakeFailure(err, this.target, route.address) : null;
    const made = { dispatcher: client, mapError };
    this.upstreams.set(key, made);
    return made;
  }

  /** The tunnel ended: its upstream connections go with it. */
  close(): void {
    this.closed = true;
    for (const { dispatcher } of this.upstreams.values()) void dispatcher.destroy().catch(() => undefined);
    this.upstreams.clear();
  }
}
