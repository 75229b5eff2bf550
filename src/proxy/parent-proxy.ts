import type { Socket } from 'node:net';
import type { ProxyContext } from './context';
import { connectChecked, GuardError, resolveChecked } from './dial';
import { ProxyError } from '../request/errors';
import { formatAuthority } from '../request/target';
import type { ParentProxy } from '../policy/types';
import type { Target } from '../request/target-types';

/**
 * Reaching destinations through a parent proxy (`settings.upstream`, or a rule's `via`).
 * tollgate decides and records locally, then goes through the parent. The parent's own
 * address goes through the parent guard: parents usually sit on private addresses, reachable
 * when `network.parent_ranges` lists them. That exemption is never a client's destination.
 */

/** The longest CONNECT answer head accepted from a parent. */
const MAX_PARENT_HEAD = 16 * 1024;

function parentTarget(parent: ParentProxy): Target {
  return { kind: 'connect', scheme: null, host: parent.host, hostKind: parent.hostKind, port: parent.port, path: null, search: '' };
}

function parentAuthorization(parent: ParentProxy): string | null {
  const { credentials } = parent;
  return credentials ? `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64')}` : null;
}

/** Resolve and guard the parent's address; a refusal names the parent, not the destination. */
export async function parentAddresses(ctx: ProxyContext, parent: ParentProxy): Promise<string[]> {
  try {
    const { addresses } = await resolveChecked(parentTarget(parent), ctx.active().parentGuard, ctx.resolver, ctx.timeouts.dnsMs);
    return addresses;
  } catch (err) {
    if (err instanceof GuardError) {
      throw new ProxyError(502, 'upstream_error', `upstream proxy ${parent.label} is not reachable: ${err.reason} (list it in network.parent_ranges)`);
    }
    throw err;
  }
}

/**
 * CONNECT through the parent: dial it, ask for the destination, and hand back the socket once
 * the parent answered 200 (with any bytes that followed its answer). Anything else is a 502.
 */
export async function connectViaParent(ctx: ProxyContext, parent: ParentProxy, destination: Target): Promise<{ socket: Socket; address: string; rest: Buffer }> {
  const addresses = await parentAddresses(ctx, parent);
  const { socket, address } = await connectChecked(addresses, parent.port, ctx.timeouts.connectMs);
  const authority = formatAuthority(destination);
  const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
  const authorization = parentAuthorization(parent);
  if (authorization) lines.push(`Proxy-Authorization: ${authorization}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  try {
    const { status, statusLine, rest } = await readAnswerHead(socket, ctx.timeouts.connectMs, parent.label);
    if (status !== 200) throw new ProxyError(502, 'upstream_error', `upstream proxy ${parent.label} refused CONNECT ${authority}: ${statusLine}`);
    return { socket, address, rest };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

function readAnswerHead(socket: Socket, timeoutMs: number, label: string): Promise<{ status: number; statusLine: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const finish = (error: ProxyError | null, value?: { status: number; statusLine: string; rest: Buffer }): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('end', onClose);
      socket.pause();
      if (error) reject(error);
      else if (value) resolve(value);
    };
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) {
        if (buffered.length > MAX_PARENT_HEAD) finish(new ProxyError(502, 'upstream_error', `upstream proxy ${label} sent an oversized answer`));
        return;
      }
      const statusLine = buffered.subarray(0, buffered.indexOf('\r\n')).toString('latin1').replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
      const status = Number(/^HTTP\/1\.[01] ([0-9]{3})(?: |$)/.exec(statusLine)?.[1] ?? 0);
      finish(null, { status, statusLine, rest: buffered.subarray(end + 4) });
    };
    // Parent sockets allow half-open: a parent that ends without answering shows as 'end'.
    const onClose = (): void => finish(new ProxyError(502, 'upstream_error', `upstream proxy ${label} closed the connection`));
    const timer = setTimeout(() => finish(new ProxyError(504, 'connect_timeout', `upstream proxy ${label} did not answer in ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('end', onClose);
  });
}
