import type { ServeConfig } from '../config';
import type { ProxyLimits } from '../proxy/context';
import { evenShare } from './tunnel-lending';

/**
 * A worker's limits. The two tunnel limits stay the box's: each worker holds a share of them that
 * moves between the workers as their load does (tunnel-lending.ts), so the box holds exactly the
 * limit whichever worker the kernel gives a connection to. An explicit `--max-client-connections`
 * is split as evenly as it goes (the first `total % N` slots take one more): it is checked as a
 * connection is accepted, before anything could be asked. `auto` is not split: it is what one
 * process's open-files limit holds, and each worker process has a limit of its own.
 */
export function workerLimits(config: ServeConfig, slot: number): ProxyLimits {
  return {
    maxTunnels: config.maxTunnels,
    maxTunnelsPerSource: config.maxTunnelsPerSource,
    maxClientConnections: config.maxClientConnectionsAuto ? config.maxClientConnections : evenShare(config.maxClientConnections, config.workers, slot),
  };
}
