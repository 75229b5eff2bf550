import type { AuditCompletion, AuditOpen } from './record-types';

/**
 * Longest string stored in any text column. Hosts, paths, usernames and error texts come from
 * hostile clients or remote servers; one multi-megabyte value per request would bloat the log
 * and every page of the admin API.
 */
export const MAX_TEXT_LENGTH = 2048;

const TRUNCATION_MARK = '…';

/** Cuts a string to MAX_TEXT_LENGTH UTF-16 units, never between the halves of a surrogate pair. */
export function clipText(value: string): string {
  if (value.length <= MAX_TEXT_LENGTH) return value;
  let end = MAX_TEXT_LENGTH - TRUNCATION_MARK.length;
  const last = value.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return value.slice(0, end) + TRUNCATION_MARK;
}

function clipNullable(value: string | null): string | null {
  return value === null ? null : clipText(value);
}

export type RowParams = Record<string, string | number | null>;

/** Named parameters shared by both inserts, from an AuditOpen. */
export function openParams(record: AuditOpen): RowParams {
  return {
    started_at_ms: record.startedAt.getTime(),
    client_ip: clipText(record.clientIp),
    client_port: record.clientPort,
    peer_ip: clipNullable(record.peerIp ?? null),
    clients: JSON.stringify(record.clients.map(clipText)),
    user: clipNullable(record.user),
    kind: record.kind,
    method: clipNullable(record.method),
    scheme: clipNullable(record.scheme),
    host: clipNullable(record.host),
    port: record.port,
    path: clipNullable(record.path),
    resolved_ip: clipNullable(record.resolvedIp),
    sni: clipNullable(record.sni ?? null),
    tunnel_id: record.tunnelId ?? null,
    decision: record.decision,
    would_deny: record.wouldDeny ? 1 : 0,
    rule: clipNullable(record.rule),
    rule_source: clipNullable(record.ruleSource),
    reason: clipText(record.reason),
    policy_version: clipNullable(record.policyVersion),
  };
}

export function completionParams(completion: AuditCompletion): RowParams {
  return {
    ended_at_ms: completion.endedAt.getTime(),
    status: completion.status,
    bytes_up: completion.bytesUp,
    bytes_down: completion.bytesDown,
    error: clipNullable(completion.error),
  };
}

export const OPEN_COLUMNS = [
  'started_at_ms', 'client_ip', 'client_port', 'peer_ip', 'clients', 'user', 'kind', 'method', 'scheme',
  'host', 'port', 'path', 'resolved_ip', 'sni', 'tunnel_id', 'decision', 'would_deny', 'rule', 'rule_source',
  'reason', 'policy_version',
] as const;
export const COMPLETION_COLUMNS = ['ended_at_ms', 'status', 'bytes_up', 'bytes_down', 'error'] as const;

/**
 * The row a write probe inserts and rolls back. It is larger than most real records (about
 * 600 bytes), so "the probe fits" means ordinary records fit too. Exported so that tests can
 * fill a database with rows of exactly this shape.
 */
export function probeRecord(now: Date): { open: AuditOpen; completion: AuditCompletion } {
  return {
    open: {
      startedAt: now, clientIp: '127.0.0.1', clientPort: 0, clients: [], user: null, kind: 'connect',
      method: 'CONNECT', scheme: null, host: 'write-probe.tollgate.invalid', port: 443, path: null,
      resolvedIp: null, decision: 'deny', wouldDeny: false, rule: '(probe)', ruleSource: null,
      reason: 'audit write probe, always rolled back'.padEnd(512, '.'), policyVersion: null,
    },
    completion: { endedAt: now, status: null, bytesUp: 0, bytesDown: 0, error: null },
  };
}
