import type { Server } from 'node:http';
import { RecordEnd } from '../audit/record-types';
import type { ProxyContext } from './context';

/**
 * SIGTERM: stop accepting, let open requests and tunnels finish for up to `drainMs`, then
 * close what is left. Tunnel records are completed by their own close handlers: a tunnel cut
 * here is recorded as cut at the drain deadline, not as the premature close it looks like.
 */
export async function drainProxy(server: Server, ctx: ProxyContext, drainMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const deadline = new Promise<'timeout'>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), drainMs);
    timer.unref();
    void closed.then(() => clearTimeout(timer));
  });
  const outcome = await Promise.race([ctx.tunnels.whenEmpty().then(() => closed), deadline]);
  if (outcome === 'timeout') {
    // closeAllConnections() does not reach CONNECT tunnels (they left the HTTP server).
    ctx.tunnels.destroyAll(new Error(RecordEnd.drainDeadline));
    server.closeAllConnections();
    await closed;
  }
  await ctx.tunnels.whenEmpty();
}
