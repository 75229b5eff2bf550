import type { Server } from 'node:http';
import type { ProxyContext } from './context';

/**
 * SIGTERM: stop accepting, let open requests and tunnels finish for up to `drainMs`, then
 * close what is left. Tunnel records are completed by their own close handlers.
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
    ctx.tunnels.destroyAll();
    server.closeAllConnections();
    await closed;
  }
  await ctx.tunnels.whenEmpty();
}
