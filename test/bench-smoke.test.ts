import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * Keeps `npm run bench` (bench/compare.ts) from rotting: the real harness, built as npm run bench
 * builds it, with tiny bounds. It checks the shape of the table it writes, never a timing: the
 * benchmark is not a test. squid, tinyproxy, wrk, hey and nginx are used where installed
 * (`--skip-missing`), so CI needs none of them; what is missing shows as "n/a: … not installed".
 */

const REPO_ROOT = path.resolve(__dirname, '..');
const CLI = path.join(REPO_ROOT, 'dist', 'cli.js');
const TSC = require.resolve('typescript/bin/tsc');
const HARNESS = path.join(REPO_ROOT, 'bench', 'dist', 'compare.js');
// --workers 1,2: tollgate once per worker count, `tollgate×2` being `serve --workers 2`.
const TARGET_COLUMNS = ['direct', 'tollgate', 'tollgate×2', 'squid', 'tinyproxy'];

/** The rows of the first markdown table after `heading`, as arrays of trimmed cells. */
function tableAfter(markdown: string, heading: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.startsWith(heading));
  if (start === -1) throw new Error(`no "${heading}" in:\n${markdown}`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('|')) rows.push(line.split('|').slice(1, -1).map((cell) => cell.trim()));
    else if (rows.length > 0) break;
  }
  return rows;
}

/** A figure as the table prints it, with its error count if any. */
const FIGURE = /^\d[\d,]*(\.\d+)?( \([\d,]+ errors\))?$/;
const figureOr = (note: string): RegExp => new RegExp(`^(${FIGURE.source.slice(1, -1)}|${note})$`);

describe('npm run bench harness (tiny bounds)', () => {
  let dir: string;
  let markdown: string;
  let stderr: string;

  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run "npm run build" first');
    const build = spawnSync(process.execPath, [TSC, '-p', path.join(REPO_ROOT, 'bench', 'tsconfig.json')], { encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`bench build failed: ${build.stdout}${build.stderr}`);
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-bench-smoke-'));
    const out = path.join(dir, 'compare.md');
    const run = spawnSync(
      process.execPath,
      [HARNESS, '--seconds', '1', '--repeat', '1', '--rate', '100', '--bulk-mib', '4', '--bulk-limit', '10',
        '--idle-tunnels', '20', '--rss-sample-ms', '200', '--pause-ms', '50', '--workers', '1,2', '--skip-missing', '--out', out],
      { encoding: 'utf8', timeout: 170_000 },
    );
    stderr = run.stderr;
    if (run.status !== 0) throw new Error(`harness exited ${run.status} (${run.signal}): ${run.stderr}`);
    markdown = readFileSync(out, 'utf8');
  }, 200_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writes the results table: one row per measure, one column per target', () => {
    const rows = tableAfter(markdown, '## Results');
    expect(rows[0]).toEqual(['load', 'unit', ...TARGET_COLUMNS]);
    const body = rows.slice(2);
    expect(body.map((row) => row[0].slice(0, 3))).toEqual(['(1)', '(1)', '(2)', '(2)', '(3)', '(3)', '(4)', '(5)', '(5)', '(5)', '(5)']);
    for (const row of body) expect(row).toHaveLength(2 + TARGET_COLUMNS.length);
  });

  it('measures direct and tollgate at each worker count with the loads that need no extra tool', () => {
    const body = tableAfter(markdown, '## Results').slice(2);
    const cell = (prefix: string, target: string): string => {
      const row = body.find((r) => r[0].startsWith(prefix));
      return row ? row[2 + TARGET_COLUMNS.indexOf(target)] : 'missing row';
    };
    // (2) and (3) use the bench's own Node client; (4) holds tunnels open: always measurable.
    expect(cell('(2) CONNECT', 'direct')).toMatch(FIGURE);
    for (const tollgate of ['tollgate', 'tollgate×2']) {
      expect(cell('(2) CONNECT', tollgate)).toMatch(FIGURE);
      expect(cell('(2) proxy CPU', tollgate)).toMatch(FIGURE);
      expect(cell('(3)', tollgate)).toMatch(FIGURE);
      expect(cell('(4)', tollgate)).toMatch(/^-?\d+(\.\d+)?$/);
    }
    // wrk and hey loads: a figure where the tool is installed, otherwise said so.
    for (const target of ['direct', 'tollgate', 'tollgate×2']) {
      expect(cell('(1) plain', target)).toMatch(figureOr('n/a: wrk not installed'));
      expect(cell('(5) 100 req/s', target)).toMatch(figureOr('n/a: hey not installed'));
    }
  });

  it('shows each peer as measured or as not installed, never silently blank', () => {
    const body = tableAfter(markdown, '## Results').slice(2);
    for (const peer of ['squid', 'tinyproxy']) {
      const column = body.map((row) => row[2 + TARGET_COLUMNS.indexOf(peer)]);
      expect(column.every((c) => c !== '')).toBe(true);
      if (column.some((c) => c.includes('not installed'))) expect(column.every((c) => c === `n/a: ${peer} not installed`)).toBe(true);
    }
  });

  it('writes the ratio and target tables and says the machine is shared', () => {
    expect(tableAfter(markdown, '## Ratios')[0]).toEqual([
      'load', 'tollgate ÷ direct', 'tollgate ÷ squid', 'squid ÷ direct', 'tinyproxy ÷ direct', 'tinyproxy ÷ squid', 'tollgate×2 ÷ tollgate',
    ]);
    const targets = tableAfter(markdown, '## Targets').slice(2);
    expect(targets.map((row) => row[0].slice(0, 3))).toEqual(['(1)', '(2)', '(3)', '(4)', '(5)']);
    for (const row of targets) expect(row[2]).toMatch(/^(met|\*\*missed\*\*: .+|not measured)$/);
    expect(markdown).toContain('**shared**');
    expect(stderr).toContain('bench: origin:');
  });

  it('shows each worker\'s share of the CONNECT load and the primary\'s CPU, from /readyz and /proc', () => {
    const cpu = tableAfter(markdown, '## Workers');
    expect(cpu[0]).toEqual(['load', 'unit', 'tollgate', 'tollgate×2', 'tollgate×2 ÷ tollgate']);
    const tunnel = cpu.find((row) => row[0].startsWith('(2) CONNECT: CPU per tunnel'));
    expect(tunnel?.slice(2, 4).every((c) => FIGURE.test(c))).toBe(true);
    expect(tunnel?.[4]).toMatch(/^\d+\.\d\d×$/);
    const shares = tableAfter(markdown, 'Each worker').slice(2).filter((row) => row[0] === 'tollgate×2' && row[1] === '(2) CONNECT');
    expect(shares.map((row) => row[2])).toEqual(['worker 1', 'worker 2', 'primary']);
    const workers = shares.slice(0, 2);
    // Two live pids, each with a share: the records /readyz counted per worker add up to the whole.
    for (const row of workers) expect(row[3]).toMatch(/^\d+$/);
    expect(workers[0][3]).not.toBe(workers[1][3]);
    const total = workers.reduce((sum, row) => sum + Number(row[4].replace('%', '')), 0);
    expect(total).toBeGreaterThan(99.8);
    expect(total).toBeLessThan(100.2);
    expect(shares[2][5]).toMatch(FIGURE);
    const single = tableAfter(markdown, 'Each worker').slice(2).find((row) => row[0] === 'tollgate' && row[1] === '(2) CONNECT');
    expect(single?.[2]).toBe('the one process');
  });
});

