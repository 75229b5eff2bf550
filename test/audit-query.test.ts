import { decodeCursor, encodeCursor, exportRecords, listRequests, parseRequestFilters, QueryInputError } from '../src/audit/query';
import type { RawRequestFilters, RequestPage, SearchPace } from '../src/audit/query';
import { MergedIds } from '../src/audit/merge-ids';
import { DAY, HOUR, MINUTE, NOW, seeded, tempStore } from './helpers/admin-fixture';
import type { FixtureRecord, TempStore } from './helpers/admin-fixture';

const T = NOW.getTime();

/** Named records; ids are assigned in this order. */
const FIXTURE: Array<[string, FixtureRecord]> = [
  ['old-github', { at: T - 3 * DAY, host: 'github.com', clients: ['ci'], status: 502, error: 'connect_refused' }],
  ['github', { at: T - 50 * MINUTE, host: 'github.com', clients: ['ci'] }],
  ['api-github', { at: T - 40 * MINUTE, host: 'api.github.com', clients: ['ci'], kind: 'http', path: '/report_2025' }],
  ['deep-github', { at: T - 30 * MINUTE, host: 'a.b.github.com', clientIp: '10.0.12.5', clients: ['payments', 'prod'], status: 404 }],
  ['paste', { at: T - 20 * MINUTE, host: 'pastebin.com', clientIp: '10.1.0.20', clients: ['dev'], decision: 'deny', rule: 'deny-paste' }],
  ['ipv4', { at: T - 10 * MINUTE, host: '140.82.112.6', clientIp: '10.0.8.8', clients: ['ci'] }],
  ['would-deny', { at: T - 5 * MINUTE, host: 'evil.example', clientIp: '10.1.0.20', clients: ['dev'], wouldDeny: true }],
  ['ipv6', { at: T - 2 * MINUTE, host: '2001:db8::1', clientIp: '10.0.12.6', clients: ['payments'], decision: 'deny' }],
  ['malformed', { at: T - 1 * MINUTE, host: null, clientIp: '10.1.0.21', decision: 'deny', status: 400, reason: 'bad target' }],
  ['usercontent', { at: T - 45 * MINUTE, host: 'objects.githubusercontent.com', clients: ['ci'] }],
];

let db: TempStore;
const id: Record<string, number> = {};

beforeAll(() => {
  db = tempStore('tollgate-query-');
  const ids = db.write(FIXTURE.map(([, record]) => record));
  FIXTURE.forEach(([name], i) => { id[name] = ids[i]; });
});
afterAll(() => db.cleanup());

function matching(raw: RawRequestFilters): string[] {
  const page = listRequests(db.store.db, { filters: parseRequestFilters(raw, NOW), limit: 1000 });
  const byId = new Map(Object.entries(id).map(([name, value]) => [value, name]));
  return page.items.map((item) => byId.get(item.id) ?? String(item.id)).sort();
}

const sorted = (names: string[]): string[] => [...names].sort();

describe('host filter: the same globs as policies', () => {
  test.each<[string, string[]]>([
    ['github.com', ['old-github', 'github']],
    ['GitHub.COM.', ['old-github', 'github']],
    ['*.github.com', ['api-github']],
    ['**.github.com', ['old-github', 'github', 'api-github', 'deep-github']],
    ['?ithub.com', ['old-github', 'github']],
    ['*.com', ['old-github', 'github', 'paste']],
    ['**.githubusercontent.com,pastebin.com', ['usercontent', 'paste']],
    // A name pattern never matches an IP literal, an IP entry never matches a name.
    ['**', ['old-github', 'github', 'api-github', 'deep-github', 'paste', 'would-deny', 'usercontent']],
    ['140.82.112.0/20', ['ipv4']],
    ['140.82.112.6', ['ipv4']],
    ['2001:db8::/32', ['ipv6']],
    ['0.0.0.0/0', ['ipv4']],
    ['no-such.example', []],
  ])('host=%s', (host, expected) => {
    expect(matching({ host })).toEqual(sorted(expected));
  });

  test.each([
    ['http://github.com/', /is a URL/],
    ['github.com:443', /has a port/],
    ['a..b', /empty label/],
    ['10.0.0.1/8', /host bits/],
    ['{a,b}.com', /only letters/],
    ['bü?her.example', /cannot be compared in punycode/],
  ])('rejects host=%s', (host, message) => {
    expect(() => parseRequestFilters({ host }, NOW)).toThrow(message);
  });
});

