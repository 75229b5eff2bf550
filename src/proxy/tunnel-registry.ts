import type { Socket } from 'node:net';

/**
 * Open tunnels, by client socket, with a count per client source address. A tunnel is in the
 * registry from the moment its CONNECT arrives (so limits and a drain see tunnels that are
 * still being decided or dialled) until both sockets closed and its record was completed.
 * http.Server forgets a connection once CONNECT takes it over (closeAllConnections() does not
 * reach it), so shutdown relies on this.
 */
export class TunnelRegistry {
  private readonly open = new Map<Socket, string>();
  private readonly perSource = new Map<string, number>();
  private waiters: Array<() => void> = [];
  private sourceIdle: ((source: string) => void) | null = null;

  /** Told when a source's last open tunnel is gone (a worker gives back what it borrowed for it). */
  onSourceIdle(listener: (source: string) => void): void {
    this.sourceIdle = listener;
  }

  get size(): number {
    return this.open.size;
  }

  /** Open tunnels from one client source address. */
  countFrom(source: string): number {
    return this.perSource.get(source) ?? 0;
  }

  add(client: Socket, source: string): void {
    if (this.open.has(client)) return;
    this.open.set(client, source);
    this.perSource.set(source, this.countFrom(source) + 1);
  }

  delete(client: Socket): void {
    const source = this.open.get(client);
    if (source === undefined) return;
    this.open.delete(client);
    const left = this.countFrom(source) - 1;
    if (left > 0) this.perSource.set(source, left);
    else {
      this.perSource.delete(source);
      this.sourceIdle?.(source);
    }
    if (this.open.size === 0) this.wakeWaiters();
  }

  private wakeWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Resolves once no tunnel is open. */
  whenEmpty(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Cuts every tunnel, its client socket destroyed with `reason`: a spliced tunnel (tunnel.ts)
   * records the first error either socket emitted, so its record says why it was cut instead
   * of looking like a network failure. (Every client socket has an error listener from the
   * moment it connects, server.ts.)
   */
  destroyAll(reason?: Error): void {
    for (const socket of this.open.keys()) socket.destroy(reason);
  }
}
