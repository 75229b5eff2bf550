import type { Socket } from 'node:net';

/**
 * Open tunnels, by client socket. http.Server forgets a connection once CONNECT takes it
 * over (closeAllConnections() does not reach it), so shutdown and gauges rely on this.
 * A tunnel leaves the registry only after both sockets closed and its record was completed.
 */
export class TunnelRegistry {
  private readonly open = new Set<Socket>();
  private waiters: Array<() => void> = [];

  get size(): number {
    return this.open.size;
  }

  add(client: Socket): void {
    this.open.add(client);
  }

  delete(client: Socket): void {
    this.open.delete(client);
    if (this.open.size > 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Resolves once no tunnel is open. */
  whenEmpty(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  destroyAll(): void {
    for (const socket of this.open) socket.destroy();
  }
}