describe('other filters', () => {
  test.each<[RawRequestFilters, string[]]>([
    [{ client: 'ci' }, ['old-github', 'github', 'api-github', 'ipv4', 'usercontent']],
    [{ client: 'prod' }, ['deep-github']],
    [{ client: 'payments' }, ['deep-github', 'ipv6']],
    [{ client: '10.0.8.7' }, ['old-github', 'github', 'api-github', 'usercontent']],
    [{ client: '10.0.8.0/22' }, ['old-github', 'github', 'api-github', 'ipv4', 'usercontent']],
    [{ client: '10.1.0.0/16' }, ['paste', 'would-deny', 'malformed']],
    [{ client: '::ffff:10.0.12.5' }, ['deep-github']],
    [{ decision: 'deny' }, ['paste', 'ipv6', 'malformed']],
    [{ would_deny: 'true' }, ['would-deny']],
    [{ would_deny: 'false', decision: 'allow' }, ['old-github', 'github', 'api-github', 'deep-github', 'ipv4', 'usercontent']],
    [{ status: '4xx' }, ['deep-github', 'paste', 'ipv6', 'malformed']],
    [{ status: '403' }, ['paste', 'ipv6']],
    [{ status: '502' }, ['old-github']],
    [{ since: '15m' }, ['ipv4', 'would-deny', 'ipv6', 'malformed']],
    [{ since: '2025-02-25', until: '2025-02-27T00:00:00+01:00' }, ['old-github']],
    [{ until: '1h' }, ['old-github']],
    [{ q: 'PASTE' }, ['paste']],
    [{ q: 'connect_refused' }, ['old-github']],
    [{ q: 'bad target' }, ['malformed']],
    [{ q: '10.0.12' }, ['deep-github', 'ipv6']],
    [{ q: 'report_2025' }, ['api-github']],
    // `_` and `%` are literal, not LIKE wildcards.
    [{ q: '_' }, ['old-github', 'api-github']],
    [{ q: '%' }, []],
    [{ host: '**.github.com', client: 'ci', decision: 'allow', since: '1h' }, ['github', 'api-github']],
    [{ client: 'dev', status: '4xx' }, ['paste']],
  ])('%j', (raw, expected) => {
    expect(matching(raw)).toEqual(sorted(expected));
  });

  test.each<[RawRequestFilters, RegExp]>([
    [{ client: 'not a name!' }, /client group name, an IP address or a CIDR/],
    [{ client: '10.0.0.0/33' }, /prefix length/],
    [{ decision: 'maybe' }, /allow or deny/],
    [{ would_deny: 'yes' }, /true or false/],
    [{ status: '6xx' }, /class such as 4xx/],
    [{ status: '20' }, /code from 100 to 599/],
    [{ since: 'yesterday' }, /ISO-8601/],
    [{ since: '2025-03-01T12:00' }, /with a zone/],
    [{ since: '2025-02-30T25:00:00Z' }, /ISO-8601/],
    [{ since: '1h', until: '2h' }, /earlier than until/],
    [{ since: '9999d' }, /3650 days/],
    [{ q: 'x'.repeat(201) }, /longer than 200/],
  ])('rejects %j', (raw, message) => {
    expect(() => parseRequestFilters(raw, NOW)).toThrow(QueryInputError);
    expect(() => parseRequestFilters(raw, NOW)).toThrow(message);
  });
});

