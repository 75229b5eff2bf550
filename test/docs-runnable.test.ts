import { spawn } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { extractRunnable, outsideUrls, readerPorts, runnableBlocks, substituteAddresses, BlockError, READER_ADMIN, READER_PROXY } from './helpers/docs-blocks';
import type { RunnableBlock } from './helpers/docs-blocks';
import { freePort } from './helpers/free-port';
import { freshDatabase, postgresTestsOff } from './helpers/postgres';
import { CLI, listeningPorts, REPO_ROOT, runCli, spawnServe } from './helpers/serve-process';
import type { ServeProcess } from './helpers/serve-process';

/**
 * Every shell block README.md and docs/*.md mark `runnable` runs here, in order, with `bash -e`,
 * against one `tollgate serve` on loopback port 0 that serves the example policies (policies/)
 * plus one test-only file allowing a local origin. See README-docs.md for what a block gets.
 */

/** The docs' origin listens on 127.0.0.2, so the guard's loopback block still covers 127.0.0.1. */
const ORIGIN_HOST = '127.0.0.2';
const ORIGIN_BODY = 'hello from the docs origin\n';
const ORIGIN_POLICY = `# Test-only (test/docs-runnable.test.ts): the docs' local origin, and nothing else on loopback.
version: 1
network:
  allow_ranges: [${ORIGIN_HOST}/32]
rules:
  - name: docs-origin
    action: allow
    hosts: [${ORIGIN_HOST}]
    ports: any
`;
const BLOCKS = runnableBlocks(REPO_ROOT);

interface Served {
  readonly dir: string;
  readonly policies: string;
  readonly dbFile: string;
  readonly shims: string;
  readonly proxy: string;
  readonly admin: string;
  readonly origin: string;
}

let served: Served;
let serve: ServeProcess;
let origin: http.Server;

function startOrigin(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    res.end(ORIGIN_BODY);
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, ORIGIN_HOST, () => resolve(server));
  });
}

/** `tollgate` runs the built CLI; `npx` runs only `npx tollgate` (a temp cwd has no package to find, and npx would ask the registry). */
function writeShims(dir: string): void {
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'tollgate'), `#!/bin/sh\nexec '${process.execPath}' '${CLI}' "$@"\n`);
  writeFileSync(path.join(dir, 'npx'), '#!/bin/sh\nif [ "$1" = tollgate ]; then shift; exec tollgate "$@"; fi\necho "runnable blocks may run only npx tollgate, not npx $1" >&2\nexit 127\n');
  for (const name of ['tollgate', 'npx']) chmodSync(path.join(dir, name), 0o755);
}

beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-docs-'));
  const policies = path.join(dir, 'policies');
  cpSync(path.join(REPO_ROOT, 'policies'), policies, { recursive: true });
  writeFileSync(path.join(policies, '90-docs-origin.yaml'), ORIGIN_POLICY);
  const shims = path.join(dir, 'bin');
  writeShims(shims);
  origin = await startOrigin();
  const dbFile = path.join(dir, 'data', 'audit.db');
  serve = spawnServe(['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policies', policies, '--db', dbFile]);
  const ports = await listeningPorts(serve);
  served = {
    dir, policies, dbFile, shims,
    proxy: `127.0.0.1:${ports.proxyPort}`,
    admin: `127.0.0.1:${ports.adminPort}`,
    origin: `http://${ORIGIN_HOST}:${(origin.address() as AddressInfo).port}`,
  };
});

afterAll(async () => {
  if (serve !== undefined && serve.child.exitCode === null) {
    serve.child.kill('SIGTERM');
    await serve.exited;
  }
  if (origin !== undefined) await new Promise((resolve) => origin.close(resolve));
  if (served !== undefined) rmSync(served.dir, { recursive: true, force: true });
});

