import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { openAuditStore } from '../../src/audit/store';
import { applyPgMigrations } from '../../src/fleet/pg-migrate';
import { loadPolicy, type Policy } from '../../src/policy/load';
import { freshDatabase } from './postgres';
import { SegmentLog } from '../../src/audit/log/segment-log';
import { planStep, readStep } from '../../src/audit/log/index-step';
import type { AuditCompletion, AuditOpen, AuditWriter } from '../../src/audit/record-types';
import { shipBatch, shippedPosition, type StoreIdentity } from '../../src/fleet/pg-ship';
import { chainPart } from '../../src/fleet/pg-chain';

/**
 * Records into a replica's real local log (SegmentLog), shipped to the shared history by the real
 * ship path (readStep + planStep + shipBatch), as serve --audit-url does, so the rows in
 * PostgreSQL are exactly what a shipper would have put there.
 */
export class ShippingLog implements AuditWriter {
  private readonly log: SegmentLog;

  constructor(
    readonly dir: string,
    readonly who: StoreIdentity,
  ) {
    this.log = SegmentLog.open({ dir, fsync: false });
  }

  writable(): boolean {
    return true;
  }

  open(record: AuditOpen): number {
    return this.log.appendBatch([{ type: 'open', open: record }])[0];
  }

  complete(id: number, completion: AuditCompletion): void {
    this.log.appendBatch([{ type: 'complete', id, completion }]);
  }

  record(record: AuditOpen, completion: AuditCompletion): number {
    return this.log.appendBatch([{ type: 'finished', open: record, completion }])[0];
  }

  /**
   * Ships everything appended so far, `max` entries per transaction; returns the batches shipped.
   * With `chain` false, as a release before the chain's copy shipped (rows only).
   */
  async ship(pool: Pool, max = 10_000, chain = true): Promise<number> {
    let from = await shippedPosition(pool, this.who.storeId);
    let batches = 0;
    for (;;) {
      const read = readStep(this.dir, from, max, chain);
      if (read.entries.length === 0) return batches;
      const batch = { from, next: read.next, plan: planStep(read.entries), entries: read.entries.length, policyVersion: 'v1' };
      const outcome = await shipBatch(pool, this.who, chain ? { ...batch, chain: chainPart(read.payloads) } : batch);
      if (outcome.kind !== 'shipped') throw new Error(`ship was ${outcome.kind}`);
      batches += 1;
      from = read.next;
    }
  }

  close(): void {
    this.log.close();
  }
}

/** The same records in a local SQLite store and in a shared history shipped by the real ship path. */
export interface TwinHistories {
  dir: string;
  dbFile: string;
  /** The history's URL with `password` in it (the test server trusts loopback, so it is never needed, and must never show). */
  url: string;
  pool: Pool;
  close(): Promise<void>;
}

export async function twinHistories(
  prefix: string,
  who: StoreIdentity,
  policiesDir: string,
  password: string,
  record: (audit: AuditWriter, policy: Policy, nowMs: number) => void,
): Promise<TwinHistories> {
  const dir = mkdtempSync(join(tmpdir(), `tollgate-${prefix}-`));
  const dbFile = join(dir, 'audit.db');
  const base = new URL(freshDatabase(prefix.replace(/[^a-z]/g, '')));
  base.password = password;
  const url = base.toString();
  const pool = new Pool({ connectionString: url });
  await applyPgMigrations(pool);
  const loaded = loadPolicy(policiesDir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const now = Date.now();
  const store = openAuditStore(dbFile);
  const replica = new ShippingLog(join(dir, 'audit-log'), who);
  for (const audit of [store, replica]) record(audit, loaded.policy, now);
  store.close();
  await replica.ship(pool, 7);
  replica.close();
  return {
    dir, dbFile, url, pool,
    close: async () => {
      await pool.end();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
