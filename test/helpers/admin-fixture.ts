import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openAuditStore } from '../../src/audit/store';
import type { AuditStore } from '../../src/audit/store';
import type { AuditCompletion, AuditOpen } from '../../src/audit/record-types';

/** "now" for every admin test: relative times (since=1h) count back from here. */
export const NOW = new Date('2025-03-01T12:00:00.000Z');
export const MINUTE = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;

/** One record to write: only what a test cares about; the rest has plausible defaults. */
export interface FixtureRecord {
  at: number;
  host?: string | null;
  clientIp?: string;
  clients?: string[];
  decision?: 'allow' | 'deny';
  wouldDeny?: boolean;
  status?: number | null;
  kind?: 'connect' | 'http';
  path?: string | null;
  rule?: string | null;
  /** The proxy user (default none). */
  user?: string | null;
  reason?: string;
  error?: string | null;
}

export function auditOpen(r: FixtureRecord): AuditOpen {
  const decision = r.decision ?? 'allow';
  return {
    startedAt: new Date(r.at),
    clientIp: r.clientIp ?? '10.0.8.7',
    clientPort: 40000,
    clients: r.clients ?? [],
    user: r.user ?? null,
    kind: r.kind ?? 'connect',
    method: (r.kind ?? 'connect') === 'connect' ? 'CONNECT' : 'GET',
    scheme: (r.kind ?? 'connect') === 'connect' ? null : 'http',
    host: r.host === undefined ? 'example.com' : r.host,
    port: 443,
    path: r.path ?? null,
    resolvedIp: null,
    decision,
    wouldDeny: r.wouldDeny ?? false,
    rule: r.rule === undefined ? (decision === 'deny' ? '(default)' : 'allow-all') : r.rule,
    ruleSource: 'policy.yaml:3',
    reason: r.reason ?? (decision === 'deny' ? 'no rule matched' : 'matched rule'),
    policyVersion: 'sha256:fixture',
  };
}

export function auditCompletion(r: FixtureRecord): AuditCompletion {
  return {
    endedAt: new Date(r.at + 10),
    status: r.status === undefined ? (r.decision === 'deny' ? 403 : 200) : r.status,
    bytesUp: 10,
    bytesDown: 20,
    error: r.error ?? null,
  };
}

/** A stored record as brute-force oracles read it straight from the table. */
export interface StoredRow {
  id: number;
  started_at_ms: number;
  host: string | null;
  client_ip: string;
  clients: string[];
  decision: 'allow' | 'deny';
  would_deny: boolean;
  status: number | null;
  rule: string | null;
}

export interface TempStore {
  dir: string;
  store: AuditStore;
  /** Writes the records in order (ids follow the order, not `at`); returns their ids. */
  write(records: FixtureRecord[]): number[];
  /** Every record, newest first, for brute-force comparisons. */
  all(): StoredRow[];
  cleanup(): void;
}

export function tempStore(prefix: string): TempStore {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const store = openAuditStore(path.join(dir, 'audit.db'));
  return {
    dir,
    store,
    write: (records) => records.map((r) => store.record(auditOpen(r), auditCompletion(r))),
    all: () => {
      const rows = store.db
        .prepare('SELECT id, started_at_ms, host, client_ip, clients, decision, would_deny, status, rule FROM requests ORDER BY id DESC')
        .all() as Array<Omit<StoredRow, 'clients' | 'would_deny'> & { clients: string; would_deny: number }>;
      return rows.map((row) => ({ ...row, clients: JSON.parse(row.clients) as string[], would_deny: row.would_deny === 1 }));
    },
    cleanup: () => {
      store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Deterministic pseudo-random numbers, so a failing case can be rerun: the benches' generator. */
export { seededRandom as seeded } from '../../bench/lib/seeded-random';
