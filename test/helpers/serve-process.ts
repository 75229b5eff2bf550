import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { LOOPBACK_POLICY } from './policies';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(REPO_ROOT, 'dist', 'cli.js');

export interface LogLine {
  msg: string;
  [key: string]: unknown;
}

/** A `tollgate serve` child process whose JSON log lines can be awaited. */
export class ServeProcess {
  readonly lines: LogLine[] = [];
  stderr = '';
  private readonly waiters: Array<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcess) {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    rl.on('line', (text) => this.onLine(text));
    child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  private onLine(text: string): void {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      return;
    }
    this.lines.push(line);
    for (const waiter of this.waiters.filter((w) => w.match(line))) {
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  }

  /** The next log line with this msg (or one already seen after `afterIndex`). */
  waitForLog(msg: string, afterIndex = 0, limitMs = 15000): Promise<LogLine> {
    return this.waitForLine((line) => line.msg === msg, `"${msg}"`, afterIndex, limitMs);
  }

  /** The next log line whose msg starts with `prefix` (for messages that carry figures). */
  waitForLogStarting(prefix: string, afterIndex = 0, limitMs = 15000): Promise<LogLine> {
    return this.waitForLine((line) => line.msg.startsWith(prefix), `"${prefix}…"`, afterIndex, limitMs);
  }

  private waitForLine(match: (line: LogLine) => boolean, what: string, afterIndex: number, limitMs: number): Promise<LogLine> {
    const seen = this.lines.slice(afterIndex).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} log line within ${limitMs} ms; stderr: ${this.stderr}`)), limitMs);
      this.waiters.push({ match, resolve: (line) => (clearTimeout(timer), resolve(line)) });
      void this.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`process exited before ${what}; stderr: ${this.stderr}`));
      });
    });
  }
}

export function ensureBuilt(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" (npm install/ci does it)`);
}

export interface SpawnOptions {
  /** Start under `ulimit -n` of this (soft and hard), as an operator's shell would. */
  openFilesLimit?: number;
}

export function spawnServe(args: string[], env: NodeJS.ProcessEnv = {}, options: SpawnOptions = {}): ServeProcess {
  ensureBuilt();
  const command = [process.execPath, CLI, 'serve', ...args];
  // The arguments reach the shell as its positional parameters, never as code: no quoting.
  const [file, ...argv] = options.openFilesLimit === undefined
    ? command
    : ['bash', '-c', `ulimit -n ${Math.floor(options.openFilesLimit)} && exec "$@"`, 'bash', ...command];
  const child = spawn(file, argv, {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new ServeProcess(child);
}

export function splitHostPort(text: string): { host: string; port: number } {
  const colon = text.lastIndexOf(':');
  return { host: text.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(text.slice(colon + 1)) };
}

/** A temp folder for `serve` runs: its policies folder (one policy.yaml) and its audit file's path. */
export interface ServeFolder {
  readonly dir: string;
  readonly policies: string;
  readonly dbFile: string;
  remove(): void;
}

export function serveFolder(prefix: string, policy = LOOPBACK_POLICY): ServeFolder {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  const policies = path.join(dir, 'policies');
  mkdirSync(policies);
  writeFileSync(path.join(policies, 'policy.yaml'), policy);
  return { dir, policies, dbFile: path.join(dir, 'data', 'audit.db'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `serve` arguments: proxy and admin on loopback port 0, the folder's policies and audit file, then `extra`. */
export function serveArgs(folder: ServeFolder, ...extra: string[]): string[] {
  return ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policies', folder.policies, '--db', folder.dbFile, ...extra];
}

/** The process's "listening" line and the ports it names. */
export async function listeningPorts(proc: ServeProcess): Promise<{ line: LogLine; proxyPort: number; adminPort: number }> {
  const line = await proc.waitForLog('listening');
  return { line, proxyPort: splitHostPort(String(line.proxy)).port, adminPort: splitHostPort(String(line.admin)).port };
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built CLI once. The policies folder never comes from the environment: tests name it. */
export function runCli(...args: string[]): CliResult {
  ensureBuilt();
  const env = { ...process.env };
  delete env.TOLLGATE_POLICIES;
  const run = spawnSync(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 20000, env });
  if (run.error) throw run.error;
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}
