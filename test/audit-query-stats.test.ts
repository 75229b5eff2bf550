import { listFirstSeen } from '../src/audit/first-seen';
import { ruleHits } from '../src/audit/rule-hits';
import { bucketSecondsFor, computeStats, computeStatsPaced } from '../src/audit/stats';
import type { Stats, StatsWindow } from '../src/audit/stats';
import { DAY, HOUR, MINUTE, NOW, seeded, tempStore } from './helpers/admin-fixture';
import type { FixtureRecord, StoredRow, TempStore } from './helpers/admin-fixture';

const T = NOW.getTime();
const window = (sinceMs: number, untilMs: number): StatsWindow => ({ sinceMs, untilMs });

describe('bucket size', () => {
  test.each<[number, number]>([
    [HOUR, 60],
    [2 * HOUR, 60],
    [6 * HOUR, 300],
    [DAY, 900],
    [7 * DAY, 3600],
    [30 * DAY, 21_600],
    [365 * DAY, 86_400],
  ])('a window of %i ms gets %i s buckets', (span, seconds) => {
    expect(bucketSecondsFor(window(T - span, T))).toBe(seconds);
  });
});

describe('stats on a hand-built log', () => {
  let s: TempStore;
  // Window [T - 2h + 30 s, T - 30 s): both ends fall inside a minute.
  const since = T - 2 * HOUR + 30_000;
  const until = T - 30_000;
  beforeAll(() => {
    s = tempStore('tollgate-stats-');
    const rec = (at: number, host: string | null, extra: Partial<FixtureRecord> = {}): FixtureRecord => ({ at, host, ...extra });
    s.write([
      rec(since - 10_000, 'before.example'), // same minute as since, but before it: out
      rec(since, 'a.example', { clients: ['ci'] }), // exactly at since: in
      rec(since + 5 * MINUTE, 'a.example', { clients: ['ci'], decision: 'deny', clientIp: '10.0.0.2' }),
      rec(since + 6 * MINUTE, 'b.example', { wouldDeny: true, clients: ['dev', 'ci'] }),
      rec(since + 61 * MINUTE, 'a.example'),
      rec(until - 1, 'c.example', { decision: 'deny', clientIp: '10.0.0.2' }), // last ms: in
      rec(until, 'after.example'), // exactly at until: out
      rec(since + 10 * MINUTE, 'late.example', { clients: ['dev'] }), // inserted late: ids out of time order
      rec(since - 3 * HOUR, 'ancient.example'), // very late insert, far before the window: out
      rec(since + 20 * MINUTE, null, { decision: 'deny' }), // malformed, no host
    ]);
  });
  afterAll(() => s.cleanup());

  it('counts exactly the records in [since, until)', () => {
    const stats = computeStats(s.store.db, window(since, until), 10);
    expect(stats).toMatchObject({
      since: new Date(since).toISOString(),
      until: new Date(until).toISOString(),
      total: 7,
      allowed: 4,
      denied: 3,
      would_deny: 1,
      bucket_seconds: 60,
      top_hosts: [{ host: 'a.example', count: 3 }, { host: 'b.example', count: 1 }, { host: 'c.example', count: 1 }, { host: 'late.example', count: 1 }],
      top_denied_hosts: [{ host: 'a.example', count: 1 }, { host: 'c.example', count: 1 }],
      top_clients: [{ client: '10.0.8.7', count: 5 }, { client: '10.0.0.2', count: 2 }],
      top_client_groups: [{ client: 'ci', count: 3 }, { client: 'dev', count: 2 }],
    });
  });

  it('returns one point per bucket, zeros included, aligned to the bucket size', () => {
    const stats = computeStats(s.store.db, window(since, until), 10);
    expect(stats.series).toHaveLength(120);
    expect(stats.series[0]).toEqual({ t: new Date(since - 30_000).toISOString(), allowed: 1, denied: 0, would_deny: 0 });
    expect(stats.series[5]).toEqual({ t: new Date(since - 30_000 + 5 * MINUTE).toISOString(), allowed: 0, denied: 1, would_deny: 0 });
    expect(stats.series[6]).toMatchObject({ allowed: 1, would_deny: 1 });
    expect(stats.series[119]).toEqual({ t: new Date(until - 30_000).toISOString(), allowed: 0, denied: 1, would_deny: 0 });
    const sum = stats.series.reduce((n, p) => n + p.allowed + p.denied, 0);
    expect(sum).toBe(stats.total);
  });

  it('limits the top lists', () => {
    const stats = computeStats(s.store.db, window(since, until), 1);
    expect(stats.top_hosts).toEqual([{ host: 'a.example', count: 3 }]);
    expect(stats.top_clients).toHaveLength(1);
  });

  it('handles a window of years (hundreds of thousands of minutes)', () => {
    const years = tempStore('tollgate-stats-years-');
    try {
      const minutes = 300_000;
      years.store.db.transaction(() => {
        const insert = years.store.db.prepare('INSERT INTO request_minutes (minute, first_id, last_id) VALUES (?, ?, ?)');
        for (let i = 0; i < minutes; i += 1) insert.run(Math.floor(T / MINUTE) - minutes + i, i + 1, i + 1);
      })();
      const stats = computeStats(years.store.db, window(T - 3650 * DAY, T), 10);
      expect(stats).toMatchObject({ total: 0, bucket_seconds: 86_400 });
      // Noon to noon: a partial day at each end.
      expect(stats.series).toHaveLength(3651);
    } finally {
      years.cleanup();
    }
  });

  it('is all zeros for a window without records', () => {
    const stats = computeStats(s.store.db, window(T + DAY, T + 2 * DAY), 10);
    expect(stats).toMatchObject({ total: 0, allowed: 0, denied: 0, would_deny: 0, top_hosts: [], top_clients: [] });
    expect(stats.series.every((p) => p.allowed === 0 && p.denied === 0)).toBe(true);
  });
});

