import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './free-port';

/**
 * A throwaway PostgreSQL server for tests: initdb into a temp folder, pg_ctl start on a loopback
 * port, as an unprivileged user (the server refuses root: when the tests run as root, the
 * `postgres` user Debian's package creates runs it). Trust authentication on loopback only, so
 * a test connects as the `tollgate` superuser without a password unless it sets one.
 */
export interface PostgresServer {
  port: number;
  dir: string;
  /** A connection string for database `db` (default `postgres`), user `tollgate`. */
  url(db?: string, user?: string, password?: string): string;
  stop(): void;
  /** Starts the stopped server again on the same port and folder. */
  start(): void;
  /** Runs one SQL statement as the superuser through psql (set-up only). */
  sql(statement: string, db?: string): string;
}

const PG_BIN_CANDIDATES = ['/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin'];

/** The folder holding initdb and pg_ctl, or null when PostgreSQL's server is not installed. */
export function postgresBinDir(): string | null {
  for (const dir of PG_BIN_CANDIDATES) if (fs.existsSync(path.join(dir, 'initdb'))) return dir;
  const found = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' });
  return found.status === 0 && found.stdout.trim() !== '' ? path.dirname(fs.realpathSync(found.stdout.trim())) : null;
}

/** TOLLGATE_TEST_PG=off skips the PostgreSQL tests, and only that does: never silently. */
export function postgresTestsOff(): boolean {
  return process.env.TOLLGATE_TEST_PG === 'off';
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Runs a PostgreSQL tool as the unprivileged user. */
function runAsServerUser(bin: string, args: string[], opts: { ignoreFailure?: boolean } = {}): string {
  const file = asRoot ? 'runuser' : bin;
  const argv = asRoot ? ['-u', 'postgres', '--', bin, ...args] : args;
  const result = spawnSync(file, argv, { encoding: 'utf8', timeout: 60_000 });
  if (result.status !== 0 && opts.ignoreFailure !== true) {
    throw new Error(`${path.basename(bin)} failed (${result.status}): ${result.stderr || result.stdout}`);
  }
  return result.stdout;
}


/** Starts a new server; `conf` lines are appended to postgresql.conf (ssl, say). */
export async function startPostgres(opts: { conf?: string[]; hba?: string[] } = {}): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (bin === null) {
    throw new Error('PostgreSQL server binaries (initdb) not found: install Debian\'s postgresql, or set TOLLGATE_TEST_PG=off to skip these tests');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-pg-'));
  fs.chmodSync(dir, 0o755);
  if (asRoot) execFileSync('chown', ['postgres:postgres', dir]);
  const data = path.join(dir, 'data');
  runAsServerUser(path.join(bin, 'initdb'), ['-D', data, '-U', 'tollgate', '--auth=trust', '-E', 'UTF8', '--no-sync', '--locale=C']);
  const port = await freePort();
  const conf = [
    `port = ${port}`,
    "listen_addresses = '127.0.0.1'",
    `unix_socket_directories = '${dir}'`,
    'fsync = off',
    'synchronous_commit = off',
    'full_page_writes = off',
    'max_connections = 200',
    ...(opts.conf ?? []),
  ];
  fs.appendFileSync(path.join(data, 'postgresql.conf'), `\n${conf.join('\n')}\n`);
  if (opts.hba !== undefined) fs.writeFileSync(path.join(data, 'pg_hba.conf'), `${opts.hba.join('\n')}\n`);
  const log = path.join(dir, 'server.log');
  const pgCtl = path.join(bin, 'pg_ctl');
  const psql = fs.existsSync(path.join(bin, 'psql')) ? path.join(bin, 'psql') : 'psql';
  const server: PostgresServer = {
    port,
    dir,
    url(db = 'postgres', user = 'tollgate', password?: string) {
      const auth = password === undefined ? user : `${user}:${encodeURIComponent(password)}`;
      return `postgres://${auth}@127.0.0.1:${port}/${db}`;
    },
    start() {
      runAsServerUser(pgCtl, ['-D', data, '-l', log, '-w', '-t', '30', 'start']);
    },
    stop() {
      runAsServerUser(pgCtl, ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop'], { ignoreFailure: true });
    },
    sql(statement: string, db = 'postgres') {
      return execFileSync(psql, ['-h', '127.0.0.1', '-p', String(port), '-U', 'tollgate', '-d', db, '-v', 'ON_ERROR_STOP=1', '-Atc', statement], { encoding: 'utf8' });
    },
  };
  server.start();
  return server;
}

/** Stops the server and removes its folder. */
export function destroyPostgres(server: PostgresServer): void {
  server.stop();
  fs.rmSync(server.dir, { recursive: true, force: true });
}

/** The suite's shared server (test/postgres-setup.ts starts it), as its postgres:// base URL. */
export function sharedPostgresUrl(): string {
  const url = process.env.TOLLGATE_TEST_PG_URL;
  if (url === undefined || url === '') throw new Error('TOLLGATE_TEST_PG_URL is not set: jest globalSetup starts the shared server');
  return url;
}

let databaseCounter = 0;

/** A new, empty database on the shared server; its connection string. */
export function freshDatabase(label = 'test'): string {
  const base = new URL(sharedPostgresUrl());
  const name = `${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${process.pid}_${Date.now().toString(36)}_${databaseCounter++}`;
  const psqlArgs = ['-h', base.hostname, '-p', base.port, '-U', base.username, '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-Atc', `CREATE DATABASE "${name}"`];
  execFileSync('psql', psqlArgs, { encoding: 'utf8' });
  base.pathname = `/${name}`;
  return base.toString();
}