/** What a block's shell gets: the served addresses, the shims first on PATH, and every proxy variable aimed at the served tollgate. */
function blockEnv(cwd: string, block: RunnableBlock): NodeJS.ProcessEnv {
  const proxy = `http://${served.proxy}`;
  return {
    ...(block.needs.includes('postgres') ? { TOLLGATE_AUDIT_URL: freshDatabase('docs') } : {}),
    PATH: `${served.shims}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: cwd,
    LANG: 'C.UTF-8',
    TOLLGATE_PROXY: proxy,
    TOLLGATE_ADMIN: `http://${served.admin}`,
    TOLLGATE_DB: served.dbFile,
    // For a block showing a signal (kill -HUP "$TOLLGATE_PID" reloads the served policies).
    TOLLGATE_PID: String(serve.child.pid),
    ORIGIN: served.origin,
    // A tool that honours these goes through the served tollgate (and its policies), never straight out.
    http_proxy: proxy, https_proxy: proxy, HTTP_PROXY: proxy, HTTPS_PROXY: proxy,
    no_proxy: '127.0.0.1,localhost,::1', NO_PROXY: '127.0.0.1,localhost,::1',
  };
}

/** A fresh folder with a copy of the example policies and `data` -> the served audit folder. */
function blockCwd(): string {
  const cwd = mkdtempSync(path.join(served.dir, 'block-'));
  cpSync(path.join(REPO_ROOT, 'policies'), path.join(cwd, 'policies'), { recursive: true });
  symlinkSync(path.dirname(served.dbFile), path.join(cwd, 'data'));
  return cwd;
}

interface BlockRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  timedOut: boolean;
}

/** The reader's addresses (127.0.0.1:3128, :3129, and any of :3130-:3199 the block names) mapped to this run's. */
async function blockAddresses(code: string): Promise<Map<string, string>> {
  const addresses = new Map([[READER_PROXY, served.proxy], [READER_ADMIN, served.admin]]);
  for (const address of readerPorts(code)) addresses.set(address, `127.0.0.1:${await freePort()}`);
  return addresses;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

/** How long what a block left running in the background has to stop after SIGTERM before SIGKILL. */
const BACKGROUND_GRACE_MS = 10_000;

async function runBlock(block: RunnableBlock): Promise<BlockRun> {
  const script = substituteAddresses(block.code, await blockAddresses(block.code));
  const cwd = blockCwd();
  // Its own process group, so a timeout, or the block's end, ends whatever the block started too.
  const child = spawn('bash', ['-e', '-c', script], { cwd, env: blockEnv(cwd, block), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const group = child.pid as number;
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    signalGroup(group, 'SIGKILL');
  }, block.timeoutMs);
  // A block may start a tollgate in the background (`tollgate serve ... &`): when the shell
  // exits, SIGTERM what is left of its group (a graceful shutdown), then SIGKILL if it lingers.
  let grace: NodeJS.Timeout | undefined;
  child.on('exit', () => {
    signalGroup(group, 'SIGTERM');
    grace = setTimeout(() => signalGroup(group, 'SIGKILL'), BACKGROUND_GRACE_MS);
  });
  return new Promise((resolve) => {
    child.on('error', (err) => (output += `spawn: ${err.message}\n`));
    // 'close' waits for the output pipes, which the background processes hold until they end.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(grace);
      resolve({ code, signal, output, timedOut });
    });
  });
}

/** A block may name an outside host only to show it refused: the served policies must deny it, or the block would reach the internet. */
function allowedOutsideUrls(block: RunnableBlock): string[] {
  return outsideUrls(block.code).filter((url) => {
    const parsed = new URL(url);
    const target = parsed.protocol === 'https:' ? `${parsed.hostname}:${parsed.port || '443'}` : url;
    return runCli('policy', 'test', '--policies', served.policies, '--json', target).status !== 1;
  });
}