describe('npm run bench --loads (one load alone)', () => {
  let dir: string;

  beforeAll(() => {
    if (!existsSync(HARNESS)) throw new Error('bench/dist/compare.js is missing: the suite above builds it');
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-bench-loads-'));
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs only the loads named and reports the others as not run', () => {
    const out = path.join(dir, 'latency.md');
    const run = spawnSync(
      process.execPath,
      [HARNESS, '--targets', 'direct,tollgate', '--loads', 'latency', '--seconds', '1', '--repeat', '1', '--rate', '100',
        '--bulk-mib', '4', '--pause-ms', '50', '--skip-missing', '--out', out],
      { encoding: 'utf8', timeout: 120_000 },
    );
    if (run.status !== 0) throw new Error(`harness exited ${run.status} (${run.signal}): ${run.stderr}`);
    const body = tableAfter(readFileSync(out, 'utf8'), '## Results').slice(2);
    const tollgate = (prefix: string): string => body.find((r) => r[0].startsWith(prefix))?.[2 + TARGET_COLUMNS.indexOf('tollgate')] ?? 'missing row';
    for (const prefix of ['(1) plain', '(2) CONNECT', '(3)', '(4)']) expect(tollgate(prefix)).toBe('n/a: not run (--loads)');
    expect(tollgate('(5) 100 req/s')).toMatch(figureOr('n/a: hey not installed'));
    expect(run.stderr).not.toContain('idle tunnels on');
  }, 150_000);

  it('refuses a load it does not know', () => {
    const run = spawnSync(process.execPath, [HARNESS, '--loads', 'latency,nope', '--skip-missing'], { encoding: 'utf8', timeout: 30_000 });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('--loads: unknown nope');
  });

  it('refuses a worker count below 1', () => {
    const run = spawnSync(process.execPath, [HARNESS, '--workers', '1,0', '--skip-missing'], { encoding: 'utf8', timeout: 30_000 });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('--workers: expected a whole number from 1, got "0"');
  });
});
