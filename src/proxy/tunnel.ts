import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { authenticate, decideTarget, resolveDestination } from './authorise';
import type { ProxyContext } from './context';
import { connectChecked } from './dial';
import { ProxyError } from '../request/errors';
import { asProxyError, Exchange } from './exchange';
import { answerFor, writeRawAnswer } from './respond';
import { clientAddress } from './client-address';
import { completeRecord, describeStreamError, ensureAuditWritable, openRecord, recordFailure } from './record';
import { abandonTunnel, refuseAfterAnswer, refuseDecision } from './tunnel-end';
import { connectViaParent } from './parent-proxy';
import { connectRelayed, relayTo } from './relay-read';
import { parseConnectTarget } from '../request/target';
import { readFirstBytes, SecondHelloWatch, SNI_RULE } from './sni-check';
import type { Target } from '../request/target-types';
import { inspectTunnel, planInspection, type InspectionPlan, type ReadInspected } from './inspect-tunnel';
import { enforceTunnelLimits, ESTABLISHED, limitTunnel } from './tunnel-limits';

/**
 * CONNECT: parse, decide, resolve and guard, dial, record, then answer 200 and splice; or, when
 * the decision says `tls: inspect`, hand the tunnel to inspect-tunnel.ts after the same checks.
 * Never rejects: every failure is answered and recorded here (its caller is an event listener,
 * where a rejection would go unhandled).
 */
export async function handleConnect(ctx: ProxyContext, req: IncomingMessage, client: Socket, head: Buffer, readInspected: ReadInspected): Promise<void> {
  // Hold the client's bytes (including any it pipelined after the CONNECT head) until the
  // upstream exists; with no 'data' listener a flowing socket would drop them.
  client.pause();
  const source = clientAddress(client);
  // Tracked from the start, so limits and a drain see it while it is decided or dialled.
  ctx.tunnels.add(client, source.ip);
  const exchange = new Exchange('connect', 'CONNECT', source, req.url ?? null, ctx.clock());
  let upstream: Socket | null = null;
  let fromUpstream: Buffer = NOTHING;
  let first = head;
  let watch: SecondHelloWatch | null = null;
  // Set once the client has its 200: from then on a failure can only close the tunnel.
  let answered = false;
  let inspection: InspectionPlan | null = null;
  try {
    const target = parseConnectTarget(req.url);
    exchange.target = target;
    await authenticate(ctx, exchange, req.headers['proxy-authorization']);
    decideTarget(ctx, exchange, target);
    await enforceTunnelLimits(ctx, exchange.clientIp);
    ensureAuditWritable(ctx);
    if (exchange.decision?.tls === 'inspect') inspection = await planInspection(ctx, exchange, target);
  } catch (err) {
    // A refused CONNECT stops counting against the tunnel limits at once, not once its record commits.
    ctx.tunnels.delete(client);
    await failConnect(ctx, exchange, client, asProxyError(err));
    return;
  }
  if (inspection !== null) return inspectTunnel(ctx, exchange, client, head, inspection, readInspected);
  const target = exchange.target;
  try {
    const connected = await dialDestination(ctx, exchange, target);
    fromUpstream = connected.rest;
    upstream = connected.socket;
    upstream.on('error', () => upstream?.destroy());
    exchange.resolvedIp = connected.address;
    if (client.destroyed) return abandonTunnel(ctx, exchange, client, upstream);
    const mode = exchange.decision?.tls ?? 'any';
    if (mode === 'sni-must-match' || mode === 'require') {
      // tls: sni-must-match | require: the record waits for the ClientHello (SPEC §6), so a
      // refused tunnel has one record, a deny, and its rule's hits never count it.
      client.write(ESTABLISHED);
      answered = true;
      let read = await readFirstBytes(client, head, mode, target, ctx.timeouts.helloMs);
      if (read.kind === 'gone') return abandonTunnel(ctx, exchange, client, upstream);
      if (read.kind === 'pass' && read.sni !== null) {
        // What the client sent after its ClientHello (a ChangeCipherSpec, say) is watched too.
        watch = new SecondHelloWatch(read.sni);
        const why = watch.push(read.held.subarray(read.helloBytes));
        if (why !== null) read = { kind: 'refuse', sni: read.sni, reason: why, held: read.held };
      }
      exchange.sni = read.sni;
      if (read.kind === 'refuse' && !reportSniRefusal(exchange, read.reason)) {
        return refuseAfterAnswer(ctx, exchange, client, new ProxyError(403, 'denied', read.reason), upstream);
      }
      // Report mode relays what it read too: the destination gets the very bytes the client sent.
      first = read.held;
    }
    // A client that leaves while this commits is seen by splice() as an early close.
    await openRecord(ctx, exchange);
  } catch (err) {
    if (answered) return refuseAfterAnswer(ctx, exchange, client, asProxyError(err), upstream);
    upstream?.destroy();
    // A refused CONNECT stops counting against the tunnel limits at once, not once its record commits.
    ctx.tunnels.delete(client);
    await failConnect(ctx, exchange, client, asProxyError(err));
    return;
  }
  splice(ctx, exchange, client, upstream, first, fromUpstream, answered, watch);
}

