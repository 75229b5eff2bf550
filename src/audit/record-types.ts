import type { RequestKind } from '../request/target-types';
import type { Action } from '../policy/types';

/** What is known when a record is opened (before the first byte is forwarded). */
export interface AuditOpen {
  startedAt: Date;
  clientIp: string;
  clientPort: number;
  /**
   * The load balancer that named the client in a PROXY protocol header (SPEC §6 `peer_ip`);
   * null or absent for a direct connection (records written before the field have none).
   */
  peerIp?: string | null;
  clients: string[];
  user: string | null;
  kind: RequestKind;
  method: string | null;
  scheme: string | null;
  /** Normalised host, or the raw (truncated) text for a malformed target, or null. */
  host: string | null;
  port: number | null;
  path: string | null;
  resolvedIp: string | null;
  /**
   * The server name a TLS client named in its ClientHello inside a CONNECT tunnel (SPEC §6
   * `sni`); null or absent for plain HTTP, an unchecked tunnel, and records written before it.
   */
  sni?: string | null;
  /**
   * For a request inside an inspected tunnel (kind `https`, SPEC §6), the tunnel's own record id;
   * null or absent for every other record and for records written before it.
   */
  tunnelId?: number | null;
  decision: Action;
  wouldDeny: boolean;
  rule: string | null;
  ruleSource: string | null;
  reason: string;
  policyVersion: string | null;
}

/** What is known when the connection or exchange ends. */
export interface AuditCompletion {
  endedAt: Date;
  status: number | null;
  bytesUp: number;
  bytesDown: number;
  error: string | null;
}

/** A record as the admin API returns it (SPEC §4): snake_case, ISO-8601 UTC times. */
export interface AuditRecordJson {
  id: number;
  started_at: string;
  ended_at: string | null;
  duration_ms: number | null;
  client_ip: string;
  client_port: number;
  /** The connecting load balancer when a PROXY protocol header named the client, else null. */
  peer_ip: string | null;
  clients: string[];
  user: string | null;
  kind: RequestKind;
  method: string | null;
  scheme: string | null;
  host: string | null;
  port: number | null;
  path: string | null;
  resolved_ip: string | null;
  /** The ClientHello's server name in a checked CONNECT tunnel, else null (SPEC §6 Trust). */
  sni: string | null;
  /** The tunnel's record id for a request inside an inspected tunnel (kind `https`), else null. */
  tunnel_id: number | null;
  decision: Action;
  would_deny: boolean;
  rule: string | null;
  rule_source: string | null;
  reason: string;
  status: number | null;
  bytes_up: number;
  bytes_down: number;
  error: string | null;
  policy_version: string | null;
  /** The replica that recorded it (--node; SPEC §6). */
  node: string;
}

/**
 * The audit log's synchronous writes (the store, tools and test fixtures): each method is
 * committed on return (WAL commit) and throws when the database cannot be written.
 */
export interface AuditWriter {
  /**
   * False while the store is known to be failing (no file access): the proxy then refuses new
   * requests with 503 before it resolves or dials anything.
   */
  writable(): boolean;
  /** Insert an open record (ended_at null); returns its id. */
  open(record: AuditOpen): number;
  /**
   * Fill in the end of a record opened with open(). While the store cannot write, the
   * completion is held in memory (bounded) and written on recovery instead of throwing.
   */
  complete(id: number, completion: AuditCompletion): void;
  /** Insert a finished record in one step (denied, malformed, failed before forwarding). */
  record(record: AuditOpen, completion: AuditCompletion): number;
}

/**
 * The audit sink the proxy writes through: passed in, never imported, so tests give their own
 * sink (a full disk, a slow write) without a database. Opens
 * and completions are group-committed (group-commit.ts): a record opened here is on disk when
 * the promise resolves, before the proxy forwards a byte; it rejects when the database cannot
 * be written, and the proxy answers 503 then (fail closed).
 */
export interface AuditSink {
  writable(): boolean;
  /** Insert an open record (ended_at null); resolves with its id once committed. */
  open(record: AuditOpen): Promise<number>;
  /** Fill in the end of a record opened with open(), in the next commit. Never throws. */
  complete(id: number, completion: AuditCompletion): void;
  /**
   * Insert a finished record in one step (a refusal, or a client gone before anything was
   * forwarded); resolves with its id once committed, which the refusal's answer names.
   */
  record(record: AuditOpen, completion: AuditCompletion): Promise<number>;
}

/**
 * The audit `error` of records the proxy ended itself, not a peer or the network (SPEC §6).
 * Shared by the code that writes them and the tests that look for them.
 */
export const RecordEnd = {
  /** A previous run left the record open (killed, crashed): completed at the next start. */
  proxyRestarted: 'proxy_restarted',
  /** Open in a proxy worker process that died (serve --workers): completed by the primary. */
  workerExited: 'worker_exited',
  /** Still open once the drain had ended every connection: completed as the proxy stopped. */
  shutdown: 'shutdown: proxy stopped',
  /** A tunnel still open at the drain deadline (--drain-timeout), cut by the proxy. */
  drainDeadline: 'shutdown: cut at the drain deadline',
} as const;
