import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { SecureContext } from 'node:tls';
import { LeafRefusedError } from '../inspect/ca';
import type { Inspection } from '../inspect/types';
import { ProxyError } from '../request/errors';
import type { Target } from '../request/target-types';
import { resolveDestination } from './authorise';
import type { ProxyContext } from './context';
import { asProxyError, type Exchange } from './exchange';
import { InspectedTunnel } from './inspected-tunnel';
import { completeRecord, describeStreamError, openRecord } from './record';
import { abandonTunnel, refuseAfterAnswer, refuseDecision } from './tunnel-end';

import { readFirstBytes, SNI_RULE } from './sni-check';
import { ESTABLISHED, limitByActivity } from './tunnel-limits';

/**
 * A CONNECT whose rule says `tls: inspect` (SPEC §6): answer 200, check the ClientHello as
 * `tls: require` does, open the tunnel's record, terminate the client's TLS with a leaf from the
 * team's CA, and hand the decrypted connection to the proxy's inner HTTP server, which decides
 * and records every request inside on its own (forward.ts, inspected-tunnel.ts). Nothing is
 * dialled here: each allowed request opens (or reuses) tollgate's own verified TLS connection.
 */

/** How the decrypted connection reaches the inner HTTP server (server.ts). */
export type ReadInspected = (secure: Socket) => void;

/** What the CONNECT decided before its 200: how inspection goes, and where allowed requests go. */
export interface InspectionPlan {
  inspection: Inspection;
  /** The leaf for the CONNECT host, from the inspection CA. */
  context: SecureContext;
  /** Addresses the guard passed for a direct route; null when the decision goes through a parent. */
  addresses: string[] | null;
}

/** Reason phrases of an inspected tunnel's record, defined once for code and tests. */
export const InspectReason = {
  unavailable: (rule: string): string =>
    `inspect_unavailable: rule ${rule} asks for tls: inspect, but this proxy has no inspection CA (serve --inspect-ca); refused, not tunnelled uninspected`,
  rejectedCertificate: (host: string, alert: string): string =>
    `client_rejected_certificate: the client refused tollgate's certificate for ${host} (${alert}): it does not trust the inspection CA, or it pins certificates`,
  closedInHandshake: (host: string): string =>
    `client_rejected_certificate: the client closed the connection during the TLS handshake for ${host} (as clients that do not trust the inspection CA do, e.g. Node's)`,
  noAlpn: 'tls_handshake_failed: the client offers no ALPN protocol inspection speaks (HTTP/1.1 only; an h2-only client cannot be inspected)',
  handshake: (code: string): string => `tls_handshake_failed: ${code}`,
  notHttp: (code: string): string => `not_http: the bytes inside TLS are not an HTTP/1.1 request (${code})`,
  noLeaf: (message: string): string => `no certificate for this host from the inspection CA: ${message}`,
} as const;

/**
 * Before the 200, like any CONNECT: refuse (fail closed) without an inspection CA or a leaf for
 * the host (a CA whose --permit names exclude it, or expired), and resolve and guard the
 * destination, so each refusal is an answer on the CONNECT, as for a plain tunnel.
 */
export async function planInspection(ctx: ProxyContext, exchange: Exchange, target: Target): Promise<InspectionPlan> {
  const inspection = ctx.inspect;
  if (inspection === undefined) throw refuseInspection(exchange, 403, InspectReason.unavailable(exchange.decision?.rule ?? '(default)'));
  // The destination is resolved and guarded first: a CONNECT the guard refuses never costs a signature.
  let addresses: string[] | null = null;
  if ((exchange.decision?.upstream ?? null) === null) {
    addresses = await resolveDestination(ctx, exchange, target);
    exchange.resolvedIp = addresses[0] ?? null;
  } else if (target.hostKind !== 'name') {
    // Through a parent the parent resolves names; an IP literal is still guarded here.
    await resolveDestination(ctx, exchange, target);
  }
  let context: SecureContext;
  try {
    context = await inspection.contextFor(target.host);
  } catch (err) {
    // A host the CA may not vouch for is the policy's mistake (403); a CA that cannot sign, the proxy's (503).
    const status = err instanceof LeafRefusedError ? 403 : 503;
    const why = err instanceof LeafRefusedError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
    throw refuseInspection(exchange, status, InspectReason.noLeaf(why));
  }
  return { inspection, context, addresses };
}

/** The CONNECT's decision becomes the refusal its record and answer show (not let through in report mode). */
function refuseInspection(exchange: Exchange, status: number, reason: string): ProxyError {
  refuseDecision(exchange, reason);
  return new ProxyError(status, 'inspect_unavailable', reason);
}

