import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { chromium } from 'playwright-core';
import type { Browser, ConsoleMessage, Page } from 'playwright-core';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../../src/admin/app';
import type { AdminAppOptions } from '../../src/admin/app';
import type { SearchPace } from '../../src/audit/query';
import { openAuditStore } from '../../src/audit/store';
import type { AuditStore } from '../../src/audit/store';
import type { AuditCompletion, AuditOpen } from '../../src/audit/record-types';
import { loadPolicy } from '../../src/policy/load';
import { PolicyHolder } from '../../src/policy/watch';

/** Flags from TOOLCHAIN.md: no sandbox (root in CI), no GPU, and no traffic of its own. */
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run',
];

export const CHROMIUM_PATH = process.env.TOLLGATE_CHROMIUM ?? '/usr/bin/chromium';

export function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: apt-get install chromium (as .ci/run does), or set TOLLGATE_CHROMIUM`);
  }
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, timeout: 30_000 });
}

export const SCREENSHOT_DIR = path.resolve(__dirname, '..', '..', 'test-artifacts', 'screenshots');

export async function screenshot(page: Page, name: string, { fullPage = false } = {}): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage, timeout: 10_000 });
  return file;
}

/** Payloads that would run if any of them reached the page as markup. */
export const XSS = {
  host: '<img src=x onerror=alert(1)>.evil',
  path: '/"><script>alert(2)</script>',
  reason: 'matched <svg onload=alert(3)> rule',
  user: '"><iframe src=javascript:alert(4)>',
  /** A TLS client names what it likes in its ClientHello; it reaches the record as `sni`. */
  sni: '<img src=x onerror=alert(5)>.sni',
} as const;

export const POLICY_FILES: Record<string, string> = {
  '00-settings.yaml': 'version: 1\nsettings:\n  default: deny\n  mode: enforce\n',
  '10-deny.yaml': [
    'version: 1',
    'rules:',
    '  - name: deny-paste-sites',
    '    action: deny',
    '    hosts: ["**.pastebin.com", "**.paste.ee"]',
    '    ports: any',
    '  - name: report-file-sharing',
    '    action: deny',
    '    mode: report',
    '    hosts: ["**.transfer.sh"]',
    '',
  ].join('\n'),
  '20-allow.yaml': [
    'version: 1',
    'rules:',
    '  - name: npm-registry',
    '    action: allow',
    '    hosts: [registry.npmjs.org]',
    '    ports: [443]',
    '  - name: github',
    '    action: allow',
    '    hosts: [github.com, "**.githubusercontent.com"]',
    '  - name: legacy-mirror',
    '    action: allow',
    '    hosts: [mirror.legacy.example]',
    '',
  ].join('\n'),
};

export interface SeededIds {
  allowed: number;
  denied: number;
  wouldDeny: number;
  open: number;
  xss: number;
  defaultDeny: number;
  all: number[];
}

export interface AdminUnderTest {
  readonly baseUrl: string;
  readonly store: AuditStore;
  readonly app: FastifyInstance;
  readonly holder: PolicyHolder;
  readonly policiesDir: string;
  readonly ids: SeededIds;
  close(): Promise<void>;
}

const MINUTE = 60_000;

function request(overrides: Partial<AuditOpen> & Pick<AuditOpen, 'host' | 'decision'>, startedAt: Date): AuditOpen {
  return {
    startedAt,
    clientIp: '10.0.8.5',
    clientPort: 41000,
    clients: ['ci-runners'],
    user: null,
    kind: 'connect',
    method: null,
    scheme: null,
    port: 443,
    path: null,
    resolvedIp: overrides.decision === 'allow' ? '140.82.112.3' : null,
    wouldDeny: false,
    rule: overrides.decision === 'allow' ? 'github' : 'deny-paste-sites',
    ruleSource: overrides.decision === 'allow' ? '20-allow.yaml:7' : '10-deny.yaml:3',
    reason: overrides.decision === 'allow' ? 'matched rule "github" (allow)' : 'matched rule "deny-paste-sites" (deny)',
    policyVersion: 'sha256:3f2a9c1e0b7d',
    ...overrides,
  };
}

function done(startedAt: Date, status: number, bytesUp = 0, bytesDown = 0, error: string | null = null): AuditCompletion {
  return { endedAt: new Date(startedAt.getTime() + 180), status, bytesUp, bytesDown, error };
}

const BACKGROUND_HOSTS = ['registry.npmjs.org', 'github.com', 'objects.githubusercontent.com', 'api.github.com', 'codeload.github.com'];
const BACKGROUND_CLIENTS = ['10.0.8.5', '10.0.8.6', '10.0.9.14', '10.0.12.7'];

/**
 * 120 ordinary allowed tunnels spread over the last 23 hours (more than one page), then the
 * records each test looks at, newest last: allowed, denied, would-deny, default deny, the XSS
 * payloads, and an open tunnel.
 */
export function seedRecords(store: AuditStore, now = Date.now()): SeededIds {
  const all: number[] = [];
  for (let i = 0; i < 120; i += 1) {
    const at = new Date(now - 23 * 60 * MINUTE + i * 11 * MINUTE + (i % 7) * 1000);
    const host = BACKGROUND_HOSTS[i % BACKGROUND_HOSTS.length];
    const rule = host === 'registry.npmjs.org' ? 'npm-registry' : 'github';
    all.push(store.record(request({
      host, decision: 'allow', clientIp: BACKGROUND_CLIENTS[i % BACKGROUND_CLIENTS.length], clientPort: 40000 + i,
      rule, ruleSource: rule === 'npm-registry' ? '20-allow.yaml:3' : '20-allow.yaml:7', reason: `matched rule "${rule}" (allow)`,
    }, at), done(at, 200, 900 + i * 37, 40_000 + i * 5003)));
    if (i % 9 === 4) {
      const denied = new Date(at.getTime() + 20_000);
      all.push(store.record(request({ host: 'pastebin.com', decision: 'deny', clientIp: '10.0.9.14' }, denied), done(denied, 403)));
    }
  }
  const t = (minutesAgo: number) => new Date(now - minutesAgo * MINUTE);
  const allowed = store.record(request({
    host: 'github.com', decision: 'allow', kind: 'http', method: 'GET', scheme: 'http', port: 80, path: '/repos/acme/app/tarball',
  }, t(9)), done(t(9), 200, 512, 734_003));
  const denied = store.record(request({ host: 'pastebin.com', decision: 'deny', clientIp: '10.0.12.7', clients: [], sni: XSS.sni }, t(8)), done(t(8), 403));
  const wouldDeny = store.record(request({
    host: 'transfer.sh', decision: 'allow', wouldDeny: true, rule: 'report-file-sharing', ruleSource: '10-deny.yaml:7',
    reason: 'matched rule "report-file-sharing" (deny; report mode: let through)', resolvedIp: '144.76.136.153',
  }, t(7)), done(t(7), 200, 48_213, 1_204));
  const defaultDeny = store.record(request({
    host: 'example.org', decision: 'deny', rule: '(default)', ruleSource: '00-settings.yaml:3', reason: 'no rule matched; default deny',
    clientIp: '10.0.12.7', clients: [],
  }, t(6)), done(t(6), 403));
  const xss = store.record(request({
    host: XSS.host, decision: 'deny', kind: 'http', method: 'GET', scheme: 'http', port: 80, path: XSS.path,
    reason: XSS.reason, user: XSS.user, clientIp: '10.0.12.7', clients: [],
  }, t(5)), done(t(5), 403));
  const open = store.open(request({ host: 'objects.githubusercontent.com', decision: 'allow', clientIp: '10.0.8.6' }, t(4)));
  all.push(allowed, denied, wouldDeny, defaultDeny, xss, open);
  return { allowed, denied, wouldDeny, open, xss, defaultDeny, all };
}

const silent = pino({ level: 'silent' });

/** How a UI test's admin app differs from the default one. */
export interface AdminTestOptions {
  token?: string;
  searchPace?: SearchPace;
  node?: string;
  /** Facet budgets (tests shrink them to see "at least N"). */
  facetBudget?: AdminAppOptions['facetBudget'];
}

/** A real admin app on 127.0.0.1:0 over a real SQLite store and a real policy folder. */
export async function startAdmin(opts: AdminTestOptions = {}): Promise<AdminUnderTest> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-ui-'));
  const policiesDir = path.join(dir, 'policies');
  mkdirSync(policiesDir);
  for (const [name, text] of Object.entries(POLICY_FILES)) writeFileSync(path.join(policiesDir, name), text);
  const loaded = loadPolicy(policiesDir);
  if (!loaded.ok) throw new Error(`UI test policy invalid: ${JSON.stringify(loaded.problems)}`);
  const holder = new PolicyHolder(policiesDir, loaded.policy, () => [], silent);
  const store = openAuditStore(path.join(dir, 'audit.db'));
  const ids = seedRecords(store);
  const app = buildAdminApp({
    store,
    token: opts.token ?? null,
    searchPace: opts.searchPace,
    node: opts.node,
    facetBudget: opts.facetBudget,
    ready: () => ({ ok: true, detail: { policy_loaded: true, policy_version: holder.active().policy.version } }),
    ...adminPolicyOptions(holder),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    store,
    app,
    holder,
    policiesDir,
    ids,
    close: async () => {
      await app.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The policy in force and the last reload, as `serve` hands them to the admin app. */
function adminPolicyOptions(holder: PolicyHolder): Pick<AdminAppOptions, 'policy'> {
  return { policy: () => ({ policy: holder.active().policy, lastReload: holder.lastReload }) };
}

export interface PageWatch {
  dialogs: string[];
  cspViolations: string[];
  pageErrors: string[];
}

/** Records every dialog (dismissed), CSP report and uncaught error a page produces. */
export function watchPage(page: Page): PageWatch {
  const watch: PageWatch = { dialogs: [], cspViolations: [], pageErrors: [] };
  page.on('dialog', (dialog) => {
    watch.dialogs.push(dialog.message());
    dialog.dismiss().catch(() => undefined);
  });
  page.on('console', (message: ConsoleMessage) => {
    if (/Content[- ]Security[- ]Policy/i.test(message.text())) watch.cspViolations.push(message.text());
  });
  page.on('pageerror', (error) => watch.pageErrors.push(error.message));
  return watch;
}

/** Polls `condition` (in the test process) until it holds; bounded, with a message on timeout. */
export async function waitUntil(condition: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The `data-id` of every history row, in display order. */
export async function rowIds(page: Page): Promise<number[]> {
  const ids = await page.locator('table.requests tbody tr').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-id')));
  return ids.map(Number);
}
