import type { ServeConfig } from '../config';
import type { ProxyLimits } from '../proxy/context';
import type { BoxLimits } from './tunnel-lending';

/**
 * A worker's limits are the box's: each worker holds a share of them that moves between the
 * workers as their load does (tunnel-lending.ts), so the box holds exactly the limit whichever
 * worker the kernel gives a connection to. `--max-client-connections auto` is the exception: it
 * is what one process's open-files limit holds, and each worker process has a limit of its own.
 */
export function workerLimits(config: ServeConfig): ProxyLimits {
  return { maxTunnels: config.maxTunnels, maxTunnelsPerSource: config.maxTunnelsPerSource, maxClientConnections: config.maxClientConnections };
}

/** The limits whose shares are lent between workers. */
export function boxLimits(config: ServeConfig): BoxLimits {
  return {
    maxTunnels: config.maxTunnels,
    maxTunnelsPerSource: config.maxTunnelsPerSource,
    maxClientConnections: config.maxClientConnectionsAuto ? null : config.maxClientConnections,
  };
}