describe('keyset pagination under filters', () => {
  let pages: TempStore;
  beforeEach(() => { pages = tempStore('tollgate-pages-'); });
  afterEach(() => pages.cleanup());

  function walk(raw: RawRequestFilters, limit: number, between: (page: number) => void): number[] {
    const filters = parseRequestFilters(raw, NOW);
    const seen: number[] = [];
    let cursor: string | null = null;
    let page = 0;
    do {
      const result: RequestPage = listRequests(pages.store.db, { filters, limit, cursor });
      seen.push(...result.items.map((item) => item.id));
      cursor = result.next_cursor;
      between(page);
      page += 1;
    } while (cursor !== null);
    return seen;
  }

  const record = (i: number): FixtureRecord => ({
    at: T - HOUR + i * 1000, host: `h${i % 10}.example`, decision: i % 3 === 0 ? 'deny' : 'allow', clients: i % 2 === 0 ? ['even'] : ['odd'],
  });

  test.each<[string, RawRequestFilters, (i: number) => boolean]>([
    ['no filter', {}, () => true],
    ['decision index', { decision: 'deny' }, (i) => i % 3 === 0],
    ['host glob merging 10 hosts', { host: '**.example' }, () => true],
    ['exact host', { host: 'h3.example' }, (i) => i % 10 === 3],
    ['client group', { client: 'even' }, (i) => i % 2 === 0],
    ['row test only', { status: '403' }, (i) => i % 3 === 0],
  ])('%s: every record exactly once, newest first, while new ones arrive', (_name, raw, wanted) => {
    const ids = pages.write(Array.from({ length: 150 }, (_, i) => record(i)));
    const expected = ids.filter((_, i) => wanted(i)).reverse();
    const added: number[] = [];
    const seen = walk(raw, 7, (page) => { added.push(...pages.write([record(page), record(page + 1)])); });
    expect(seen).toEqual(expected);
    expect(seen.filter((x) => added.includes(x))).toEqual([]);
  });
});

describe('MergedIds', () => {
  it('merges disjoint descending ranges lazily, in chunks', () => {
    const sets: Record<string, number[]> = { a: [20, 11, 7, 3], b: [19, 18, 2], c: [], d: [15, 14, 13, 12, 1] };
    const calls: string[] = [];
    const fetch = (key: string, before: number, take: number): number[] => {
      calls.push(`${key}<${before}`);
      return sets[key].filter((x) => x < before).slice(0, take);
    };
    const merged = new MergedIds(Object.keys(sets), fetch, 2, 100);
    expect(merged.take(5)).toEqual([20, 19, 18, 15, 14]);
    expect(merged.take(100)).toEqual([13, 12, 11, 7, 3, 2, 1]);
    expect(merged.take(5)).toEqual([]);
    expect(calls.filter((c) => c.startsWith('c'))).toEqual(['c<100']);
  });
});

