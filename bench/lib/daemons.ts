import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { track } from './children';

/**
 * Third-party servers (nginx, squid, tinyproxy) as children of the bench. They take a fixed port
 * from their config file and print nothing machine-readable when ready, so the bench picks a free
 * port, starts them in the foreground and waits until the port accepts a connection.
 */

const START_LIMIT_MS = 15_000;

export interface Daemon {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** SIGTERM, then SIGKILL if it has not exited within `limitMs`. */
  stop(limitMs?: number): Promise<void>;
}

/** A port free right now on 127.0.0.1 (another process could take it before the daemon binds). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export interface DaemonLaunch {
  name: string;
  command: string;
  args: string[];
  port: number;
  cwd?: string;
}

/**
 * Starts `command` and resolves once `port` accepts connections. Its output is kept (the last
 * 4 KiB) for the error message if it exits or never listens.
 */
export async function startDaemon(launch: DaemonLaunch): Promise<Daemon> {
  const child = spawn(launch.command, launch.args, { cwd: launch.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const tracked = track(child);
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4096);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exitedEarly: string | null = null;
  child.once('exit', (code, signal) => (exitedEarly = `exited (${code ?? signal})`));
  child.once('error', (err) => (exitedEarly = `could not be started: ${err.message}`));
  const until = Date.now() + START_LIMIT_MS;
  while (!(await accepts(launch.port))) {
    if (exitedEarly !== null) throw new Error(`${launch.name} ${exitedEarly} before it listened; output: ${output}`);
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`${launch.name} did not listen on ${launch.port} within ${START_LIMIT_MS} ms; output: ${output}`);
    }
    await delay(50);
  }
  return { name: launch.name, pid: tracked.pid, port: launch.port, stop: tracked.stop };
}
