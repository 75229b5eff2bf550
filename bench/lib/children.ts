import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** The bench's child processes: the echo origin and the real `tollgate serve`. */

const START_LIMIT_MS = 15_000;

export interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  /** SIGTERM, then SIGKILL if it has not exited within `limitMs`. */
  stop(limitMs?: number): Promise<void>;
}

export interface OriginProcess extends Child {
  readonly port: number;
}

export interface ProxyProcess extends Child {
  readonly port: number;
  /** The admin port, from the same 'listening' line (null if the line has none). */
  readonly adminPort: number | null;
}

// A child left running would hold ports and thousands of sockets: kill whatever is still alive.
const alive = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of alive) child.kill('SIGKILL');
});

/** Killed if the bench exits first; `stop` ends it. A child that could not be spawned counts as exited. */
export function track(child: ChildProcess): Child {
  alive.add(child);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  void exited.then(() => alive.delete(child));
  return {
    process: child,
    pid: child.pid ?? -1,
    stop: async (limitMs = 10_000) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), limitMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Resolves with the first stdout JSON line `pick` accepts; rejects when the child exits first
 * or nothing comes within START_LIMIT_MS. Later lines are still read, so a chatty child never
 * blocks on a full pipe.
 */
function firstLine<T>(child: ChildProcess, what: string, pick: (line: Record<string, unknown>) => T | null): Promise<T> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${START_LIMIT_MS} ms; stderr: ${stderr}`)), START_LIMIT_MS);
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready; stderr: ${stderr}`)));
    child.once('error', (err) => reject(new Error(`${what} could not be started: ${err.message}`)));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      const picked = pick(line);
      if (picked === null) return;
      clearTimeout(timer);
      resolve(picked);
    });
  });
}

export async function startOriginProcess(script: string, args: string[] = []): Promise<OriginProcess> {
  // stdin stays a pipe: the origin exits when it closes, i.e. when the bench goes away.
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const tracked = track(child);
  const port = await firstLine(child, 'echo origin', (line) => (typeof line.port === 'number' ? line.port : null));
  return { ...tracked, port };
}

export interface ProxyLaunch {
  cli: string;
  nodeArgs: string[];
  serveArgs: string[];
}

export async function startProxyProcess(launch: ProxyLaunch): Promise<ProxyProcess> {
  const child = spawn(process.execPath, [...launch.nodeArgs, launch.cli, 'serve', ...launch.serveArgs], {
    // Node's own choice of how connections reach `--workers` (pool.ts), passed on when set.
    env: { PATH: process.env.PATH, TOLLGATE_LOG_LEVEL: 'info', ...(process.env.NODE_CLUSTER_SCHED_POLICY === undefined ? {} : { NODE_CLUSTER_SCHED_POLICY: process.env.NODE_CLUSTER_SCHED_POLICY }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tracked = track(child);
  const listening = await firstLine(child, 'tollgate serve', (line) => (line.msg === 'listening' ? line : null));
  const portOf = (address: unknown): number | null => (typeof address === 'string' ? Number(address.slice(address.lastIndexOf(':') + 1)) : null);
  return { ...tracked, port: portOf(listening.proxy) ?? Number.NaN, adminPort: portOf(listening.admin) };
}

/** The flags `tollgate serve --help` lists, so the bench works before and after new options land. */
export function serveFlags(cli: string): Set<string> {
  const help = execFileSync(process.execPath, [cli, 'serve', '--help'], { encoding: 'utf8' });
  return new Set(help.match(/--[a-z][a-z-]*/g) ?? []);
}
