import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './free-port';

/** Debian's package; .ci/run installs it where it is missing. */
export const HAPROXY = '/usr/sbin/haproxy';

export function haproxyInstalled(): boolean {
  return existsSync(HAPROXY);
}

/**
 * `describe` for suites that put a real HAProxy in front: skipped (loudly) only with
 * TOLLGATE_TEST_HAPROXY=off. Without HAProxy the suite fails and says how to get it, as the
 * PostgreSQL suites do.
 */
export function describeWithHaproxy(base: jest.Describe = describe): jest.Describe {
  if (process.env.TOLLGATE_TEST_HAPROXY === 'off') {
    console.warn('TOLLGATE_TEST_HAPROXY=off: the HAProxy tests are SKIPPED');
    return describe.skip;
  }
  if (!haproxyInstalled()) {
    return ((name: string, body: () => void) =>
      base(name, () => {
        test('needs HAProxy', () => {
          throw new Error(`${HAPROXY} is missing: apt-get install haproxy (.ci/run does), or set TOLLGATE_TEST_HAPROXY=off to skip`);
        });
        void body;
      })) as unknown as jest.Describe;
  }
  return base;
}

export interface HaproxyBackend {
  name: string;
  port: number;
}

export interface HaproxyOptions {
  /** The frontend's loopback port. */
  listenPort: number;
  backends: HaproxyBackend[];
  /**
   * Speak PROXY v2 to the replicas, health checks included (`check-send-proxy`): a replica run
   * with --proxy-protocol-from refuses a connection from the load balancer without a header.
   */
  proxyV2: boolean;
}

/**
 * The fleet's load balancer as deploy/haproxy/haproxy.cfg configures it, on loopback: TCP mode
 * (the proxy's bytes pass through untouched, TLS tunnels included), round robin, and a TCP
 * health check fast enough for a test to see a killed replica taken out. `option redispatch`
 * sends a connection that cannot reach its server to the other one instead of failing it.
 */
export function haproxyConfig(options: HaproxyOptions, statsSocket: string): string {
  const serverOptions = ['check', 'inter 200ms', 'fall 2', 'rise 2', ...(options.proxyV2 ? ['send-proxy-v2', 'check-send-proxy'] : [])];
  return [
    'global',
    `  stats socket ${statsSocket} mode 600 level admin`,
    '  maxconn 2000',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  retries 2',
    '  option redispatch',
    'frontend tollgate',
    `  bind 127.0.0.1:${options.listenPort}`,
    '  default_backend replicas',
    'backend replicas',
    '  balance roundrobin',
    ...options.backends.map((b) => `  server ${b.name} 127.0.0.1:${b.port} ${serverOptions.join(' ')}`),
    '',
  ].join('\n');
}


export class HaproxyProcess {
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly child: ChildProcess, readonly dir: string, readonly port: number) {
    child.stdout?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** `haproxy -f <cfg> -db` (foreground) with its config and stats socket in a temp folder. */
  static async start(options: Omit<HaproxyOptions, 'listenPort'>): Promise<HaproxyProcess> {
    const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-haproxy-'));
    const listenPort = await freePort();
    const cfg = path.join(dir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig({ ...options, listenPort }, path.join(dir, 'stats.sock')));
    const child = spawn(HAPROXY, ['-f', cfg, '-db'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = new HaproxyProcess(child, dir, listenPort);
    await proc.waitForStatus(new Map(options.backends.map((b) => [b.name, 'UP'])));
    return proc;
  }

  /** One command on the stats socket, its whole answer. */
  command(line: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(path.join(this.dir, 'stats.sock'));
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.once('error', reject);
      socket.once('close', () => resolve(text));
      socket.end(`${line}\n`);
    });
  }

  /** Each server's check status (`UP`, `DOWN`, `UP 1/2`…) from `show stat`. */
  async serverStatus(): Promise<Map<string, string>> {
    const [header, ...rows] = (await this.command('show stat')).trim().split('\n');
    const columns = header.replace(/^# /, '').split(',');
    const [px, sv, status] = ['pxname', 'svname', 'status'].map((c) => columns.indexOf(c));
    const servers = new Map<string, string>();
    for (const row of rows.map((r) => r.split(','))) {
      if (row[px] === 'replicas' && row[sv] !== 'BACKEND') servers.set(row[sv], row[status]);
    }
    return servers;
  }

  /** Polls until every named server shows the wanted status (bounded; fails with HAProxy's output). */
  async waitForStatus(wanted: Map<string, string>, limitMs = 15_000): Promise<void> {
    const until = Date.now() + limitMs;
    let last = new Map<string, string>();
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`haproxy exited: ${this.stderr}`);
      try {
        last = await this.serverStatus();
        if ([...wanted].every(([name, status]) => last.get(name) === status)) return;
      } catch {
        // The socket is not there yet while HAProxy starts.
      }
      if (Date.now() > until) throw new Error(`haproxy servers ${JSON.stringify([...last])}, wanted ${JSON.stringify([...wanted])}; output: ${this.stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
