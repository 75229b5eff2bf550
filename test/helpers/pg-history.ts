import type { Pool } from 'pg';
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
