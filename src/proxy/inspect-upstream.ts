import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { SecureContext, TLSSocket } from 'node:tls';
import type { Inspection } from '../inspect/types';
import type { ParentProxy } from '../policy/types';
import { ProxyError } from '../request/errors';
import type { Target } from '../request/target-types';
import type { ProxyContext } from './context';
import { connectChecked, formatHostPort, upstreamError } from './dial';
import { connectViaParent } from './parent-proxy';

/**
 * tollgate's own TLS connection to the destination of an inspected tunnel (SPEC §6 "upstream
 * stays honest"): through the same guard as any connection (the checked address, or a parent
 * proxy's CONNECT), verified against the system CAs plus --inspect-trust, never below TLS 1.2,
 * HTTP/1.1 only. A certificate the destination cannot prove is a 502 with the reason recorded,
 * never passed through as if fine.
 */

/** Where one inner request's upstream connection goes: checked addresses, or a parent proxy. */
export type UpstreamRoute = { parent: null; addresses: string[] } | { parent: ParentProxy };

/** One verifying client context per Inspection: the system roots are parsed once, not per connection. */
const contexts = new WeakMap<Inspection, SecureContext>();

function verifyingContext(inspection: Inspection): SecureContext {
  let context = contexts.get(inspection);
  if (context === undefined) {
    context = tls.createSecureContext({ ca: [...tls.rootCertificates, ...inspection.upstreamTrust], minVersion: 'TLSv1.2' });
    contexts.set(inspection, context);
  }
  return context;
}

/** Socket error codes (ECONNRESET…): the connection failed, not TLS. */
const ERRNO = /^E[A-Z]+$/;

/**
 * A failed handshake as the client's answer. OpenSSL's own failures (a protocol version below
 * the minimum, an alert from the destination) carry `ERR_SSL_*`; Node's verification of the
 * certificate carries OpenSSL's verify codes (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE…)
 * or ERR_TLS_CERT_ALTNAME_INVALID for a name the certificate does not cover.
 */
export function handshakeFailure(err: Error, target: Target, address: string): ProxyError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const where = formatHostPort(address, target.port);
  if (ERRNO.test(code)) return upstreamError(err, address, target.port);
  if (code.startsWith('ERR_SSL_')) {
    // RFC 8446 §4.4.2.4: a server that wants a client certificate and gets none says so.
    const mutual = /CERTIFICATE_REQUIRED/.test(code) ? ' (the destination requires a client certificate: mutual TLS cannot be inspected)' : '';
    return new ProxyError(502, 'upstream_tls', `TLS handshake with ${target.host} (${where}) failed: ${code}${mutual}`);
  }
  return new ProxyError(502, 'upstream_certificate', `${code || 'EUNKNOWN'}: ${err.message} (${target.host}, ${where})`);
}

/** TLS over a connected socket, bounded by the connect timeout. */
function handshake(ctx: ProxyContext, inspection: Inspection, raw: Socket, target: Target, address: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket: raw,
      secureContext: verifyingContext(inspection),
      // SNI carries names only (RFC 6066 §3); an IP literal is checked against the certificate's IP SANs.
      servername: target.hostKind === 'name' ? target.host : undefined,
      host: target.host,
      ALPNProtocols: ['http/1.1'],
      rejectUnauthorized: true,
    });
    const finish = (failure: ProxyError | null): void => {
      clearTimeout(timer);
      secure.off('error', onError);
      if (failure === null) return resolve(secure);
      secure.destroy();
      raw.destroy();
      reject(failure);
    };
    const onError = (err: Error): void => finish(handshakeFailure(err, target, address));
    const timer = setTimeout(() => {
      finish(new ProxyError(504, 'connect_timeout', `TLS handshake with ${formatHostPort(address, target.port)} timed out after ${ctx.timeouts.connectMs} ms`));
    }, ctx.timeouts.connectMs);
    secure.once('secureConnect', () => finish(null));
    secure.on('error', onError);
  });
}

/**
 * Connects and verifies. The raw socket's errors surface on the TLS socket; both are destroyed
 * together when either fails.
 */
export async function connectUpstreamTls(ctx: ProxyContext, inspection: Inspection, target: Target, route: UpstreamRoute): Promise<TLSSocket> {
  let raw: Socket;
  let address: string;
  if (route.parent === null) {
    ({ socket: raw, address } = await connectChecked(route.addresses, target.port, ctx.timeouts.connectMs));
  } else {
    const through = await connectViaParent(ctx, route.parent, target);
    ({ socket: raw, address } = through);
    // The destination speaks only after our ClientHello: bytes before it are not TLS.
    if (through.rest.length > 0) {
      raw.destroy();
      throw new ProxyError(502, 'upstream_error', `upstream proxy ${route.parent.label} sent bytes before the TLS handshake`);
    }
  }
  raw.on('error', () => raw.destroy());
  const secure = await handshake(ctx, inspection, raw, target, address);
  secure.on('error', () => raw.destroy());
  return secure;
}
