import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type * as Playwright from 'playwright-core';
import type * as AppModule from '../../src/admin/app';
import type * as StoreModule from '../../src/audit/store';
import { load, REPO } from '../audit/built-modules';
import { LOADED_PROBE, pureSortProbe, scrollProbe, sortProbe } from './page-probes';

/**
 * How the history table holds up with 10,000 loaded rows, in the real browser: records go into
 * a temp SQLite store, the shipped admin app (dist/) serves them, headless Chromium loads all of
 * them with "Load 1,000 more", then scrolls (requestAnimationFrame deltas) and sorts by several
 * columns. Writes bench/results/ui-table.md.
 * Usage: npm run bench:ui [-- --rows N]
 */

const { buildAdminApp } = load<typeof AppModule>('admin/app.js');
const { openAuditStore } = load<typeof StoreModule>('audit/store.js');
const { chromium } = require(path.join(REPO, 'node_modules', 'playwright-core')) as typeof Playwright;

const CHROMIUM = process.env.TOLLGATE_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const ROWS = Number(process.argv[process.argv.indexOf('--rows') + 1]) || 10_000;
const SCROLL_MS = 3000;
const FRAME_MS = 1000 / 60;

function seed(store: StoreModule.AuditStore, rows: number): void {
  const start = Date.now() - 20 * 3_600_000;
  for (let i = 0; i < rows; i += 1) {
    const at = new Date(start + i * 5000);
    const deny = i % 13 === 0;
    store.record({
      startedAt: at, clientIp: `10.1.${(i >> 8) & 255}.${i & 255}`, clientPort: 40000 + (i % 20000), clients: ['ci-runners'], user: null,
      kind: i % 3 === 0 ? 'http' : 'connect', method: i % 3 === 0 ? 'GET' : null, scheme: i % 3 === 0 ? 'http' : null,
      host: `svc-${i % 211}.api.example${i % 7}.com`, port: 443, path: i % 3 === 0 ? `/v1/items/${i}` : null, resolvedIp: null,
      decision: deny ? 'deny' : 'allow', wouldDeny: false, rule: deny ? '(default)' : `allow-${i % 17}`, ruleSource: '20-allow.yaml:7',
      reason: deny ? 'no rule matched; default deny' : `matched rule "allow-${i % 17}" (allow)`, policyVersion: 'sha256:3f2a9c1e0b7d',
    }, { endedAt: new Date(at.getTime() + (i % 900)), status: deny ? 403 : [200, 204, 301, 502][i % 4], bytesUp: i * 7, bytesDown: i * 31, error: null });
  }
}

