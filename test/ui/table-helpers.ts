import type { Page } from 'playwright-core';
import type { AuditStore } from '../../src/audit/store';
import { waitUntil } from './ui-harness';

/** A finished request recorded at `at` (default now), as the proxy would write it. */
export function recordAt(store: AuditStore, host: string, decision: 'allow' | 'deny', at = new Date(), clientIp = '10.0.8.9'): number {
  return store.record({
    startedAt: at, clientIp, clientPort: 50000, clients: [], user: null, kind: 'connect', method: null,
    scheme: null, host, port: 443, path: null, resolvedIp: null, decision, wouldDeny: false,
    rule: decision === 'allow' ? 'github' : '(default)',
    ruleSource: decision === 'allow' ? '20-allow.yaml:7' : '00-settings.yaml:3',
    reason: decision === 'allow' ? 'matched rule "github" (allow)' : 'no rule matched; default deny',
    policyVersion: 'sha256:3f2a9c1e0b7d',
  }, { endedAt: at, status: decision === 'allow' ? 200 : 403, bytesUp: 10, bytesDown: 20, error: null });
}

/** How many history rows are in the page (not how many are loaded). */
export function domRowCount(page: Page): Promise<number> {
  return page.locator('table.requests tbody tr').count();
}

/** The "N loaded" number the summary line states. */
export async function loadedCount(page: Page): Promise<number> {
  const text = (await page.locator('#table-summary').textContent()) ?? '';
  const match = /^([\d,]+) rows? loaded/.exec(text);
  return match === null ? -1 : Number(match[1].replace(/,/g, ''));
}

export async function waitForLoaded(page: Page, count: number, timeoutMs = 20_000): Promise<void> {
  await waitUntil(async () => (await loadedCount(page)) === count, `${count} rows loaded`, timeoutMs);
}

/**
 * Scrolls the table's own scroller and lets the page handle the scroll event (the table renders
 * the rows for a scroll in the next animation frame: virtual-rows.js).
 */
export async function scrollTable(page: Page, top: number | 'end'): Promise<number> {
  return page.evaluate<number>(`(async () => {
    const scroller = document.querySelector('.table-wrap');
    const before = scroller.scrollTop;
    const scrolled = new Promise((resolve) => scroller.addEventListener('scroll', resolve, { once: true }));
    scroller.scrollTop = ${top === 'end' ? 'scroller.scrollHeight' : String(top)};
    if (scroller.scrollTop !== before) await scrolled;
    await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    return scroller.scrollTop;
  })()`);
}

/** The id of the row just under the (sticky) header: the first row in view. */
export function idAtViewTop(page: Page): Promise<number> {
  return page.evaluate<number>(`(() => {
    // The histogram and facets above and beside the table can push it below the fold: bring it in.
    const wrap = document.querySelector('.table-wrap');
    if (wrap.getBoundingClientRect().top > window.innerHeight / 2 || wrap.getBoundingClientRect().top < 0) wrap.scrollIntoView({ block: 'start' });
    const head = document.querySelector('table.requests thead th').getBoundingClientRect();
    const hit = document.elementFromPoint(head.left + 20, head.bottom + 8);
    const row = hit ? hit.closest('tr[data-id]') : null;
    if (!row) throw new Error('no row under the header');
    return Number(row.getAttribute('data-id'));
  })()`);
}

/** The height of the first history row. */
export function firstRowHeight(page: Page): Promise<number> {
  return page.evaluate<number>("document.querySelector('table.requests tbody tr').getBoundingClientRect().height");
}