/**
 * An SNI that does not match, under a policy in report mode: let through and recorded as a
 * would-be denial by rule (sni), as report mode does for the policy's own denials. Otherwise
 * the decision becomes the deny the record says.
 */
function reportSniRefusal(exchange: Exchange, reason: string): boolean {
  const decision = exchange.decision;
  if (decision === null) return false;
  // The deciding rule's own mode wins, as for its denials: a rule trialled in report mode reports.
  // The decision's, not the policy's now: a reload while the ClientHello was awaited changes nothing.
  if (decision.mode !== 'report') {
    refuseDecision(exchange, reason, SNI_RULE);
    return false;
  }
  exchange.decision = { ...decision, rule: SNI_RULE, ruleSource: null, reason: `${reason} (report mode: let through)`, wouldDeny: true };
  return true;
}

const NOTHING: Buffer = Buffer.alloc(0);

/**
 * Directly: resolve once, guard, connect to an address that passed. Through a parent proxy:
 * the parent resolves the name (tollgate still guards IP-literal destinations, and the
 * parent's own address), and `rest` holds any bytes the parent sent after its 200.
 */
async function dialDestination(ctx: ProxyContext, exchange: Exchange, target: Target): Promise<{ socket: Socket; address: string; rest: Buffer }> {
  const parent = exchange.decision?.upstream ?? null;
  if (parent === null) {
    const addresses = await resolveDestination(ctx, exchange, target);
    const { socket, address } = await connectChecked(addresses, target.port, ctx.timeouts.connectMs, connectRelayed);
    return { socket, address, rest: NOTHING };
  }
  if (target.hostKind !== 'name') await resolveDestination(ctx, exchange, target);
  return connectViaParent(ctx, parent, target);
}

async function failConnect(ctx: ProxyContext, exchange: Exchange, client: Socket, error: ProxyError): Promise<void> {
  const answered = await recordFailure(ctx, exchange, error);
  writeRawAnswer(client, answerFor(answered, exchange));
}

function splice(
  ctx: ProxyContext,
  exchange: Exchange,
  client: Socket,
  upstream: Socket,
  head: Buffer,
  fromUpstream: Buffer,
  answered = false,
  watch: SecondHelloWatch | null = null,
): void {
  let firstError: Error | null = null;
  const fail = (err: Error): void => {
    firstError ??= err;
    client.destroy();
    upstream.destroy();
  };
  if (!answered) client.write(ESTABLISHED);
  if (fromUpstream.length > 0) client.write(fromUpstream);
  if (head.length > 0) upstream.write(head);
  if (watch !== null) watchHellos(client, watch, fail);
  // pipe() carries backpressure and ends the destination when the source ends, which keeps
  // half-close (both sockets allow half-open). Not pipeline(): its per-stream closures cost
  // about 13 KiB per tunnel (bench/idle-tunnels.ts; docs/performance.md). Teardown is ours
  // instead: an error or an early close on either side destroys both.
  client.pipe(upstream);
  // Direct destinations read through a shared buffer (relay-read.ts); a parent's socket pipes.
  if (!relayTo(upstream, client)) upstream.pipe(client);
  client.on('error', fail);
  upstream.on('error', fail);
  const lifetime = limitTunnel(ctx, [client, upstream], (reason) => fail(new Error(reason)));
  let closed = 0;
  const onClose = (socket: Socket): void => {
    if (!(socket.readableEnded && socket.writableFinished)) fail(prematureClose());
    closed += 1;
    if (closed < 2) return;
    if (lifetime) clearTimeout(lifetime);
    ctx.tunnels.delete(client);
    completeRecord(ctx, exchange, {
      status: 200,
      bytesUp: upstream.bytesWritten,
      bytesDown: upstream.bytesRead,
      error: firstError ? describeStreamError(firstError) : null,
    });
  };
  for (const socket of [client, upstream]) {
    // A side that closed before we got here has already emitted 'close'.
    if (socket.closed) onClose(socket);
    else socket.once('close', () => onClose(socket));
  }
}

/**
 * Registered before pipe(), so it sees each chunk first: a second ClientHello that names another
 * server cuts the tunnel before the chunk is relayed (pipe's write to a destroyed socket is a no-op).
 */
function watchHellos(client: Socket, watch: SecondHelloWatch, fail: (err: Error) => void): void {
  const onData = (chunk: Buffer): void => {
    const why = watch.push(chunk);
    if (why !== null) fail(new Error(`sni_changed: ${why}`));
    if (watch.finished) client.off('data', onData);
  };
  client.on('data', onData);
}

/** What a side that closed without ending cleanly is recorded as (as pipeline() would say). */
function prematureClose(): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}