/** Polls the summary line (waitForFunction would eval a string, which the UI's CSP refuses). */
async function waitForLoaded(page: Playwright.Page, done: (count: number) => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!done(await page.evaluate<number>(LOADED_PROBE))) {
    if (Date.now() > deadline) throw new Error('rows did not load within 60 s');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const f1 = (n: number): string => n.toFixed(1);

interface ScrollResult { name: string; frames: number; p50: number; p95: number; max: number; slow: number; fps: number; domRows: number; work: MainThread }

/** Main-thread time of the renderer (CDP Performance.getMetrics), ms: cumulative, or per frame. */
interface MainThread { script: number; style: number; layout: number; task: number }

/**
 * The renderer's cumulative main-thread durations: JavaScript, style recalculation, layout, and
 * every task (which adds paint recording, hit testing, the frame's own bookkeeping). Raster and
 * compositing run on other threads and are not in these numbers.
 */
async function mainThread(cdp: Playwright.CDPSession): Promise<MainThread> {
  const { metrics } = await cdp.send('Performance.getMetrics');
  const get = (name: string): number => (metrics.find((m) => m.name === name)?.value ?? 0) * 1000;
  return { script: get('ScriptDuration'), style: get('RecalcStyleDuration'), layout: get('LayoutDuration'), task: get('TaskDuration') };
}

function perFrame(before: MainThread, after: MainThread, frames: number): MainThread {
  const n = Math.max(1, frames);
  return {
    script: (after.script - before.script) / n, style: (after.style - before.style) / n,
    layout: (after.layout - before.layout) / n, task: (after.task - before.task) / n,
  };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-bench-ui-'));
  const store = openAuditStore(path.join(dir, 'audit.db'));
  seed(store, ROWS);
  const app = buildAdminApp({ store, token: null, ready: () => ({ ok: true, detail: {} }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    await page.goto(`${base}/`);
    await waitForLoaded(page, (n) => n === Math.min(100, ROWS));
    const loadTimes: number[] = [];
    while ((await page.evaluate<number>(LOADED_PROBE)) < ROWS) {
      const before = await page.evaluate<number>(LOADED_PROBE);
      const t0 = Date.now();
      await page.getByRole('button', { name: 'Load 1,000 more' }).click();
      await waitForLoaded(page, (n) => n > before);
      loadTimes.push(Date.now() - t0);
    }
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable', { timeDomain: 'threadTicks' });
    const scrolls: ScrollResult[] = [];
    for (const [name, step] of [['steady, 60 px a frame', 60], ['fast, 600 px a frame', 600], ['scrollbar drag: a random place every frame', 'jump']] as const) {
      const before = await mainThread(cdp);
      const { deltas, domRows } = await page.evaluate<{ deltas: number[]; domRows: number }>(scrollProbe(step, SCROLL_MS));
      const work = perFrame(before, await mainThread(cdp), deltas.length);
      scrolls.push({ work,
        name, frames: deltas.length, p50: percentile(deltas, 50), p95: percentile(deltas, 95), max: Math.max(...deltas),
        slow: deltas.filter((d) => d > FRAME_MS * 1.5).length, fps: (deltas.length * 1000) / deltas.reduce((a, b) => a + b, 0), domRows,
      });
    }
    const sorts: Array<{ key: string; handled: number; painted: number; work: MainThread }> = [];
    for (const key of ['status', 'request', 'why', 'time', 'bytes', 'id']) {
      const runs: Array<{ handled: number; painted: number }> = [];
      const before = await mainThread(cdp);
      for (let i = 0; i < 3; i += 1) runs.push(await page.evaluate<{ handled: number; painted: number }>(sortProbe(key)));
      const work = perFrame(before, await mainThread(cdp), runs.length);
      sorts.push({ key, handled: percentile(runs.map((r) => r.handled), 50), painted: percentile(runs.map((r) => r.painted), 50), work });
    }
    const pureSorts = await page.evaluate<Record<string, number>>(pureSortProbe(ROWS));
    const load = os.loadavg()[0];
    const report = [
      '# History table with many loaded rows (bench:ui)', '',
      `${ROWS.toLocaleString('en-US')} records loaded in headless Chromium (${(await browser.version())}, --disable-gpu) at 1440×900; ` +
      `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), load average ${load.toFixed(1)} when it ended ` +
      '(other work on the machine slows every number here). Times are the page\'s own clock.', '',
      `Load 1,000 more: median ${percentile(loadTimes, 50)} ms a click, slowest ${Math.max(...loadTimes)} ms (${loadTimes.length} clicks, API + render).`, '',
      '## Scrolling (requestAnimationFrame deltas, 3 s each; 16.7 ms = 60 fps)', '',
      '| scroll | frames | fps | p50 ms | p95 ms | max ms | frames > 25 ms | rows in page |', '| --- | --- | --- | --- | --- | --- | --- | --- |',
      ...scrolls.map((s) => `| ${s.name} | ${s.frames} | ${f1(s.fps)} | ${f1(s.p50)} | ${f1(s.p95)} | ${f1(s.max)} | ${s.slow} | ${s.domRows} |`), '',
      'Where a frame\'s main-thread time goes (CDP Performance metrics, thread CPU time, mean per frame, ms): "other" is the rest of ' +
      'the main thread\'s tasks (paint recording, hit testing, the frame\'s bookkeeping). Raster and compositing run on other ' +
      'threads and are not counted; a frame longer than its main-thread time waited for them or for a CPU.', '',
      '| scroll | script | style | layout | other | main thread in all | frame (mean) |', '| --- | --- | --- | --- | --- | --- | --- |',
      ...scrolls.map((s) => `| ${s.name} | ${f1(s.work.script)} | ${f1(s.work.style)} | ${f1(s.work.layout)} | ` +
        `${f1(s.work.task - s.work.script - s.work.style - s.work.layout)} | ${f1(s.work.task)} | ${f1(1000 / s.fps)} |`), '',
      '## Sorting all loaded rows (median of 3 clicks)', '',
      '| column | click handled (sort + rows in view), ms | until the next frame, ms | main thread a click: script / style / layout / all, ms |', '| --- | --- | --- | --- |',
      ...sorts.map((s) => `| ${s.key} | ${f1(s.handled)} | ${f1(s.painted)} | ${f1(s.work.script)} / ${f1(s.work.style)} / ${f1(s.work.layout)} / ${f1(s.work.task)} |`), '',
      `The sort alone (sortRows on ${ROWS.toLocaleString('en-US')} records, no rendering, median of 5): ` +
      Object.entries(pureSorts).map(([key, value]) => `${key} ${f1(value)} ms`).join(', ') + '.', '',
    ].join('\n');
    fs.mkdirSync(path.join(REPO, 'bench', 'results'), { recursive: true });
    fs.writeFileSync(path.join(REPO, 'bench', 'results', 'ui-table.md'), report);
    process.stdout.write(`${report}\n`);
  } finally {
    await browser.close();
    await app.close();
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
