import type { Browser } from 'playwright-core';
import type { VolumeSpace } from '../../src/audit/disk-watermark';
import { startServed } from '../helpers/served-proxy';
import type { ServedProxy } from '../helpers/served-proxy';
import { launchBrowser, screenshot, watchPage } from './ui-harness';

jest.setTimeout(60_000);

/**
 * The admin UI says when the proxy is refusing requests for want of disk (--min-free-disk),
 * on a real served proxy whose volume reports low free space through an injected statfs.
 */

const GiB = 1024 ** 3;

describe('audit health banner', () => {
  let browser: Browser;
  let served: ServedProxy;
  let free = 50 * GiB;

  beforeAll(async () => {
    const statfs = (): VolumeSpace => ({ bsize: 4096, bavail: Math.floor(free / 4096), blocks: (100 * GiB) / 4096 });
    served = await startServed({ config: { minFreeDisk: { bytes: GiB, percent: null } }, deps: { statfs, diskCheckIntervalMs: 20 } });
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await served?.close();
  });

  it('shows a banner while the disk is low, and hides it once space is back', async () => {
    const page = await browser.newPage();
    const watch = watchPage(page);
    await page.goto(`http://127.0.0.1:${served.running.adminAddress.port}/`);
    const banner = page.locator('#health-banner');
    await banner.waitFor({ state: 'hidden', timeout: 10_000 });
    free = 100 * 1024 ** 2;
    await served.waitForLog((line) => line.msg.startsWith('low on disk'));
    await page.reload();
    await banner.waitFor({ state: 'visible', timeout: 10_000 });
    expect(await banner.textContent()).toMatch(/Low on disk: 100 MiB free .*below --min-free-disk \(1,024 MiB\)\. New requests are refused \(503\)/);
    await screenshot(page, 'health-banner-low-disk');
    free = 5 * GiB;
    // The banner polls /readyz every 5 s.
    await banner.waitFor({ state: 'hidden', timeout: 15_000 });
    expect(watch.pageErrors).toEqual([]);
    expect(watch.cspViolations).toEqual([]);
    await page.close();
  });
});