describe('randomised against a brute-force oracle', () => {
  let big: TempStore;
  beforeAll(() => {
    big = tempStore('tollgate-oracle-');
    const rand = seeded(7);
    const hosts = ['a.x.com', 'b.x.com', 'c.d.x.com', 'x.com', 'y.org', '192.0.2.7', 'z.y.org'];
    const records: FixtureRecord[] = Array.from({ length: 1500 }, (_, i) => ({
      // Mostly in order, some inserted late (a slow dial), a few far out of order.
      at: T - 2 * DAY + i * 100_000 - (rand() < 0.05 ? Math.floor(rand() * 600_000) : 0) - (rand() < 0.005 ? DAY : 0),
      host: hosts[Math.floor(rand() * hosts.length)],
      clientIp: `10.0.0.${Math.floor(rand() * 5)}`,
      clients: rand() < 0.5 ? ['g1'] : rand() < 0.5 ? ['g1', 'g2'] : [],
      decision: rand() < 0.2 ? 'deny' : 'allow',
      wouldDeny: rand() < 0.1,
      status: [200, 403, 404, 502][Math.floor(rand() * 4)],
    }));
    big.write(records);
  });
  afterAll(() => big.cleanup());

  const cases: RawRequestFilters[] = [
    { host: '**.x.com', since: '1d' },
    { host: '*.x.com', decision: 'deny' },
    { client: 'g2', status: '4xx', until: '6h' },
    { client: '10.0.0.0/31', would_deny: 'true' },
    { since: '2025-02-28T05:17:30Z', until: '2025-02-28T09:02:10Z' },
    { host: '192.0.2.0/24', since: '30h', until: '20h' },
  ];
  test.each(cases)('%j', (raw) => {
    const filters = parseRequestFilters(raw, NOW);
    const expected = big
      .all()
      .filter((r) => {
        const hostOk = raw.host === undefined || (raw.host === '**.x.com' ? r.host?.endsWith('x.com') === true
          : raw.host === '*.x.com' ? /^[^.]+\.x\.com$/.test(r.host ?? '') : r.host === '192.0.2.7');
        const clientOk = raw.client === undefined || (raw.client === 'g2' ? r.clients.includes('g2') : ['10.0.0.0', '10.0.0.1'].includes(r.client_ip));
        const timeOk = (filters.window.sinceMs === null || r.started_at_ms >= filters.window.sinceMs)
          && (filters.window.untilMs === null || r.started_at_ms < filters.window.untilMs);
        return hostOk && clientOk && timeOk
          && (raw.decision === undefined || r.decision === raw.decision)
          && (raw.would_deny === undefined || r.would_deny)
          && (raw.status === undefined || (r.status !== null && r.status >= 400 && r.status < 500));
      })
      .map((r) => r.id);
    const walkAll = (pace: SearchPace | undefined, afterId?: number): number[] => {
      const seen: number[] = [];
      let cursor: string | null = null;
      do {
        const page: RequestPage = listRequests(big.store.db, { filters, limit: 13, cursor, pace, afterId });
        seen.push(...page.items.map((item) => item.id));
        cursor = page.next_cursor;
      } while (cursor !== null);
      return seen;
    };
    expect(expected.length).toBeGreaterThan(0);
    expect(walkAll(undefined)).toEqual(expected);
    // Slices of 7 ids and no time budget: every page stops after one slice.
    expect(walkAll({ firstSliceIds: 7, budgetMs: 0 })).toEqual(expected);
    // Bounded below by an id in the middle: exactly the matches above it.
    const middle = expected[Math.floor(expected.length / 2)];
    expect(walkAll({ firstSliceIds: 7, budgetMs: 0 }, middle)).toEqual(expected.filter((x) => x > middle));
    const exported = [...exportRecords(big.store.db, filters)].flat().map((r) => r.id);
    expect(exported).toEqual(expected);
    expect([...exportRecords(big.store.db, filters, { firstSliceIds: 7 })].flat().map((r) => r.id)).toEqual(expected);
  });
});

