import { setTimeout as delay } from 'node:timers/promises';
import { isTollgate, workersOf } from './compare-results';
import type { CompareResults, MetricKey, TargetName } from './compare-results';
import type { ComparePlan } from './compare-report';
import { measureIdleTunnels } from './idle-memory';
import { startProxy } from './peers';
import type { Origin, ProxyLaunchOptions, ProxyName, RunningProxy } from './peers';
import { treeCpuSeconds } from './proc-tree';
import { runHey, runWrk } from './tool-loads';
import type { Route } from './tool-loads';
import { runBulk, runConnectRate } from './tunnel-loads';
import type { TunnelFailures } from './tunnel-client';
import { settledSnapshot, workerRun, workerSnapshot } from './worker-shares';

/** One repetition of bench/compare.ts: the four timed loads on every target, then idle memory. */

export interface RunContext {
  plan: ComparePlan;
  results: CompareResults;
  origin: Origin;
  echoPort: number;
  launch: ProxyLaunchOptions;
  scratch: string;
  /** Between two loads: lets lingering closes, TIME_WAIT sockets and GC settle. */
  pauseMs: number;
  /** Why a load cannot run at all (its tool is missing), by load. */
  unavailable: Partial<Record<LoadName, string>>;
  log: (message: string) => void;
}

export type LoadName = 'http' | 'connect' | 'bulk' | 'latency';
const LOADS: LoadName[] = ['http', 'connect', 'bulk', 'latency'];
const METRICS_OF: Record<LoadName, MetricKey[]> = {
  http: ['httpRate', 'httpCpu'],
  connect: ['connectRate', 'connectCpu'],
  bulk: ['bulkRate', 'bulkCpu'],
  latency: ['latencyP50', 'latencyP99', 'latencyAddedP99', 'latencyCpu'],
};

const isProxy = (target: TargetName): target is Exclude<TargetName, 'direct'> => target !== 'direct';
const proxyColumns = (plan: ComparePlan): Array<Exclude<TargetName, 'direct'>> => plan.targets.filter(isProxy);

/** The program behind a column (tollgate for every worker count) and how to start it. */
function launchOf(ctx: RunContext, column: Exclude<TargetName, 'direct'>): { name: ProxyName; launch: ProxyLaunchOptions } {
  if (isTollgate(column)) return { name: 'tollgate', launch: { ...ctx.launch, workers: workersOf(column) } };
  return { name: column, launch: ctx.launch };
}

