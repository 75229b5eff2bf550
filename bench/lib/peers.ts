import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, mkdirSync, mkdtempSync, openSync, ftruncateSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { serveFlags, startOriginProcess, startProxyProcess } from './children';
import { freePort, startDaemon } from './daemons';

/**
 * Everything bench/compare.ts runs against, each in its own process: the origin (nginx, or the
 * Node origin where nginx is not installed) and the proxies (tollgate, squid, tinyproxy), each
 * configured in a temp folder the way an operator would run it: loopback clients allowed, no
 * cache, ordinary access logging on.
 */

export type ProxyName = 'tollgate' | 'squid' | 'tinyproxy';

export interface RunningProcess {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

export interface RunningProxy extends RunningProcess {
  readonly name: ProxyName;
  /** tollgate only: records in its audit log (the proof it was on). */
  auditRecords?(): number;
  /** tollgate only: its admin port (/readyz lists the workers). */
  readonly adminPort?: number | null;
}

export interface Origin extends RunningProcess {
  readonly kind: 'nginx' | 'node';
  /** Path of a response of exactly `bytes` body bytes. */
  bulkPath(bytes: number): string;
}

/** The Debian package each external program comes from. */
export const PACKAGE_OF: Record<string, string> = {
  nginx: 'nginx-light',
  squid: 'squid',
  tinyproxy: 'tinyproxy',
  wrk: 'wrk',
  hey: 'hey',
};

export function installed(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A temp folder the daemon's unprivileged user can write (squid and tinyproxy drop root). */
function daemonDir(parent: string, name: string, owner: string | null): string {
  const dir = mkdtempSync(path.join(parent, `${name}-`));
  chmodSync(dir, 0o755);
  if (owner !== null && userInfo().uid === 0) {
    const uid = Number(execFileSync('id', ['-u', owner], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', owner], { encoding: 'utf8' }));
    chownSync(dir, uid, gid);
  }
  return dir;
}

// nginx without a master (one process, killed by its pid) and without its access log: the origin's
// own logging is not under test. `return` answers from memory; /bytes/N are sparse files.
function nginxConfig(dir: string, port: number): string {
  return `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 20000; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path ${dir}/tmp;
  proxy_temp_path ${dir}/tmp;
  fastcgi_temp_path ${dir}/tmp;
  uwsgi_temp_path ${dir}/tmp;
  scgi_temp_path ${dir}/tmp;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location = / { default_type text/plain; return 200 'hello'; }
    location /bytes/ { root ${dir}/www; default_type application/octet-stream; }
  }
}
`;
}

export async function startOrigin(parent: string, kind: 'nginx' | 'node', bulkBytes: number[], nodeOriginScript: string): Promise<Origin> {
  const bulkPath = (bytes: number): string => `/bytes/${bytes}`;
  if (kind === 'node') {
    const origin = await startOriginProcess(nodeOriginScript);
    return { kind, pid: origin.pid, port: origin.port, stop: () => origin.stop(), bulkPath };
  }
  const dir = daemonDir(parent, 'nginx', null);
  mkdirSync(path.join(dir, 'tmp'));
  mkdirSync(path.join(dir, 'www', 'bytes'), { recursive: true, mode: 0o755 });
  for (const bytes of bulkBytes) {
    // Sparse: no disk used, reads come back as zeros from the page cache.
    const fd = openSync(path.join(dir, 'www', 'bytes', String(bytes)), 'w', 0o644);
    ftruncateSync(fd, bytes);
    closeSync(fd);
  }
  const port = await freePort();
  writeFileSync(path.join(dir, 'nginx.conf'), nginxConfig(dir, port));
  const daemon = await startDaemon({ name: 'nginx', command: 'nginx', args: ['-c', path.join(dir, 'nginx.conf'), '-p', dir], port });
  return { kind, pid: daemon.pid, port, stop: () => daemon.stop(), bulkPath };
}

// The SSL_ports/Safe_ports ACLs of Debian's default config are left out on purpose, so CONNECT
// reaches any port. `localhost` is a built-in ACL name in squid 5, hence `bench_clients`.
function squidConfig(dir: string, port: number): string {
  return `http_port 127.0.0.1:${port}
visible_hostname tollgate-bench
acl bench_clients src 127.0.0.1/32
http_access allow bench_clients
http_access deny all
cache deny all
cache_mem 0
workers 1
pinger_enable off
access_log stdio:${dir}/access.log
cache_log ${dir}/cache.log
pid_filename ${dir}/squid.pid
coredump_dir ${dir}
shutdown_lifetime 0 seconds
`;
}

// No ConnectPort line: tinyproxy then allows CONNECT to any port (tinyproxy.conf(5)).
// MaxClients: tinyproxy serves each connection on its own thread, and refuses past this.
function tinyproxyConfig(dir: string, port: number): string {
  return `Port ${port}
Listen 127.0.0.1
Allow 127.0.0.1
Timeout 3600
MaxClients 20000
User nobody
Group nogroup
LogFile "${dir}/tinyproxy.log"
LogLevel Info
PidFile "${dir}/tinyproxy.pid"
`;
}

async function startSquid(parent: string): Promise<RunningProxy> {
  // squid started as root drops to the `proxy` user, which must write its logs.
  const dir = daemonDir(parent, 'squid', 'proxy');
  const port = await freePort();
  const conf = path.join(dir, 'squid.conf');
  writeFileSync(conf, squidConfig(dir, port));
  const daemon = await startDaemon({ name: 'squid', command: 'squid', args: ['-N', '-f', conf], port, cwd: dir });
  return { name: 'squid', pid: daemon.pid, port, stop: () => daemon.stop() };
}

async function startTinyproxy(parent: string): Promise<RunningProxy> {
  const dir = daemonDir(parent, 'tinyproxy', 'nobody');
  const port = await freePort();
  const conf = path.join(dir, 'tinyproxy.conf');
  writeFileSync(conf, tinyproxyConfig(dir, port));
  const daemon = await startDaemon({ name: 'tinyproxy', command: 'tinyproxy', args: ['-d', '-c', conf], port, cwd: dir });
  return { name: 'tinyproxy', pid: daemon.pid, port, stop: () => daemon.stop() };
}

/** Allows only the bench origin on loopback: the policy tollgate runs every bench under. */
export const LOOPBACK_POLICY = `version: 1
settings:
  default: deny
network:
  allow_ranges: [127.0.0.0/8]
rules:
  - name: bench-origin
    action: allow
    hosts: [127.0.0.1]
    ports: any
`;

async function startTollgate(parent: string, cli: string, nodeArgs: string[], extraArgs: string[], workers: number): Promise<RunningProxy> {
  const dir = mkdtempSync(path.join(parent, 'tollgate-'));
  mkdirSync(path.join(dir, 'policies'));
  writeFileSync(path.join(dir, 'policies', 'bench.yaml'), LOOPBACK_POLICY);
  const dbFile = path.join(dir, 'audit.db');
  const known = serveFlags(cli);
  if (workers > 1 && !known.has('--workers')) throw new Error(`this build of tollgate has no --workers (asked for ${workers})`);
  const limits: Array<[string, string]> = [
    ['--max-tunnels', '20000'],
    ['--max-tunnels-per-source', '20000'],
    ['--tunnel-idle-timeout', '30m'],
  ];
  const serveArgs = [
    '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policies', path.join(dir, 'policies'), '--db', dbFile,
    ...limits.filter(([flag]) => known.has(flag)).flat(),
    ...(workers > 1 ? ['--workers', String(workers)] : []),
    ...extraArgs,
  ];
  const proxy = await startProxyProcess({ cli, nodeArgs, serveArgs });
  const auditRecords = (): number => {
    const db = new Database(dbFile, { readonly: true, fileMustExist: true });
    try {
      return (db.prepare('SELECT COUNT(*) AS n FROM requests').get() as { n: number }).n;
    } finally {
      db.close();
    }
  };
  return { name: 'tollgate', pid: proxy.pid, port: proxy.port, adminPort: proxy.adminPort, stop: () => proxy.stop(), auditRecords };
}

export interface ProxyLaunchOptions {
  parent: string;
  cli: string;
  nodeArgs: string[];
  /** tollgate only: more serve flags (e.g. --audit-fsync). */
  serveArgs?: string[];
  /** tollgate only: `serve --workers N` (1, the default, passes no flag: builds before workers run too). */
  workers?: number;
}

export function startProxy(name: ProxyName, options: ProxyLaunchOptions): Promise<RunningProxy> {
  switch (name) {
    case 'tollgate':
      return startTollgate(options.parent, options.cli, options.nodeArgs, options.serveArgs ?? [], options.workers ?? 1);
    case 'squid':
      return startSquid(options.parent);
    case 'tinyproxy':
      return startTinyproxy(options.parent);
  }
}