describe('paced search: a page answers after its budget with what it found', () => {
  let log: TempStore;
  let ids: number[];
  // 300 records; "needle" is in the path of every 50th.
  beforeAll(() => {
    log = tempStore('tollgate-paced-');
    ids = log.write(Array.from({ length: 300 }, (_, i) => ({
      at: T - HOUR + i * 1000, host: `h${i % 4}.example`, kind: 'http' as const, path: i % 50 === 7 ? `/needle/${i}` : `/hay/${i}`,
    })));
  });
  afterAll(() => log.cleanup());
  // Records a test adds go again: every test sees the same 300.
  afterEach(() => { log.store.db.prepare(`DELETE FROM requests WHERE host = 'late.example'`).run(); });

  const needles = (): number[] => ids.filter((_, i) => i % 50 === 7).reverse();
  const tiny: SearchPace = { firstSliceIds: 16, budgetMs: 0 };

  it('resumes where the search stopped: every match exactly once, newest first, while new records arrive', () => {
    const filters = parseRequestFilters({ q: 'NEEDLE' }, NOW);
    const seen: number[] = [];
    const added: number[] = [];
    let cursor: string | null = null;
    let partials = 0;
    for (let pageNo = 0; pageNo < 100; pageNo += 1) {
      const page: RequestPage = listRequests(log.store.db, { filters, limit: 3, cursor, pace: tiny });
      seen.push(...page.items.map((item) => item.id));
      if (page.partial) {
        partials += 1;
        expect(page.items.length).toBeLessThan(3);
        const reached = page.searched_to_id ?? Number.NaN;
        expect(decodeCursor(page.next_cursor ?? '')).toBe(reached);
        // Everything at or above the point reached has been examined: all its matches are out.
        expect(needles().filter((x) => x >= reached).every((x) => seen.includes(x))).toBe(true);
        expect(page.searched_to).toEqual(expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/));
      }
      added.push(...log.write([{ at: T, host: 'late.example', kind: 'http', path: '/needle/late' }]));
      cursor = page.next_cursor;
      if (cursor === null) break;
    }
    expect(cursor).toBeNull();
    expect(partials).toBeGreaterThan(3);
    expect(seen).toEqual(needles());
    expect(seen.filter((x) => added.includes(x))).toEqual([]);
  });

  it('answers a search that matches nothing in bounded steps, each with no items and a cursor', () => {
    const filters = parseRequestFilters({ q: 'no-such-text' }, NOW);
    let page: RequestPage = listRequests(log.store.db, { filters, cursor: null, pace: tiny });
    expect(page).toEqual({
      items: [], next_cursor: expect.any(String), partial: true, searched_to_id: expect.any(Number), searched_to: expect.any(String),
      newest_id: ids[ids.length - 1],
    });
    let steps = 1;
    while (page.next_cursor !== null && steps < 100) {
      page = listRequests(log.store.db, { filters, cursor: page.next_cursor, pace: tiny });
      expect(page.items).toEqual([]);
      steps += 1;
    }
    expect(page).toEqual({ items: [], next_cursor: null, partial: false, newest_id: ids[ids.length - 1] });
    // 300 ids in slices of at least 16: at most 20 steps.
    expect(steps).toBeGreaterThan(1);
    expect(steps).toBeLessThanOrEqual(20);
  });

  it('keeps searching within its budget: a generous budget fills the page from many slices', () => {
    const filters = parseRequestFilters({ q: 'needle' }, NOW);
    const page = listRequests(log.store.db, { filters, limit: 5, pace: { firstSliceIds: 16, budgetMs: 60_000 } });
    expect(page.partial).toBe(false);
    expect(page.items.map((r) => r.id)).toEqual(needles().slice(0, 5));
    expect(page.next_cursor).toBe(encodeCursor(needles()[4]));
  });

  it('stops at after_id: a live view catching up reads only what is newer than its newest row', () => {
    const filters = parseRequestFilters({ q: 'needle' }, NOW);
    const all = needles();
    const seen: number[] = [];
    let cursor: string | null = null;
    let steps = 0;
    do {
      const page: RequestPage = listRequests(log.store.db, { filters, limit: 2, cursor, afterId: all[3], pace: tiny });
      seen.push(...page.items.map((r) => r.id));
      cursor = page.next_cursor;
      steps += 1;
    } while (cursor !== null && steps < 100);
    expect(seen).toEqual(all.slice(0, 3));
    // Slices of at least 16 ids from the top down to all[3] only, not the whole log.
    expect(steps).toBeLessThanOrEqual(Math.ceil((ids[ids.length - 1] - all[3]) / 16) + 1);
  });

  it('exports the same set slice by slice, with empty batches where a slice found nothing', () => {
    const filters = parseRequestFilters({ q: 'needle' }, NOW);
    const batches = [...exportRecords(log.store.db, filters, { firstSliceIds: 16 })];
    expect(batches.flat().map((r) => r.id)).toEqual(needles());
    expect(batches.some((b) => b.length === 0)).toBe(true);
  });
});

describe('export batches', () => {
  it('leaves the connection free between batches, so the proxy can write meanwhile', () => {
    const s = tempStore('tollgate-export-');
    try {
      const ids = s.write(Array.from({ length: 1200 }, (_, i) => ({ at: T - HOUR + i, host: `h${i % 3}.example` })));
      const batches = exportRecords(s.store.db, parseRequestFilters({ host: '**.example' }, NOW));
      const first = batches.next();
      if (first.done === true) throw new Error('no first batch');
      // An open better-sqlite3 iterator would make this write throw "connection is busy".
      const late = s.write([{ at: T, host: 'h0.example' }]);
      const rest = [...batches].flat().map((r) => r.id);
      const all = [...first.value.map((r) => r.id), ...rest];
      expect(all).toEqual([...ids].reverse());
      expect(all).not.toContain(late[0]);
    } finally {
      s.cleanup();
    }
  });
});
