import type { Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { RunningProxy } from './peers';
import { fdLimit } from './proc-stats';
import { treeFds, treeRssKiB } from './proc-tree';
import { closeTunnels, openTunnels } from './tunnel-client';
import type { TunnelFailures } from './tunnel-client';
import { openIdleTunnel } from './tunnel-loads';

/**
 * (4) The RSS a proxy spends per idle CONNECT tunnel, measured as bench/idle-tunnels.ts does
 * (warm up, baseline, open N, sample, close), for any proxy: RSS is summed over its process tree.
 */

const WARM_UP_TUNNELS = 200;
const CONNECT_BATCH = 250;
const TUNNEL_READY_MS = 60_000;
const ESTABLISH_LIMIT_MS = 120_000;
/** fds the proxy must keep free beyond the tunnels (a CONNECT in flight, logs, SQLite). */
const FD_SPARE = 200;
const CLOSE_LIMIT_MS = 60_000;

export interface IdleResult {
  tunnels: number;
  baselineKiB: number;
  withTunnelsKiB: number;
  kibPerTunnel: number;
  establishSeconds: number;
}

async function medianRss(pid: number, durationMs: number): Promise<number> {
  const values: number[] = [];
  const until = Date.now() + durationMs;
  do {
    values.push(treeRssKiB(pid));
    await delay(Math.min(200, durationMs));
  } while (Date.now() < until);
  values.sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)];
}

/** Ends every tunnel and waits for the proxy to close them, at most CLOSE_LIMIT_MS; then destroys what is left. */
async function closeAll(sockets: Socket[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_LIMIT_MS)));
  await Promise.race([closeTunnels(sockets), limit]);
  clearTimeout(timer);
  for (const socket of sockets) socket.destroy();
}

async function establish(proxy: RunningProxy, echoPort: number, count: number): Promise<Socket[]> {
  const failures: TunnelFailures = { count: 0, first: [] };
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${count} tunnels not open within ${ESTABLISH_LIMIT_MS / 1000} s`)), ESTABLISH_LIMIT_MS);
  });
  try {
    const opening = openTunnels(count, CONNECT_BATCH, () => openIdleTunnel(proxy.port, echoPort, TUNNEL_READY_MS), failures);
    const sockets = await Promise.race([opening, deadline]);
    if (failures.count > 0) {
      await closeAll(sockets);
      throw new Error(`${failures.count} of ${count} tunnels failed, e.g. ${failures.first[0]}`);
    }
    return sockets;
  } finally {
    clearTimeout(timer);
  }
}

/** Refuse up front a count the proxy's fd limit cannot hold (2 fds per tunnel), rather than measure EMFILE. */
function checkFdBudget(proxy: RunningProxy, tunnels: number): void {
  const limit = fdLimit(proxy.pid);
  const most = Math.floor((limit - treeFds(proxy.pid) - FD_SPARE) / 2);
  if (tunnels > most) throw new Error(`${tunnels} tunnels need more fds than ${proxy.name}'s limit of ${limit} leaves (at most ${most})`);
}

export async function measureIdleTunnels(proxy: RunningProxy, echoPort: number, tunnels: number, sampleMs: number): Promise<IdleResult> {
  checkFdBudget(proxy, tunnels);
  await closeAll(await establish(proxy, echoPort, Math.min(WARM_UP_TUNNELS, tunnels)));
  const baselineKiB = await medianRss(proxy.pid, sampleMs);
  const started = performance.now();
  const sockets = await establish(proxy, echoPort, tunnels);
  const establishSeconds = (performance.now() - started) / 1000;
  try {
    const withTunnelsKiB = await medianRss(proxy.pid, sampleMs);
    return { tunnels, baselineKiB, withTunnelsKiB, kibPerTunnel: (withTunnelsKiB - baselineKiB) / tunnels, establishSeconds };
  } finally {
    await closeAll(sockets);
  }
}
