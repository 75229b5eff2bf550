import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'pg';
import { chainPart } from '../../src/fleet/pg-chain';
import { SegmentLog } from '../../src/audit/log/segment-log';
import { planStep, readStep } from '../../src/audit/log/index-step';
import type { AuditReader } from '../../src/audit/reader';
import { SqliteAuditReader } from '../../src/audit/sqlite-reader';
import { applyPgMigrations } from '../../src/fleet/pg-migrate';
import { shipBatch, shippedPosition } from '../../src/fleet/pg-ship';
import { PgAuditReader } from '../../src/fleet/pg-reader';
import { auditCompletion, auditOpen, tempStore } from './admin-fixture';
import type { FixtureRecord } from './admin-fixture';
import { freshDatabase } from './postgres';

export type Engine = 'sqlite' | 'postgres';
export const ENGINES: readonly Engine[] = ['sqlite', 'postgres'];

/** The node name every fixture record of a single store carries. */
export const FIXTURE_NODE = 'node-a';

/** An audit history the admin app reads, written with the same fixture records on either engine. */
export interface History {
  engine: Engine;
  /** A temp folder (policy files may go here). */
  dir: string;
  reader: AuditReader;
  /** Writes the records in order: ids follow the order, not `at`. */
  write(records: FixtureRecord[]): Promise<void>;
  cleanup(): Promise<void>;
}

function sqliteHistory(prefix: string, node: string): History {
  const s = tempStore(prefix);
  return {
    engine: 'sqlite',
    dir: s.dir,
    reader: new SqliteAuditReader(() => s.store.db, node),
    write: async (records) => void s.write(records),
    cleanup: async () => s.cleanup(),
  };
}

/**
 * A replica's local log shipped to PostgreSQL: the real path (SegmentLog, readStep, planStep,
 * shipBatch), one ship per write, from the stored position.
 */
export class ShippingReplica {
  readonly storeId = crypto.randomUUID();
  private readonly log: SegmentLog;

  constructor(readonly pool: Pool, readonly logDir: string, readonly node: string, readonly policyVersion: string | null = 'sha256:fixture') {
    this.log = SegmentLog.open({ dir: logDir, fsync: false, firstId: 1 });
  }

  async write(records: FixtureRecord[]): Promise<void> {
    if (records.length > 0) this.log.appendBatch(records.map((r) => ({ type: 'finished' as const, open: auditOpen(r), completion: auditCompletion(r) })));
    await this.ship();
  }

  async ship(): Promise<void> {
    const who = { storeId: this.storeId, node: this.node };
    for (;;) {
      const from = await shippedPosition(this.pool, this.storeId);
      const read = readStep(this.logDir, from, 10_000, true);
      const outcome = await shipBatch(this.pool, who, {
        from, next: read.next, plan: planStep(read.entries), entries: read.entries.length, policyVersion: this.policyVersion, chain: chainPart(read.payloads),
      });
      if (outcome.kind !== 'shipped') throw new Error('stale ship in a test');
      if (read.entries.length === 0) return;
    }
  }

  close(): void {
    this.log.close();
  }
}

export interface PgHistory extends History {
  pool: Pool;
  url: string;
  /** Another replica shipping into the same history. */
  replica(node: string, policyVersion?: string | null): ShippingReplica;
}

export async function pgHistory(prefix: string, node: string): Promise<PgHistory> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const url = freshDatabase(prefix.replace(/[^a-z]/g, ''));
  const pool = new Pool({ connectionString: url, max: 4 });
  await applyPgMigrations(pool);
  const replicas: ShippingReplica[] = [];
  const replica = (name: string, policyVersion?: string | null): ShippingReplica => {
    const made = new ShippingReplica(pool, path.join(dir, `log-${replicas.length}`), name, policyVersion);
    replicas.push(made);
    return made;
  };
  const own = replica(node);
  return {
    engine: 'postgres',
    dir,
    pool,
    url,
    reader: new PgAuditReader(pool),
    write: (records) => own.write(records),
    replica,
    cleanup: async () => {
      for (const r of replicas) r.close();
      await pool.end();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function openHistory(engine: Engine, prefix: string, node = FIXTURE_NODE): Promise<History> {
  return engine === 'sqlite' ? sqliteHistory(prefix, node) : pgHistory(prefix, node);
}
