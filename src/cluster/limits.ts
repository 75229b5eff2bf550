import type { ServeConfig } from '../config';
import type { ProxyLimits } from '../proxy/context';

/**
 * Limits are per box (SPEC §6): with N workers each enforces its share, the total split as
 * evenly as it goes (the first `total % N` slots take one more), so the box never holds more
 * than the limit. Workers take connections in turn (the cluster's round robin), so the shares
 * fill evenly; a box whose long tunnels happen to sit on one worker can refuse a little before
 * the total. `--max-client-connections auto` is not split: it is what one process's open-files
 * limit holds, and each worker process has a limit of its own.
 */
export function workerLimits(config: ServeConfig, slot: number): ProxyLimits {
  const share = (total: number): number => Math.floor(total / config.workers) + (slot <= total % config.workers ? 1 : 0);
  return {
    maxTunnels: share(config.maxTunnels),
    maxTunnelsPerSource: share(config.maxTunnelsPerSource),
    maxClientConnections: config.maxClientConnectionsAuto ? config.maxClientConnections : share(config.maxClientConnections),
  };
}
