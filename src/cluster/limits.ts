import type { ServeConfig } from '../config';
import type { BoxLimits } from './tunnel-lending';

/**
 * The limits whose shares are lent between workers. A worker's limits are the box's (its config's):
 * each worker holds a share of them that moves between the workers as their load does
 * (tunnel-lending.ts), so the box holds exactly the limit whichever worker the kernel gives a
 * connection to. `--max-client-connections auto` is the exception: it is what one process's
 * open-files limit holds, and each worker process has a limit of its own.
 */
export function boxLimits(config: ServeConfig): BoxLimits {
  return {
    maxTunnels: config.maxTunnels,
    maxTunnelsPerSource: config.maxTunnelsPerSource,
    maxClientConnections: config.maxClientConnectionsAuto ? null : config.maxClientConnections,
  };
}
