import { get } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import type { TollgateColumn, WorkerRun } from './compare-results';
import type { RunningProxy } from './peers';
import { processCpuSeconds, treeCpuSeconds } from './proc-tree';

/**
 * Each worker's share of a load on `tollgate serve --workers N`: /readyz lists every worker's pid
 * and the records it opened or finished; /proc gives each pid's CPU. Read before and after a load,
 * the differences are the worker's part of it.
 */

interface ReadyWorker {
  slot: number;
  pid: number;
  records: number;
}

export interface WorkerSnapshot {
  treeCpu: number;
  /** Empty with --workers 1: /readyz lists no workers then. */
  workers: Array<ReadyWorker & { cpu: number }>;
}

const READYZ_LIMIT_MS = 5_000;

function readyz(adminPort: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // 503 still carries the detail (a worker restarting): the body is what matters here.
    const request = get({ host: '127.0.0.1', port: adminPort, path: '/readyz', timeout: READYZ_LIMIT_MS }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('error', reject);
      response.on('end', () => {
        try {
          resolve(JSON.parse(body) as unknown);
        } catch {
          reject(new Error(`/readyz answered ${response.statusCode} with no JSON: ${body.slice(0, 200)}`));
        }
      });
    });
    request.on('timeout', () => request.destroy(new Error(`/readyz gave no answer within ${READYZ_LIMIT_MS} ms`)));
    request.on('error', reject);
  });
}

function readyWorkers(body: unknown): ReadyWorker[] {
  if (typeof body !== 'object' || body === null) return [];
  const workers = (body as { workers?: unknown }).workers;
  if (!Array.isArray(workers)) return [];
  return workers.flatMap((w: unknown): ReadyWorker[] => {
    if (typeof w !== 'object' || w === null) return [];
    const { slot, pid, records } = w as Record<string, unknown>;
    return typeof slot === 'number' && typeof pid === 'number' && typeof records === 'number' ? [{ slot, pid, records }] : [];
  });
}

export async function workerSnapshot(proxy: RunningProxy): Promise<WorkerSnapshot> {
  if (proxy.adminPort === undefined || proxy.adminPort === null) throw new Error('tollgate said no admin port');
  const workers = readyWorkers(await readyz(proxy.adminPort));
  // /proc right after /readyz: both describe the same moment, give or take the request.
  return { treeCpu: treeCpuSeconds(proxy.pid), workers: workers.map((w) => ({ ...w, cpu: processCpuSeconds(w.pid) })) };
}

const recordsOf = (snapshot: WorkerSnapshot): number => snapshot.workers.reduce((sum, w) => sum + w.records, 0);

/**
 * After a load: the last completions reach the primary a batch later than the client's last
 * answer. Polls /readyz until two reads agree (at most `limitMs`), so they are counted.
 */
export async function settledSnapshot(proxy: RunningProxy, limitMs = 2_000, intervalMs = 50): Promise<WorkerSnapshot> {
  let last = await workerSnapshot(proxy);
  const until = Date.now() + limitMs;
  while (Date.now() < until) {
    await delay(intervalMs);
    const next = await workerSnapshot(proxy);
    const settled = recordsOf(next) === recordsOf(last);
    last = next;
    if (settled) break;
  }
  return last;
}

/** The load between two snapshots; a worker replaced in between (a new pid in its slot) is left out. */
export function workerRun(
  column: TollgateColumn, load: WorkerRun['load'], repetition: number, operations: number,
  proxyPid: number, before: WorkerSnapshot, after: WorkerSnapshot,
): WorkerRun {
  const treeCpu = after.treeCpu - before.treeCpu;
  if (after.workers.length === 0) {
    return { column, load, repetition, operations, treeCpu, workers: [{ slot: 0, pid: proxyPid, records: null, cpu: treeCpu }], primaryCpu: null };
  }
  const workers = after.workers.flatMap((w) => {
    const was = before.workers.find((b) => b.slot === w.slot && b.pid === w.pid);
    return was === undefined ? [] : [{ slot: w.slot, pid: w.pid, records: w.records - was.records, cpu: w.cpu - was.cpu }];
  });
  const workersCpu = workers.reduce((sum, w) => sum + w.cpu, 0);
  return { column, load, repetition, operations, treeCpu, workers, primaryCpu: treeCpu - workersCpu };
}