describe('runnable blocks in README.md and docs/*.md', () => {
  test('there are some (the harness proves itself on them)', () => {
    expect(BLOCKS.length).toBeGreaterThanOrEqual(3);
    expect(BLOCKS.some((b) => b.file === 'README.md')).toBe(true);
  });

  // Blocks that need PostgreSQL are skipped only where all PostgreSQL tests are (TOLLGATE_TEST_PG=off).
  const skipped = (block: RunnableBlock): boolean => block.needs.includes('postgres') && postgresTestsOff();
  for (const block of BLOCKS.filter(skipped)) test.skip(`${block.file}:${block.line} (needs postgres)`, () => undefined);
  test.each(BLOCKS.filter((b) => !skipped(b)).map((block) => [`${block.file}:${block.line}`, block] as const))('%s', async (_where, block) => {
    expect(allowedOutsideUrls(block)).toEqual([]);
    const run = await runBlock(block);
    const where = `${block.file}:${block.line}`;
    if (run.timedOut) throw new Error(`${where}: still running after ${block.timeoutMs / 1000} s; output:\n${run.output}`);
    if (run.code !== block.expectExit) throw new Error(`${where}: exit ${run.code ?? run.signal}, expected ${block.expectExit}; output:\n${run.output}`);
    const missing = block.expectOutput.filter((text) => !run.output.includes(text));
    if (missing.length > 0) throw new Error(`${where}: output lacks ${missing.map((t) => JSON.stringify(t)).join(', ')}; output:\n${run.output}`);
  }, 60_000);

  test('the served tollgate is still up after them', () => {
    expect(serve.child.exitCode).toBeNull();
  });
});