/**
 * After the plan: everything from the 200 on. Never rejects: its caller is an event listener,
 * where a rejection would go unhandled.
 */
export async function inspectTunnel(ctx: ProxyContext, exchange: Exchange, client: Socket, head: Buffer, plan: InspectionPlan, readInspected: ReadInspected): Promise<void> {
  const target = exchange.target as Target;
  if (client.destroyed) return abandonTunnel(ctx, exchange, client);
  client.write(ESTABLISHED);
  const read = await readFirstBytes(client, head, 'inspect', target, ctx.timeouts.helloMs);
  if (read.kind === 'gone') return abandonTunnel(ctx, exchange, client);
  exchange.sni = read.sni;
  if (read.kind === 'refuse') {
    // Never let through, report mode or not: a tunnel that cannot be inspected is not one the rule allows.
    refuseDecision(exchange, read.reason, SNI_RULE);
    return refuseAfterAnswer(ctx, exchange, client, new ProxyError(403, 'denied', read.reason));
  }
  try {
    await openRecord(ctx, exchange);
  } catch (err) {
    return refuseAfterAnswer(ctx, exchange, client, asProxyError(err));
  }
  // The ClientHello goes back in front of the socket: TLSSocket feeds what is buffered to OpenSSL first.
  client.unshift(read.held);
  terminate(ctx, exchange, client, plan, readInspected);
}

function terminate(ctx: ProxyContext, exchange: Exchange, client: Socket, plan: InspectionPlan, readInspected: ReadInspected): void {
  const target = exchange.target as Target;
  const tunnel = new InspectedTunnel(ctx, plan.inspection, target, { ip: exchange.clientIp, port: exchange.clientPort, peerIp: exchange.peerIp }, exchange.user, exchange.recordId as number, plan.addresses);
  // ALPN http/1.1 only: an h2-capable client falls back; an h2-only one fails the handshake (docs/policies.md).
  const secure = new tls.TLSSocket(client, { isServer: true, secureContext: plan.context, ALPNProtocols: ['http/1.1'] });
  let firstError: string | null = null;
  let handshaken = false;
  const note = (reason: string): void => {
    firstError ??= reason;
  };
  const cut = (reason: string): void => {
    note(reason);
    secure.destroy();
    client.destroy();
  };
  secure.on('error', (err) => {
    note(handshaken ? describeStreamError(err) : handshakeError(err, target.host));
    client.destroy();
  });
  client.on('error', (err) => note(describeStreamError(err)));
  // A client that gives up on our certificate may only half-close (https-proxy-agent's sockets
  // do); before the handshake there is nothing left to say to it.
  secure.on('end', () => {
    if (!handshaken) cut(InspectReason.closedInHandshake(target.host));
  });
  secure.once('secure', () => {
    handshaken = true;
    tunnel.attach(secure, (code) => note(InspectReason.notHttp(code)));
    readInspected(secure);
  });
  // On the TLS socket: it reads the client's bytes now (the raw socket no longer sees them).
  const stopLimits = limitByActivity(ctx, secure, cut);
  let closed = 0;
  const onClose = (): void => {
    closed += 1;
    if (closed < 2) return;
    stopLimits();
    tunnel.close();
    ctx.tunnels.delete(client);
    if (!handshaken) note(InspectReason.closedInHandshake(target.host));
    completeRecord(ctx, exchange, { status: 200, bytesUp: client.bytesRead, bytesDown: client.bytesWritten, error: firstError }, false);
  };
  for (const socket of [client, secure]) {
    if (socket.closed) onClose();
    else socket.once('close', onClose);
  }
}

/** OpenSSL's name for the alert a client sent, from Node's error code (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA -> unknown ca). */
function alertName(code: string): string | null {
  const match = /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13)_ALERT_(.+)$/.exec(code);
  return match ? match[1].toLowerCase().replace(/_/g, ' ') : null;
}

/** RFC 8446 §6.2: the alerts a client sends when it does not accept the server's certificate. */
const CERTIFICATE_ALERTS = new Set(['unknown ca', 'bad certificate', 'certificate unknown', 'unsupported certificate', 'certificate expired', 'access denied', 'decrypt error']);

function handshakeError(err: Error, host: string): string {
  const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
  const alert = alertName(code);
  if (alert !== null && CERTIFICATE_ALERTS.has(alert)) return InspectReason.rejectedCertificate(host, `TLS alert: ${alert}`);
  if (code === 'ERR_SSL_NO_APPLICATION_PROTOCOL') return InspectReason.noAlpn;
  if (code === 'ECONNRESET') return InspectReason.closedInHandshake(host);
  return InspectReason.handshake(code);
}
