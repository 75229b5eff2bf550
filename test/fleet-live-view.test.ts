import { Pool } from 'pg';
import { applyPgMigrations } from '../src/fleet/pg-migrate';
import { PgAuditReader } from '../src/fleet/pg-reader';
import { completion, openFacts, tempLogDir } from './helpers/audit-log-fixtures';
import { ShippingLog } from './helpers/pg-history';
import { describePg, freshDatabase } from './helpers/postgres';

/**
 * The console's live view asks for `after_id=<newest_id of its last answer>`. Ids are handed out
 * when a ship transaction inserts, so two replicas shipping at once must commit their ids in id
 * order, or a record committed late with a lower id is never shown live. Three shippers ship many
 * small batches at once while a live view polls; it must see every record exactly once.
 */
describePg('a live view on the shared history while replicas ship at once', () => {
  test('sees every record exactly once', async () => {
    const pool = new Pool({ connectionString: freshDatabase('live'), max: 8 });
    const dirs = [tempLogDir(), tempLogDir(), tempLogDir()];
    const logs = dirs.map((d, i) => new ShippingLog(d.dir, { storeId: `0000000${i + 1}-0000-4000-8000-000000000000`, node: `replica-${i}` }));
    try {
      await applyPgMigrations(pool);
      const reader = new PgAuditReader(pool);
      const seen = new Map<number, number>();
      let after = 0;
      let shipping = true;
      const poll = async (): Promise<void> => {
        const page = await reader.listRequests({ limit: 1000, afterId: after });
        for (const item of page.items) seen.set(item.id, (seen.get(item.id) ?? 0) + 1);
        // A page may be full: the live view pages down (cursor) before moving its mark up.
        let cursor = page.next_cursor;
        while (cursor !== null) {
          const more = await reader.listRequests({ limit: 1000, afterId: after, cursor });
          for (const item of more.items) seen.set(item.id, (seen.get(item.id) ?? 0) + 1);
          cursor = more.next_cursor;
        }
        if (page.newest_id !== null) after = page.newest_id;
      };
      const viewer = (async () => {
        while (shipping) await poll();
        await poll();
      })();
      await Promise.all(logs.map(async (log, i) => {
        for (let round = 0; round < 60; round += 1) {
          for (let n = 0; n < 25; n += 1) log.record(openFacts(i * 100_000 + round * 25 + n), completion(n));
          await log.ship(pool, 20);
        }
      }));
      shipping = false;
      await viewer;
      const total = Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM requests')).rows[0].n);
      expect(total).toBe(3 * 60 * 25);
      expect(seen.size).toBe(total);
      expect([...seen].filter(([, times]) => times !== 1).slice(0, 5)).toEqual([]);
    } finally {
      for (const log of logs) log.close();
      for (const d of dirs) d.remove();
      await pool.end();
    }
  }, 120_000);
});