function rotate<T>(items: T[], by: number): T[] {
  const shift = items.length === 0 ? 0 : by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** CPU seconds the proxy's process tree spent while `run` ran (null for direct). */
async function withCpu<T>(pid: number | null, run: () => Promise<T>): Promise<{ result: T; cpu: number | null }> {
  const before = pid === null ? 0 : treeCpuSeconds(pid);
  const result = await run();
  return { result, cpu: pid === null ? null : treeCpuSeconds(pid) - before };
}

/**
 * A per-operation load ((1) or (2)). On tollgate the tree's CPU comes from /readyz + /proc
 * snapshots around it, which also give each worker's share; the after-snapshot waits until the
 * last records are committed, so their CPU is inside the window.
 */
async function perOperationLoad<T extends { requests: number }>(
  ctx: RunContext, load: 'http' | 'connect', target: TargetName, proxy: RunningProxy | null, repetition: number, run: () => Promise<T>,
): Promise<{ result: T; cpu: number | null }> {
  if (proxy === null || !isTollgate(target)) return withCpu(proxy?.pid ?? null, run);
  const before = await workerSnapshot(proxy);
  const result = await run();
  const after = await settledSnapshot(proxy);
  const shares = workerRun(target, load, repetition, result.requests, proxy.pid, before, after);
  ctx.results.workerRuns.push(shares);
  return { result, cpu: shares.treeCpu };
}

async function runLoad(
  ctx: RunContext, load: LoadName, target: TargetName, proxy: RunningProxy | null, p99s: Map<TargetName, number>, repetition: number,
): Promise<void> {
  const { plan, results, origin } = ctx;
  const route: Route = { originPort: origin.port, proxyPort: proxy?.port ?? null };
  const pid = proxy?.pid ?? null;
  const perUnit = (cpu: number | null, units: number): number | null => (cpu === null || units === 0 ? null : cpu / units);
  if (load === 'http') {
    const { result, cpu } = await perOperationLoad(ctx, load, target, proxy, repetition, () => runWrk(route, plan.connections, plan.seconds, ctx.scratch));
    results.add('httpRate', target, result.rate, result.errors, result.errorKinds);
    const us = perUnit(cpu, result.requests);
    if (us !== null) results.add('httpCpu', target, us * 1e6);
  } else if (load === 'connect') {
    const failures: TunnelFailures = { count: 0, first: [] };
    const { result, cpu } = await perOperationLoad(ctx, load, target, proxy, repetition, () => runConnectRate(route, plan.connections, plan.seconds, failures));
    results.add('connectRate', target, result.rate, result.errors, failures.first[0] ?? null);
    const us = perUnit(cpu, result.requests);
    if (us !== null) results.add('connectCpu', target, us * 1e6);
  } else if (load === 'bulk') {
    const { result, cpu } = await withCpu(pid, () => runBulk(route, origin.bulkPath(plan.bulkBytes), plan.bulkBytes, plan.bulkLimitSeconds));
    const cut = result.complete ? null : `cut after ${plan.bulkLimitSeconds} s at ${result.bytes} bytes`;
    results.add('bulkRate', target, result.mibPerSecond, cut ? 1 : 0, cut);
    const perGiB = perUnit(cpu, result.bytes / (1 << 30));
    if (perGiB !== null) results.add('bulkCpu', target, perGiB);
  } else {
    // CPU per request at a fixed rate below saturation: the proxy does not compete with the
    // load generator for the cores, as it does under (1)'s closed loop.
    const { result, cpu } = await withCpu(pid, () => runHey(route, plan.rate, plan.seconds));
    const us = perUnit(cpu, result.requests);
    if (us !== null) results.add('latencyCpu', target, us * 1e6);
    const note = result.errors > 0 ? `hey counted ${result.errors} failed requests` : null;
    results.add('latencyP50', target, result.p50Ms, result.errors, note);
    results.add('latencyP99', target, result.p99Ms, 0);
    p99s.set(target, result.p99Ms);
  }
}

async function startProxies(ctx: RunContext, columns: Array<Exclude<TargetName, 'direct'>>): Promise<Map<TargetName, RunningProxy>> {
  const running = new Map<TargetName, RunningProxy>();
  for (const name of columns) {
    try {
      const how = launchOf(ctx, name);
      running.set(name, await startProxy(how.name, how.launch));
    } catch (err) {
      ctx.log(`${name} did not start: ${message(err)}`);
      for (const load of LOADS) for (const metric of METRICS_OF[load]) ctx.results.miss(metric, name, `did not start: ${message(err)}`);
    }
  }
  return running;
}

/**
 * The origin serves /bytes/N from a sparse file: the first reader would pay for filling the page
 * cache, so whichever target came first in (3) would look slower. Read it once beforehand.
 */
export async function warmOrigin(ctx: RunContext): Promise<void> {
  const { origin, plan } = ctx;
  await runBulk({ originPort: origin.port, proxyPort: null }, origin.bulkPath(plan.bulkBytes), plan.bulkBytes, plan.bulkLimitSeconds);
}

/** The timed loads (1), (2), (3), (5), each on every target before the next load; returns each tollgate's audit records. */
export async function runTimedLoads(ctx: RunContext, repetition: number): Promise<Map<TargetName, number>> {
  const running = await startProxies(ctx, proxyColumns(ctx.plan));
  const order = rotate(ctx.plan.targets.filter((t) => !isProxy(t) || running.has(t)), repetition);
  const p99s = new Map<TargetName, number>();
  try {
    for (const load of LOADS) {
      for (const target of order) {
        const why = ctx.unavailable[load];
        if (why !== undefined) {
          for (const metric of METRICS_OF[load]) ctx.results.miss(metric, target, why);
          continue;
        }
        ctx.log(`run ${repetition + 1}: ${load} on ${target}`);
        try {
          await runLoad(ctx, load, target, isProxy(target) ? (running.get(target) ?? null) : null, p99s, repetition);
        } catch (err) {
          ctx.log(`  failed: ${message(err)}`);
          for (const metric of METRICS_OF[load]) ctx.results.miss(metric, target, `failed: ${message(err)}`);
        }
        await delay(ctx.pauseMs);
      }
    }
    recordAddedLatency(ctx, p99s);
    const records = new Map<TargetName, number>();
    for (const [column, proxy] of running) if (proxy.auditRecords !== undefined) records.set(column, proxy.auditRecords());
    return records;
  } finally {
    for (const proxy of running.values()) await proxy.stop();
  }
}

/** p99 through a proxy minus direct's p99 of the same repetition. */
function recordAddedLatency(ctx: RunContext, p99s: Map<TargetName, number>): void {
  const direct = p99s.get('direct');
  for (const [target, p99] of p99s) {
    if (target === 'direct') continue;
    if (direct === undefined) ctx.results.miss('latencyAddedP99', target, 'no direct figure');
    else ctx.results.add('latencyAddedP99', target, p99 - direct);
  }
}

/** (4) each proxy in a fresh process, so that the loads before leave no garbage in its baseline. */
export async function runIdleMemory(ctx: RunContext, repetition: number): Promise<void> {
  const names = rotate(proxyColumns(ctx.plan), repetition);
  for (const name of names) {
    ctx.log(`run ${repetition + 1}: ${ctx.plan.idleTunnels} idle tunnels on ${name}`);
    let proxy: RunningProxy | null = null;
    try {
      const how = launchOf(ctx, name);
      proxy = await startProxy(how.name, how.launch);
      const idle = await measureIdleTunnels(proxy, ctx.echoPort, ctx.plan.idleTunnels, ctx.plan.rssSampleMs);
      ctx.log(`  ${idle.kibPerTunnel.toFixed(1)} KiB per tunnel (${idle.establishSeconds.toFixed(1)} s to open them)`);
      ctx.results.add('idleKiB', name, idle.kibPerTunnel);
    } catch (err) {
      ctx.log(`  failed: ${message(err)}`);
      ctx.results.miss('idleKiB', name, `failed: ${message(err)}`);
    } finally {
      await proxy?.stop();
    }
  }
}
