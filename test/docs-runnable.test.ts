import { spawn } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { extractRunnable, outsideUrls, runnableBlocks, BlockError } from './helpers/docs-blocks';
import type { RunnableBlock } from './helpers/docs-blocks';
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
/** The addresses `npm start` listens on, which blocks are written for. */
const DEFAULT_PROXY = '127.0.0.1:3128';
const DEFAULT_ADMIN = '127.0.0.1:3129';

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
function blockEnv(cwd: string): NodeJS.ProcessEnv {
  const proxy = `http://${served.proxy}`;
  return {
    PATH: `${served.shims}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: cwd,
    LANG: 'C.UTF-8',
    TOLLGATE_PROXY: proxy,
    TOLLGATE_ADMIN: `http://${served.admin}`,
    TOLLGATE_DB: served.dbFile,
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

function runBlock(block: RunnableBlock): Promise<BlockRun> {
  const script = block.code.split(DEFAULT_PROXY).join(served.proxy).split(DEFAULT_ADMIN).join(served.admin);
  const cwd = blockCwd();
  // Its own process group, so a timeout ends whatever the block started too.
  const child = spawn('bash', ['-e', '-c', script], { cwd, env: blockEnv(cwd), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-(child.pid as number), 'SIGKILL');
    } catch {
      // Already gone.
    }
  }, block.timeoutMs);
  return new Promise((resolve) => {
    child.on('error', (err) => (output += `spawn: ${err.message}\n`));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
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

  test.each(BLOCKS.map((block) => [`${block.file}:${block.line}`, block] as const))('%s', async (_where, block) => {
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
  const run = (code: string, timeoutMs = 10_000): Promise<BlockRun> => runBlock({ file: 't.md', line: 1, code, expectExit: 0, expectOutput: [], timeoutMs });

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

  test('npx runs only tollgate (never the registry)', async () => {
    const result = await run('npx cowsay hi');
    expect(result.code).toBe(127);
  });

  test('an outside host the served policies allow is refused before the block runs', () => {
    const [block] = extractRunnable('```sh runnable\ncurl -x http://127.0.0.1:3128 https://registry.npmjs.org/\ncurl http://pastebin.com/ $ORIGIN\n```\n', 't.md');
    expect(allowedOutsideUrls(block)).toEqual(['https://registry.npmjs.org/']);
  });
});

describe('extracting blocks', () => {
  test('only shell fences marked runnable, indented ones too, with their directives', () => {
    const text = [
      '```sh', 'echo plain', '```',
      '1. step', '   ```bash runnable', '   tollgate policy test x:443', '   # expect-exit: 1', '   # expect-output: decision: deny', '   ```',
      '~~~sh runnable', '```', '# timeout: 5', '~~~',
    ].join('\n');
    const blocks = extractRunnable(text, 'p.md');
    expect(blocks).toEqual([
      { file: 'p.md', line: 5, code: 'tollgate policy test x:443\n# expect-exit: 1\n# expect-output: decision: deny\n', expectExit: 1, expectOutput: ['decision: deny'], timeoutMs: 20_000 },
      { file: 'p.md', line: 10, code: '```\n# timeout: 5\n', expectExit: 0, expectOutput: [], timeoutMs: 5000 },
    ]);
  });

  test('a misspelt directive or a runnable non-shell block is an error, not a silent pass', () => {
    expect(() => extractRunnable('```sh runnable\n# expect-exitt: 1\n```\n', 'p.md')).toThrow(BlockError);
    expect(() => extractRunnable('```yaml runnable\na: 1\n```\n', 'p.md')).toThrow('p.md:1: "runnable" on a yaml block');
  });

  test('README.md and docs/*.md parse (every marked block is well formed)', () => {
    const files = readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md'));
    expect(files).toContain('operations.md');
    expect(BLOCKS.every((b) => b.code.trim() !== '')).toBe(true);
  });
});
