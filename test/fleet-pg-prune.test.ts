import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Pool } from 'pg';
import { applyPgMigrations } from '../src/fleet/pg-migrate';
import { ranked } from '../src/audit/stats';
import type { StatsWindow } from '../src/audit/stats';
import { pgStats } from '../src/fleet/pg-aggregates';
import { pruneHistory } from '../src/fleet/pg-prune';
import { completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { ShippingLog } from './helpers/pg-history';
import { describePg, freshDatabase } from './helpers/postgres';
import { CLI, ensureBuilt, REPO_ROOT } from './helpers/serve-process';

/** `tollgate audit prune` on a shared history filled by the real ship path. */

const DAY = 86_400_000;
const MINUTE = 60_000;

function prune(args: string[], env: NodeJS.ProcessEnv = {}) {
  ensureBuilt();
  const base = { ...process.env };
  delete base.TOLLGATE_AUDIT_URL;
  const run = spawnSync(process.execPath, [CLI, 'audit', 'prune', ...args], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000, env: { ...base, ...env } });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** request_minutes must equal the counts of the records present, minute by minute. */
async function minutesMismatch(pool: Pool): Promise<unknown[]> {
  const result = await pool.query(`
    WITH actual AS (
      SELECT started_at_ms / 60000 AS minute, count(*) FILTER (WHERE decision = 'allow') AS allowed,
             count(*) FILTER (WHERE decision = 'deny') AS denied, count(*) FILTER (WHERE would_deny) AS would_deny
        FROM requests GROUP BY 1)
    SELECT coalesce(a.minute, m.minute) AS minute, a.allowed AS a_allowed, m.allowed AS m_allowed, a.denied AS a_denied, m.denied AS m_denied
      FROM actual a FULL JOIN request_minutes m ON m.minute = a.minute
     WHERE a.minute IS NULL OR m.minute IS NULL OR a.allowed <> m.allowed OR a.denied <> m.denied OR a.would_deny <> m.would_deny`);
  return result.rows;
}

/** Each hourly rollup against a GROUP BY of the records present: the rows that differ, either way. */
async function rollupsMismatch(pool: Pool): Promise<unknown[]> {
  const pairs: Array<[string, string]> = [
    ['SELECT hour, host, allowed, denied, would_deny FROM request_hour_hosts',
      `SELECT started_at_ms / 3600000, host, count(*) FILTER (WHERE decision = 'allow'), count(*) FILTER (WHERE decision = 'deny'),
         count(*) FILTER (WHERE would_deny) FROM requests WHERE host IS NOT NULL GROUP BY 1, 2`],
    ['SELECT hour, client_ip, requests FROM request_hour_clients', 'SELECT started_at_ms / 3600000, client_ip, count(*) FROM requests GROUP BY 1, 2'],
    ['SELECT hour, client_group, requests FROM request_hour_groups',
      `SELECT started_at_ms / 3600000, g, count(*) FROM requests CROSS JOIN LATERAL (SELECT DISTINCT unnest(clients) AS g) AS u GROUP BY 1, 2`],
  ];
  const out: unknown[] = [];
  for (const [kept, actual] of pairs) {
    out.push(...(await pool.query(`(${kept} EXCEPT ${actual}) UNION ALL (${actual} EXCEPT ${kept})`)).rows);
  }
  return out;
}

/** /api/stats on the shared history against a raw GROUP BY of the window's records. */
async function statsAgainstRaw(pool: Pool, window: StatsWindow): Promise<{ stats: unknown; raw: unknown }> {
  const stats = await pgStats(pool, window, 1000);
  const counts = async (sql: string): Promise<Map<string, number>> =>
    new Map((await pool.query<{ k: string; n: string }>(sql, [window.sinceMs, window.untilMs])).rows.map((r) => [r.k, Number(r.n)]));
  const within = 'started_at_ms >= $1 AND started_at_ms < $2';
  const [hosts, denied, clients, groups, totals] = await Promise.all([
    counts(`SELECT host AS k, count(*) AS n FROM requests WHERE ${within} AND host IS NOT NULL GROUP BY 1`),
    counts(`SELECT host AS k, count(*) AS n FROM requests WHERE ${within} AND host IS NOT NULL AND decision = 'deny' GROUP BY 1`),
    counts(`SELECT client_ip AS k, count(*) AS n FROM requests WHERE ${within} GROUP BY 1`),
    counts(`SELECT g AS k, count(*) AS n FROM requests CROSS JOIN LATERAL (SELECT DISTINCT unnest(clients) AS g) AS u WHERE ${within} GROUP BY 1`),
    counts(`SELECT decision AS k, count(*) AS n FROM requests WHERE ${within} GROUP BY 1`),
  ]);
  const raw = {
    total: (totals.get('allow') ?? 0) + (totals.get('deny') ?? 0),
    top_hosts: ranked(hosts, 1000).map(({ key, count }) => ({ host: key, count })),
    top_denied_hosts: ranked(denied, 1000).map(({ key, count }) => ({ host: key, count })),
    top_clients: ranked(clients, 1000).map(({ key, count }) => ({ client: key, count })),
    top_client_groups: ranked(groups, 1000).map(({ key, count }) => ({ client: key, count })),
  };
  const { total, top_hosts, top_denied_hosts, top_clients, top_client_groups } = stats;
  return { stats: { total, top_hosts, top_denied_hosts, top_clients, top_client_groups }, raw };
}

async function localIds(pool: Pool): Promise<number[]> {
  const result = await pool.query<{ local_id: string }>('SELECT local_id FROM requests ORDER BY local_id');
  return result.rows.map((r) => Number(r.local_id));
}

describePg('tollgate audit prune', () => {
  let url: string;
  let pool: Pool;
  let log: ReturnType<typeof tempLogDir>;
  let replica: ShippingLog;

  beforeEach(async () => {
    url = freshDatabase('prune');
    pool = new Pool({ connectionString: url });
    await applyPgMigrations(pool);
    log = tempLogDir();
    replica = new ShippingLog(log.dir, { storeId: '2b7c6a1e-0d2f-4c55-8f0e-5a9d4f1b7c01', node: 'replica-a' });
  });
  afterEach(async () => {
    replica.close();
    await pool.end();
    log.remove();
  });

  /** A finished record that started at `at`; denied ones every third, would_deny every fifth. */
  function recordAt(at: number, n: number): number {
    const open = openFacts(n, {
      startedAt: new Date(at), host: `h${n % 7}.example.com`, decision: n % 3 === 0 ? 'deny' : 'allow', wouldDeny: n % 5 === 0,
      clientIp: `10.0.0.${n % 4}`, clients: [['ci'], ['ci', 'build'], []][n % 3],
    });
    return replica.record(open, completion(n, { endedAt: new Date(at + 10) }));
  }

  test('deletes exactly the records older than the duration, keeps the stats exact and first-seen whole', async () => {
    const now = Date.now();
    const ages = [900 * DAY, 500 * DAY, 401 * DAY, 400 * DAY + 5 * MINUTE, 399 * DAY, 30 * DAY, 60 * MINUTE, 0];
    const old = new Set<number>();
    let n = 0;
    for (const age of ages) {
      for (let i = 0; i < 3; i += 1) {
        const id = recordAt(now - age - i * 1000, (n += 1));
        if (age > 400 * DAY) old.add(id);
      }
    }
    // One still open: its age counts, not its state.
    old.add(replica.open(openFacts((n += 1), { startedAt: new Date(now - 700 * DAY) })));
    await replica.ship(pool, 4);
    const all = await localIds(pool);
    const firstSeen = await pool.query('SELECT * FROM first_seen_hosts ORDER BY host');
    const pairs = await pool.query('SELECT count(*)::int AS n FROM first_seen_client_hosts');

    const run = prune(['--audit-url', url, '--older-than', '400d', '--batch-size', '2']);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^pruned ${old.size} records started before \\d{4}-\\d\\d-\\d\\dT[0-9:.]+Z from postgres://.* in 7 batches, \\d+\\.\\d\\d s; \\d+ empty minutes removed from the stats\\n$`));
    expect(await localIds(pool)).toEqual(all.filter((id) => !old.has(id)));
    expect(await minutesMismatch(pool)).toEqual([]);
    expect(await rollupsMismatch(pool)).toEqual([]);
    expect((await pool.query('SELECT * FROM first_seen_hosts ORDER BY host')).rows).toEqual(firstSeen.rows);
    expect((await pool.query('SELECT count(*)::int AS n FROM first_seen_client_hosts')).rows).toEqual(pairs.rows);

    const again = prune(['--audit-url', url, '--older-than', '400d']);
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/^pruned 0 records .* in 0 batches/);
  });

  test('the minute the cutoff falls in is adjusted, not dropped; one instant split across batches is finished', async () => {
    const minuteStart = Math.floor((Date.now() - 10 * DAY) / MINUTE) * MINUTE;
    const cutoff = minuteStart + 30_000;
    const before = [cutoff - 20_000, cutoff - 1, cutoff - 1, cutoff - 1, cutoff - 1, cutoff - 1].map((at, i) => recordAt(at, i + 1));
    const after = [cutoff, cutoff + 1, cutoff + 20_000].map((at, i) => recordAt(at, i + 100));
    recordAt(cutoff - 3 * MINUTE, 200);
    await replica.ship(pool);
    const result = await pruneHistory(pool, { cutoffMs: cutoff, batchSize: 2 });
    expect(result).toMatchObject({ deleted: before.length + 1, batches: 4, minutesRemoved: 1 });
    expect(await localIds(pool)).toEqual(after);
    expect(await minutesMismatch(pool)).toEqual([]);
    const boundary = await pool.query<{ total: string }>('SELECT allowed + denied AS total FROM request_minutes WHERE minute = $1', [minuteStart / MINUTE]);
    expect(boundary.rows).toEqual([{ total: '3' }]);
  });

  test('after a prune whose cutoff falls mid-hour, the stats of any window equal a GROUP BY of the records left', async () => {
    const HOUR = 60 * MINUTE;
    const base = Math.floor((Date.now() - 20 * DAY) / HOUR) * HOUR;
    // Six hours, a record every 97 s (several per minute, out of start order within each batch).
    let n = 0;
    for (let at = base; at < base + 6 * HOUR; at += 97_000) recordAt(at + ((n * 7919) % 50_000), (n += 1));
    await replica.ship(pool, 64);
    const cutoff = base + 2 * HOUR + 17 * MINUTE + 31_000;
    const windows: StatsWindow[] = [
      { sinceMs: base - HOUR, untilMs: base + 7 * HOUR },
      { sinceMs: base + 2 * HOUR + 5 * MINUTE + 500, untilMs: base + 4 * HOUR + 40 * MINUTE + 12_345 },
      { sinceMs: cutoff - 1, untilMs: base + 3 * HOUR + 1 },
      { sinceMs: base + 2 * HOUR, untilMs: base + 5 * HOUR },
      { sinceMs: base + 3 * HOUR + 10 * MINUTE, untilMs: base + 3 * HOUR + 50 * MINUTE },
    ];
    for (const window of windows) {
      const { stats, raw } = await statsAgainstRaw(pool, window);
      expect(stats).toEqual(raw);
    }
    const result = await pruneHistory(pool, { cutoffMs: cutoff, batchSize: 7 });
    expect(result.deleted).toBeGreaterThan(50);
    expect(await minutesMismatch(pool)).toEqual([]);
    expect(await rollupsMismatch(pool)).toEqual([]);
    for (const window of windows) {
      const { stats, raw } = await statsAgainstRaw(pool, window);
      expect(stats).toEqual(raw);
      expect((raw as { total: number }).total).toBeGreaterThan(0);
    }
    // The hours before the cutoff's are gone from the rollups, not left at zero.
    const early = await pool.query('SELECT count(*)::int AS n FROM request_hour_hosts WHERE hour < $1', [Math.floor(cutoff / HOUR)]);
    expect(early.rows).toEqual([{ n: 0 }]);
  });

  test('a shipper keeps shipping while a long prune runs, and the stats stay exact', async () => {
    const now = Date.now();
    for (let i = 0; i < 1500; i += 1) recordAt(now - 500 * DAY + i * 1000, i);
    await replica.ship(pool);
    const second = new ShippingLog(path.join(path.dirname(log.dir), 'replica-b'), { storeId: '2b7c6a1e-0d2f-4c55-8f0e-5a9d4f1b7c02', node: 'replica-b' });
    let batchesSeen = 0;
    const shipsDuringPrune: number[] = [];
    let pruning = true;
    const pruned = pruneHistory(pool, { cutoffMs: now - 400 * DAY, batchSize: 20, onBatch: () => { batchesSeen += 1; } }).finally(() => {
      pruning = false;
    });
    const shipping = (async () => {
      for (let round = 0; pruning; round += 1) {
        for (let i = 0; i < 20; i += 1) second.record(openFacts(round * 20 + i, { startedAt: new Date(now - i * 1000) }), completion(i));
        await second.ship(pool);
        if (pruning) shipsDuringPrune.push(batchesSeen);
      }
    })();
    const [result] = await Promise.all([pruned, shipping]);
    second.close();
    expect(result.deleted).toBe(1500);
    // Ships landed between the prune's batches, not only before or after it.
    expect(shipsDuringPrune.length).toBeGreaterThan(0);
    expect(shipsDuringPrune.some((b) => b > 0 && b < result.batches)).toBe(true);
    const kept = await pool.query<{ node: string; n: string }>('SELECT node, count(*) AS n FROM requests GROUP BY node');
    expect(kept.rows.map((r) => r.node)).toEqual(['replica-b']);
    expect(await minutesMismatch(pool)).toEqual([]);
    expect(await rollupsMismatch(pool)).toEqual([]);
  });

  test.each([
    ['no URL', ['--older-than', '400d'], /--audit-url URL, --audit-url-file FILE or TOLLGATE_AUDIT_URL is required/],
    ['no --older-than', ['--audit-url', 'postgres://u@127.0.0.1:1/db'], /--older-than DURATION is required/],
    ['a bad duration', ['--audit-url', 'postgres://u@127.0.0.1:1/db', '--older-than', '400 days'], /--older-than: expected a duration such as/],
    ['zero', ['--audit-url', 'postgres://u@127.0.0.1:1/db', '--older-than', '0d'], /--older-than must be more than 0/],
    ['not a postgres URL', ['--audit-url', 'mysql://u:pw@h/db', '--older-than', '1d'], /must start with postgres:\/\//],
    ['a bad batch size', ['--audit-url', 'postgres://u@127.0.0.1:1/db', '--older-than', '1d', '--batch-size', '0'], /--batch-size: expected a whole number/],
    ['an unknown flag', ['--older', '1d'], /Unknown option '--older'/],
  ])('bad input (%s): exit 2 with a message', (_name, args, message) => {
    const run = prune(args);
    expect(run.status).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(message);
  });

  test('flag and file together are refused; the file and the environment are read', async () => {
    const file = path.join(path.dirname(log.dir), 'audit-url');
    fs.writeFileSync(file, `${url}\n`);
    expect(prune(['--audit-url', url, '--audit-url-file', file, '--older-than', '1d']).stderr).toMatch(/not both/);
    recordAt(Date.now() - 3 * DAY, 1);
    await replica.ship(pool);
    const fromFile = prune(['--audit-url-file', file, '--older-than', '2d']);
    expect(fromFile.status).toBe(0);
    expect(fromFile.stdout).toMatch(/^pruned 1 records/);
    const fromEnv = prune(['--older-than', '2d'], { TOLLGATE_AUDIT_URL: url });
    expect(fromEnv.stdout).toMatch(/^pruned 0 records/);
  });

  test('PostgreSQL unreachable: exit 1, a clear message, never the password', () => {
    const run = prune(['--older-than', '400d'], { TOLLGATE_AUDIT_URL: 'postgres://tollgate:S3cret-pw@127.0.0.1:1/history' });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/^tollgate audit prune: postgres:\/\/tollgate:\*\*\*@127\.0\.0\.1:1\/history: .*ECONNREFUSED/);
    expect(run.stderr + run.stdout).not.toContain('S3cret');
  });
});
