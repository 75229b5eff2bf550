import { UiSuite, WAIT } from './ui-suite';

jest.setTimeout(60_000);

/**
 * An admin app whose searches answer after every slice of 8 ids (no time budget): what a rare
 * match over a million records looks like, shrunk to the seeded log of about 130 records.
 */
const ui = new UiSuite({ searchPace: { firstSliceIds: 8, budgetMs: 0 } });

interface Answer {
  items: unknown[];
  partial: boolean;
}

/** Every /api/requests answer the page receives, in order. */
function watchAnswers(): Answer[] {
  const answers: Answer[] = [];
  ui.page.on('response', (res) => {
    if (!new URL(res.url()).pathname.startsWith('/api/requests')) return;
    res.json().then((body: Answer) => answers.push(body), () => undefined);
  });
  return answers;
}

/** A denied request recorded now, as the proxy would write it. */
function recordDenied(host: string): number {
  const now = new Date();
  return ui.admin.store.record({
    startedAt: now, clientIp: '10.0.9.14', clientPort: 50001, clients: [], user: null, kind: 'connect', method: null,
    scheme: null, host, port: 443, path: null, resolvedIp: null, decision: 'deny', wouldDeny: false,
    rule: '(default)', ruleSource: '00-settings.yaml:3', reason: 'no rule matched; default deny',
    policyVersion: 'sha256:3f2a9c1e0b7d',
  }, { endedAt: now, status: 403, bytesUp: 0, bytesDown: 0, error: null });
}

describe('a search whose answers come back partial', () => {
  it('keeps searching on its own and shows every match, newest first', async () => {
    const answers = watchAnswers();
    const expected = (await ui.apiRecords('q=pastebin')).map((r) => r.id);
    expect(expected.length).toBeGreaterThan(5);
    await ui.open('/?q=pastebin');
    await ui.page.getByText('End of the matching requests.').waitFor(WAIT);
    expect(await ui.rowIds()).toEqual(expected);
    expect(answers.filter((a) => a.partial).length).toBeGreaterThan(2);
    expect(await ui.page.locator('.search-progress').isHidden()).toBe(true);
  });

  it('says "no requests match" only once the whole log has been searched', async () => {
    const answers = watchAnswers();
    await ui.open('/?q=no-such-text');
    await ui.page.getByText('No requests match these filters.').waitFor(WAIT);
    expect(await ui.rowIds()).toEqual([]);
    expect(answers.filter((a) => a.partial && a.items.length === 0).length).toBeGreaterThan(2);
    expect(await ui.page.getByRole('button', { name: /Load more|Search older/ }).isHidden()).toBe(true);
  });

  it('catches up live with one request for the records newer than the last answer, however far down the last match is', async () => {
    // Non-matching records on top: the newest match shown is several slices below the top.
    let newestInLog = 0;
    for (let i = 0; i < 40; i += 1) newestInLog = recordDenied('filler.example');
    // The page's timers run on a fake clock: one check happens exactly when the test says.
    await ui.page.clock.install();
    await ui.open('/?q=pastebin');
    await ui.page.getByText('End of the matching requests.').waitFor(WAIT);
    const before = await ui.rowIds();
    const urls: URL[] = [];
    ui.page.on('request', (req) => { if (req.url().includes('/api/requests')) urls.push(new URL(req.url())); });
    const id = recordDenied('pastebin.com');
    await ui.page.clock.runFor(2_000);
    await ui.page.locator(`tr[data-id="${id}"]`).waitFor(WAIT);
    expect(await ui.rowIds()).toEqual([id, ...before]);
    expect(await ui.page.locator('p[aria-live="polite"]').textContent()).toBe('1 new request');
    expect(urls.map((url) => url.searchParams.get('after_id'))).toEqual([String(newestInLog)]);
    // The next check starts above the record it just added.
    const second = ui.page.waitForRequest((req) => req.url().includes('/api/requests'), WAIT);
    await ui.page.clock.runFor(2_000);
    expect(new URL((await second).url()).searchParams.get('after_id')).toBe(String(id));
  });

  it('re-reads an open tunnel shown until it ends', async () => {
    const started = new Date();
    const open = ui.admin.store.open({
      startedAt: started, clientIp: '10.0.9.15', clientPort: 50002, clients: [], user: null, kind: 'connect', method: 'CONNECT',
      scheme: null, host: 'long-tunnel.example', port: 443, path: null, resolvedIp: null, decision: 'allow', wouldDeny: false,
      rule: 'github', ruleSource: '20-allow.yaml:7', reason: 'matched rule "github" (allow)', policyVersion: 'sha256:3f2a9c1e0b7d',
    });
    await ui.page.clock.install();
    await ui.open('/?host=long-tunnel.example');
    const duration = ui.page.locator(`tr[data-id="${open}"] .col-duration`);
    await duration.waitFor(WAIT);
    expect(await duration.textContent()).toBe('open');
    ui.admin.store.complete(open, { endedAt: new Date(started.getTime() + 4321), status: 200, bytesUp: 10, bytesDown: 20, error: null });
    await ui.page.clock.runFor(2_000);
    await ui.page.locator(`tr[data-id="${open}"]:not(.row-open)`).waitFor(WAIT);
    expect(await duration.textContent()).not.toBe('open');
  });
});
