import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../../src/admin/app';
import { openAuditStore } from '../../src/audit/store';
import type { AuditStore } from '../../src/audit/store';
import { launchBrowser, screenshot, watchPage, XSS } from './ui-harness';

jest.setTimeout(60_000);

/**
 * The health banner says when shipping to PostgreSQL is behind (oldest unshipped entry past
 * 60 s), from /readyz's `ship` detail, and shows the error text as text, never as markup.
 */
describe('ship banner', () => {
  let browser: Browser;
  let app: FastifyInstance;
  let store: AuditStore;
  let dir: string;
  let port: number;
  let ship: Record<string, unknown> = { backlog_records: 0, oldest_seconds: 0, last_error: null };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-ui-ship-'));
    store = openAuditStore(path.join(dir, 'audit.db'));
    app = buildAdminApp({ store, token: null, ready: () => ({ ok: true, detail: { ship } }) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as AddressInfo).port;
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await app?.close();
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is hidden while shipping keeps up, says how far behind it is otherwise, and escapes the error', async () => {
    const page = await browser.newPage();
    const watch = watchPage(page);
    ship = { backlog_records: 12, oldest_seconds: 30, last_error: null };
    await page.goto(`http://127.0.0.1:${port}/`);
    const banner = page.locator('#health-banner');
    await banner.waitFor({ state: 'hidden', timeout: 10_000 });
    ship = { backlog_records: 123456, oldest_seconds: 600, last_error: `connect ECONNREFUSED ${XSS.host} ${XSS.path}` };
    await page.reload();
    await banner.waitFor({ state: 'visible', timeout: 10_000 });
    const text = await banner.textContent();
    expect(text).toContain('Shipping to PostgreSQL is behind: 123,456 audit entries not yet shipped, the oldest 10 min old.');
    expect(text).toContain(XSS.host);
    expect(await banner.locator('img, script').count()).toBe(0);
    await screenshot(page, 'health-banner-ship-behind');
    expect(watch.dialogs).toEqual([]);
    expect(watch.pageErrors).toEqual([]);
    expect(watch.cspViolations).toEqual([]);
    await page.close();
  });
});
