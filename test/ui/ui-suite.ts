import type { Browser, BrowserContext, BrowserContextOptions, Page } from 'playwright-core';
import type { AuditRecordJson } from '../../src/audit/record-types';
import { launchBrowser, rowIds, startAdmin, waitUntil, watchPage } from './ui-harness';
import type { AdminTestOptions, AdminUnderTest, PageWatch } from './ui-harness';

export const WAIT = { timeout: 10_000 } as const;

interface ApiPage {
  items: AuditRecordJson[];
  next_cursor: string | null;
}

/**
 * One browser and one admin app per test file; a fresh browser context (cookies, storage) per
 * test. After every test: no dialog opened, no CSP violation reported, no uncaught error, with
 * the hostile records on screen the whole time.
 */
export class UiSuite {
  private adminApp: AdminUnderTest | null = null;
  private browserInstance: Browser | null = null;
  private contextInstance: BrowserContext | null = null;
  private pageInstance: Page | null = null;
  private pageWatch: PageWatch | null = null;

  constructor(
    private readonly adminOptions: AdminTestOptions = {},
    private readonly contextOptions: BrowserContextOptions = {},
  ) {
    beforeAll(async () => {
      this.adminApp = await startAdmin(this.adminOptions);
      this.browserInstance = await launchBrowser();
    });
    afterAll(async () => {
      await this.browserInstance?.close();
      await this.adminApp?.close();
    });
    beforeEach(async () => {
      this.contextInstance = await this.browser.newContext({ viewport: { width: 1440, height: 900 }, ...this.contextOptions });
      this.pageInstance = await this.contextInstance.newPage();
      this.pageInstance.setDefaultTimeout(WAIT.timeout);
      this.pageWatch = watchPage(this.pageInstance);
    });
    afterEach(async () => {
      await this.contextInstance?.close();
      expect(this.watch.dialogs).toEqual([]);
      expect(this.watch.cspViolations).toEqual([]);
      expect(this.watch.pageErrors).toEqual([]);
    });
  }

  get admin(): AdminUnderTest {
    if (this.adminApp === null) throw new Error('admin not started');
    return this.adminApp;
  }

  get browser(): Browser {
    if (this.browserInstance === null) throw new Error('browser not launched');
    return this.browserInstance;
  }

  get context(): BrowserContext {
    if (this.contextInstance === null) throw new Error('no browser context');
    return this.contextInstance;
  }

  get page(): Page {
    if (this.pageInstance === null) throw new Error('no page');
    return this.pageInstance;
  }

  get watch(): PageWatch {
    if (this.pageWatch === null) throw new Error('no page');
    return this.pageWatch;
  }

  /** Loads `pathAndQuery` of the admin app; expects a 200. */
  async open(pathAndQuery: string): Promise<void> {
    const response = await this.page.goto(`${this.admin.baseUrl}${pathAndQuery}`, WAIT);
    expect(response?.status()).toBe(200);
  }

  search(): URLSearchParams {
    return new URL(this.page.url()).searchParams;
  }

  rowIds(): Promise<number[]> {
    return rowIds(this.page);
  }

  async waitForRowCount(count: number): Promise<void> {
    const rows = this.page.locator('table.requests tbody tr');
    await waitUntil(async () => (await rows.count()) === count, `${count} history rows`);
  }

  /** Every record matching `query`, straight from the API: the truth the UI must show. */
  async apiRecords(query: string): Promise<AuditRecordJson[]> {
    const items: AuditRecordJson[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 200; pages += 1) {
      const params = new URLSearchParams(query);
      params.set('limit', '1000');
      if (cursor !== null) params.set('cursor', cursor);
      const res = await fetch(`${this.admin.baseUrl}/api/requests?${params.toString()}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as ApiPage;
      items.push(...page.items);
      cursor = page.next_cursor;
      if (cursor === null) return items;
    }
    throw new Error(`more than 20 pages for ${query}`);
  }

  async api<T>(pathAndQuery: string): Promise<T> {
    const res = await fetch(`${this.admin.baseUrl}${pathAndQuery}`);
    expect(res.status).toBe(200);
    return (await res.json()) as T;
  }
}