/** The stats of the rows, computed the obvious way. */
function oracle(rows: StoredRow[], w: StatsWindow, top: number): Omit<Stats, 'series' | 'bucket_seconds' | 'since' | 'until'> {
  const inside = rows.filter((r) => r.started_at_ms >= w.sinceMs && r.started_at_ms < w.untilMs);
  const rank = (keys: Array<string | null>): Array<[string, number]> => {
    const counts = new Map<string, number>();
    for (const key of keys) if (key !== null) counts.set(key, (counts.get(key) ?? 0) + 1);
    return [...counts].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1)).slice(0, top);
  };
  return {
    total: inside.length,
    allowed: inside.filter((r) => r.decision === 'allow').length,
    denied: inside.filter((r) => r.decision === 'deny').length,
    would_deny: inside.filter((r) => r.would_deny).length,
    top_hosts: rank(inside.map((r) => r.host)).map(([host, count]) => ({ host, count })),
    top_denied_hosts: rank(inside.filter((r) => r.decision === 'deny').map((r) => r.host)).map(([host, count]) => ({ host, count })),
    top_clients: rank(inside.map((r) => r.client_ip)).map(([client, count]) => ({ client, count })),
    top_client_groups: rank(inside.flatMap((r) => r.clients)).map(([client, count]) => ({ client, count })),
  };
}

