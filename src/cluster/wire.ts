import type { CompletionEntry, FinishedEntry } from '../audit/connection';
import type { AuditCompletion, AuditOpen } from '../audit/record-types';

/**
 * Audit records as they cross between a worker and the primary: arrays of values in a fixed
 * order, times as epoch milliseconds, over the cluster's JSON channel. Objects with their keys
 * (or the `advanced` serialization's structured clone) cost more to send and to read, on every
 * record (measured: docs/performance.md, "Measurements behind the code").
 */
export type WireOpen = [
  startedAtMs: number, clientIp: string, clientPort: number, peerIp: string | null, clients: string[], user: string | null,
  kind: AuditOpen['kind'], method: string | null, scheme: string | null, host: string | null, port: number | null, path: string | null,
  resolvedIp: string | null, decision: AuditOpen['decision'], wouldDeny: boolean, rule: string | null, ruleSource: string | null,
  reason: string, policyVersion: string | null,
  // Fields added after the tuple was laid out go last, so every earlier index keeps its meaning.
  sni: string | null, tunnelId: number | null,
];
export type WireCompletion = [endedAtMs: number, status: number | null, bytesUp: number, bytesDown: number, error: string | null];

/** One batch of a worker's group commit. */
export interface WireBatch {
  opens: WireOpen[];
  completions: Array<[id: number, completion: WireCompletion]>;
  finished: Array<[open: WireOpen, completion: WireCompletion]>;
}

export function packOpen(o: AuditOpen): WireOpen {
  return [
    o.startedAt.getTime(), o.clientIp, o.clientPort, o.peerIp ?? null, o.clients, o.user, o.kind, o.method, o.scheme, o.host, o.port, o.path,
    o.resolvedIp, o.decision, o.wouldDeny, o.rule, o.ruleSource, o.reason, o.policyVersion, o.sni ?? null, o.tunnelId ?? null,
  ];
}

export function unpackOpen(w: WireOpen): AuditOpen {
  return {
    startedAt: new Date(w[0]), clientIp: w[1], clientPort: w[2], peerIp: w[3], clients: w[4], user: w[5], kind: w[6], method: w[7], scheme: w[8],
    host: w[9], port: w[10], path: w[11], resolvedIp: w[12], decision: w[13], wouldDeny: w[14], rule: w[15], ruleSource: w[16], reason: w[17],
    policyVersion: w[18], sni: w[19], tunnelId: w[20],
  };
}

export function packCompletion(c: AuditCompletion): WireCompletion {
  return [c.endedAt.getTime(), c.status, c.bytesUp, c.bytesDown, c.error];
}

export function unpackCompletion(w: WireCompletion): AuditCompletion {
  return { endedAt: new Date(w[0]), status: w[1], bytesUp: w[2], bytesDown: w[3], error: w[4] };
}

export function packBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[], finished: readonly FinishedEntry[]): WireBatch {
  return {
    opens: opens.map(packOpen),
    completions: completions.map(([id, c]) => [id, packCompletion(c)]),
    finished: finished.map(([o, c]) => [packOpen(o), packCompletion(c)]),
  };
}

export function unpackBatch(batch: WireBatch): { opens: AuditOpen[]; completions: CompletionEntry[]; finished: FinishedEntry[] } {
  return {
    opens: batch.opens.map(unpackOpen),
    completions: batch.completions.map(([id, c]): CompletionEntry => [id, unpackCompletion(c)]),
    finished: batch.finished.map(([o, c]): FinishedEntry => [unpackOpen(o), unpackCompletion(c)]),
  };
}