describe('the harness itself', () => {
  const run = (code: string, timeoutMs = 10_000, needs: RunnableBlock['needs'] = []): Promise<BlockRun> => runBlock({ file: 't.md', line: 1, code, expectExit: 0, expectOutput: [], timeoutMs, needs });

  test('a block gets the served tollgate, the origin through it, the shims and a copy of the policies', async () => {
    const result = await run([
      'curl -s -x http://127.0.0.1:3128 "$ORIGIN/"',
      'curl -s -o /dev/null -w "%{http_code}\\n" -x "$TOLLGATE_PROXY" http://pastebin.com/',
      'curl -s "$TOLLGATE_ADMIN/readyz" >/dev/null && echo admin-up',
      'npx tollgate policy check --policies policies',
      'test -d data && echo data-linked',
    ].join('\n'));
    expect(result.code).toBe(0);
    expect(result.output).toContain(ORIGIN_BODY);
    expect(result.output).toContain('403\n');
    expect(result.output).toContain('admin-up');
    expect(result.output).toContain('policies are valid');
    expect(result.output).toContain('data-linked');
  });

  test('bash -e: the first failing command ends the block with its status', async () => {
    const result = await run('false\necho not reached');
    expect(result.code).toBe(1);
    expect(result.output).not.toContain('not reached');
  });

  test('a block past its time is killed, with what it started', async () => {
    const result = await run('sleep 30 & sleep 30', 300);
    expect(result.timedOut).toBe(true);
  });

  test('what a block leaves running in the background is ended when the block ends', async () => {
    const result = await run('sleep 30 &\necho "$!" > sleeper.pid\necho "$!"');
    expect(result.code).toBe(0);
    expect(result.timedOut).toBe(false);
    // Its pipes close as it exits, a moment before the kernel lists it as gone: a bounded wait.
    const pid = Number(result.output.trim());
    for (let i = 0; i < 100 && alive(pid); i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(alive(pid)).toBe(false);
  });

  test('a block may start its own tollgate on 127.0.0.1:3130-3199: each address is a free port of its own', async () => {
    const result = await run([
      'tollgate serve --listen 127.0.0.1:3130 --admin-listen 127.0.0.1:3131 --policies policies --db own/audit.db > serve.log &',
      'curl -sf --retry 100 --retry-connrefused --retry-delay 1 --retry-max-time 15 http://127.0.0.1:3131/readyz > /dev/null',
      'echo "own admin up"',
      'grep -o \'"admin":"[^"]*"\' serve.log',
    ].join('\n'), 30_000);
    expect(result.code).toBe(0);
    expect(result.output).toContain('own admin up');
    const admin = /"admin":"127\.0\.0\.1:([0-9]+)"/.exec(result.output)?.[1];
    expect(admin).toBeDefined();
    expect([3131, Number(served.admin.split(':')[1])]).not.toContain(Number(admin));
  });

  test('the served tollgate\'s pid is $TOLLGATE_PID', async () => {
    const result = await run('echo "pid=$TOLLGATE_PID"');
    expect(result.output).toContain(`pid=${serve.child.pid}\n`);
  });

  (postgresTestsOff() ? test.skip : test)('# needs: postgres gives $TOLLGATE_AUDIT_URL, an empty database of its own; other blocks have none', async () => {
    const withDb = await run('psql "$TOLLGATE_AUDIT_URL" -Atc "select current_database(), count(*) from pg_tables where schemaname = \'public\'"', 10_000, ['postgres']);
    expect(withDb.code).toBe(0);
    expect(withDb.output).toMatch(/^docs_[a-z0-9_]+\|0\n$/);
    const without = await run('echo "url=${TOLLGATE_AUDIT_URL:-none}"');
    expect(without.output).toContain('url=none');
  });

  test('npx runs only tollgate (never the registry)', async () => {
    const result = await run('npx cowsay hi');
    expect(result.code).toBe(127);
  });

  test('an outside host the served policies allow is refused before the block runs', () => {
    const [block] = extractRunnable('```sh runnable\ncurl -x http://127.0.0.1:3128 https://registry.npmjs.org/\ncurl http://pastebin.com/ $ORIGIN\n```\n', 't.md');
    expect(allowedOutsideUrls(block)).toEqual(['https://registry.npmjs.org/']);
  });
});

/** Whether a process runs (a zombie waiting for its reaper does not). */
function alive(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return false;
  try {
    return readFileSync(stat, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('extracting blocks', () => {
  test('only shell fences marked runnable, indented ones too, with their directives', () => {
    const text = [
      '```sh', 'echo plain', '```',
      '1. step', '   ```bash runnable', '   tollgate policy test x:443', '   # expect-exit: 1', '   # expect-output: decision: deny', '   ```',
      '~~~sh runnable', '```', '# timeout: 5', '~~~',
    ].join('\n');
    const blocks = extractRunnable(text, 'p.md');
    expect(blocks).toEqual([
      { file: 'p.md', line: 5, code: 'tollgate policy test x:443\n# expect-exit: 1\n# expect-output: decision: deny\n', expectExit: 1, expectOutput: ['decision: deny'], timeoutMs: 20_000, needs: [] },
      { file: 'p.md', line: 10, code: '```\n# timeout: 5\n', expectExit: 0, expectOutput: [], timeoutMs: 5000, needs: [] },
    ]);
  });

  test('a misspelt directive or a runnable non-shell block is an error, not a silent pass', () => {
    expect(() => extractRunnable('```sh runnable\n# expect-exitt: 1\n```\n', 'p.md')).toThrow(BlockError);
    expect(() => extractRunnable('```yaml runnable\na: 1\n```\n', 'p.md')).toThrow('p.md:1: "runnable" on a yaml block');
    expect(() => extractRunnable('```sh runnable\n# needs: mysql\n```\n', 'p.md')).toThrow(BlockError);
    expect(() => extractRunnable('```sh runnable\n# need: postgres\n```\n', 'p.md')).toThrow(BlockError);
    expect(extractRunnable('```sh runnable\n# needs: postgres\n```\n', 'p.md')[0].needs).toEqual(['postgres']);
  });

  test('reader addresses: 3128/3129 and 3130-3199 on 127.0.0.1, whole addresses only', () => {
    const code = 'a 127.0.0.1:3130 b http://127.0.0.1:3199/x c 127.0.0.1:3130 d 127.0.0.1:31300 e 127.0.0.1:3200 f 127.0.0.1:3128';
    expect(readerPorts(code)).toEqual(['127.0.0.1:3130', '127.0.0.1:3199']);
    const map = new Map([['127.0.0.1:3130', '127.0.0.1:5000'], ['127.0.0.1:3128', '127.0.0.1:6000']]);
    expect(substituteAddresses(code, map)).toBe('a 127.0.0.1:5000 b http://127.0.0.1:3199/x c 127.0.0.1:5000 d 127.0.0.1:31300 e 127.0.0.1:3200 f 127.0.0.1:6000');
  });

  test('README.md and docs/*.md parse (every marked block is well formed)', () => {
    const files = readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md'));
    expect(files).toContain('operations.md');
    expect(BLOCKS.every((b) => b.code.trim() !== '')).toBe(true);
  });
});