describe('stats counted a step at a time', () => {
  let s: TempStore;
  beforeAll(() => {
    s = tempStore('tollgate-stats-paced-');
    s.write(Array.from({ length: 400 }, (_, i) => ({ at: T - HOUR + i * 1000, host: `h${i % 7}.example`, decision: i % 5 === 0 ? 'deny' : 'allow' })));
  });
  afterAll(() => s.cleanup());

  it('lets other work run between steps, and ignores records written meanwhile', async () => {
    const w = window(T - 2 * HOUR, T + HOUR);
    const expected = computeStats(s.store.db, w, 10);
    let turns = 0;
    let running = true;
    // Other work on the event loop, one turn at a time; the first turn writes a new record.
    const tick = (): void => {
      turns += 1;
      if (turns === 1) s.write([{ at: T - 30 * MINUTE, host: 'meanwhile.example' }]);
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    try {
      const paced = await computeStatsPaced(() => s.store.db, w, 10, 16);
      expect(paced).toEqual(expected);
    } finally {
      running = false;
    }
    expect(turns).toBeGreaterThan(2);
    expect(computeStats(s.store.db, w, 10).total).toBe(expected.total + 1);
  });
});

describe('stats against a brute-force oracle', () => {
  let s: TempStore;
  beforeAll(() => {
    s = tempStore('tollgate-stats-oracle-');
    const rand = seeded(11);
    s.write(Array.from({ length: 3000 }, (_, i) => ({
      at: T - 3 * DAY + i * 80_000 - (rand() < 0.05 ? Math.floor(rand() * 900_000) : 0) - (rand() < 0.01 ? Math.floor(rand() * DAY) : 0),
      host: rand() < 0.02 ? null : `h${Math.floor(Math.pow(rand(), 2) * 30)}.example`,
      clientIp: `10.0.0.${Math.floor(rand() * 6)}`,
      clients: rand() < 0.6 ? ['g1'] : rand() < 0.5 ? ['g2', 'g3'] : [],
      decision: rand() < 0.15 ? 'deny' : 'allow',
      wouldDeny: rand() < 0.05,
    })));
  });
  afterAll(() => s.cleanup());

  test.each<[string, number, number]>([
    ['one day to now', T - DAY, T],
    ['unaligned edges', T - 2 * DAY + 12_345, T - DAY - 54_321],
    ['a single partial minute', T - DAY + 10_000, T - DAY + 50_000],
    ['everything', T - 10 * DAY, T + DAY],
    ['two hours, aligned', T - 30 * HOUR, T - 28 * HOUR],
  ])('%s', (_name, sinceMs, untilMs) => {
    const stats = computeStats(s.store.db, window(sinceMs, untilMs), 5);
    const { series, bucket_seconds: _b, since: _s, until: _u, ...rest } = stats;
    expect(rest).toEqual(oracle(s.all(), window(sinceMs, untilMs), 5));
    // Counted in steps of 97 ids (late inserts straddle the steps): the same answer.
    expect(computeStats(s.store.db, window(sinceMs, untilMs), 5, 97)).toEqual(stats);
    const inside = s.all().filter((r) => r.started_at_ms >= sinceMs && r.started_at_ms < untilMs);
    for (const point of series) {
      const start = Date.parse(point.t);
      const inBucket = inside.filter((r) => r.started_at_ms >= start && r.started_at_ms < start + stats.bucket_seconds * 1000);
      expect([point.allowed, point.denied]).toEqual([
        inBucket.filter((r) => r.decision === 'allow').length, inBucket.filter((r) => r.decision === 'deny').length,
      ]);
    }
  });
});

describe('first seen', () => {
  let s: TempStore;
  beforeAll(() => {
    s = tempStore('tollgate-first-');
    s.write([
      { at: T - 3 * DAY, host: 'known.example', clientIp: '10.0.0.1', clients: ['ci'] },
      { at: T - 2 * HOUR, host: 'known.example', clientIp: '10.0.0.2', clients: ['dev'] },
      { at: T - 3 * HOUR, host: 'new.example', clientIp: '10.0.0.1', clients: ['ci'] },
      { at: T - 1 * HOUR, host: 'new.example', clientIp: '10.0.0.3', clients: ['dev'], decision: 'deny' },
      { at: T - 30 * MINUTE, host: 'newer.example', clientIp: '10.0.0.1', wouldDeny: true },
      // Inserted after a record of today, but started yesterday: not new today.
      { at: T - 1 * HOUR, host: 'backdated.example', clientIp: '10.0.0.1' },
      { at: T - 30 * HOUR, host: 'backdated.example', clientIp: '10.0.0.1' },
    ]);
  });
  afterAll(() => s.cleanup());

  it('lists destinations never seen before the window, newest first', () => {
    const page = listFirstSeen(s.store.db, window(T - DAY, T), 'host', 100);
    expect(page).toEqual({
      since: new Date(T - DAY).toISOString(),
      until: NOW.toISOString(),
      by: 'host',
      truncated: false,
      items: [
        { host: 'newer.example', first_seen: new Date(T - 30 * MINUTE).toISOString(), first_id: 5, count: 1, denied: 0, would_deny: 1, clients: [], client_ips: ['10.0.0.1'] },
        { host: 'new.example', first_seen: new Date(T - 3 * HOUR).toISOString(), first_id: 3, count: 2, denied: 1, would_deny: 0, clients: ['ci', 'dev'], client_ips: ['10.0.0.1', '10.0.0.3'] },
      ],
    });
  });

  it('by client_host lists new (client, destination) pairs', () => {
    const page = listFirstSeen(s.store.db, window(T - DAY, T), 'client_host', 100);
    expect(page.items.map((i) => `${i.client_ip ?? ''} ${i.host} ${i.count}`)).toEqual([
      '10.0.0.1 newer.example 1',
      '10.0.0.3 new.example 1',
      '10.0.0.2 known.example 1',
      '10.0.0.1 new.example 1',
    ]);
  });

  it('says when the list is cut', () => {
    const page = listFirstSeen(s.store.db, window(T - DAY, T), 'host', 1);
    expect(page.items.map((i) => i.host)).toEqual(['newer.example']);
    expect(page.truncated).toBe(true);
  });
});

describe('rule hits', () => {
  it('counts per rule name since a time, with the last hit', () => {
    const s = tempStore('tollgate-hits-');
    try {
      s.write([
        { at: T - 8 * DAY, rule: 'a' },
        { at: T - 2 * DAY, rule: 'a' },
        { at: T - HOUR, rule: 'a' },
        { at: T - 3 * HOUR, rule: 'b' },
        { at: T - 10 * DAY, rule: 'c' },
      ]);
      const hits = ruleHits(s.store.db, ['a', 'b', 'c', 'never'], T - 7 * DAY);
      expect(Object.fromEntries(hits)).toEqual({
        a: { hits: 2, last_hit: new Date(T - HOUR).toISOString() },
        b: { hits: 1, last_hit: new Date(T - 3 * HOUR).toISOString() },
        c: { hits: 0, last_hit: null },
        never: { hits: 0, last_hit: null },
      });
    } finally {
      s.cleanup();
    }
  });
});
