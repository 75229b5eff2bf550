import { isIP } from 'node:net';
import { normaliseHost } from '../../request/target';
import type { HostKind, RequestKind } from '../../request/target-types';
import type { Action } from '../types';

/** One distinct request shape of the window and how often it was recorded. */
export interface RecordedShape {
  kind: RequestKind;
  method: string;
  host: string;
  hostKind: HostKind;
  port: number;
  /** Plain HTTP only. */
  path: string | null;
  clientIp: string;
  user: string | null;
  decision: Action;
  wouldDeny: boolean;
  rule: string;
  /** The ClientHello's server name a checked tunnel recorded (SPEC §6 `sni`), else null. */
  sni: string | null;
  count: number;
  lastSeenMs: number;
}

/**
 * A shape as both engines key it: the JSON array of (kind, method, host, port, path, client_ip,
 * user, decision, would_deny as 0/1, rule, sni), compact, as SQLite's json_array() writes it. Shapes are
 * replayed in the byte order of this key on both engines, so what depends on the order (the
 * rule a never-matching rule is first found shadowed by) comes out the same.
 */
export type ShapeFields = [unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown, unknown];

/**
 * A shape of kind `https` is a request read inside an inspected tunnel (SPEC §6): `policy replay`
 * decides it as the proxy does there; `policy suggest` counts it apart (its tunnel's CONNECT is
 * what a suggested rule allows).
 */
export type ShapeVerdict = { ok: true; shape: RecordedShape } | { ok: false; why: 'malformed' | 'undecided'; count: number };

const nullableText = (v: unknown): v is string | null => v === null || typeof v === 'string';

/** The host as the proxy would have recorded it, or null if it is not one (a raw target). */
function hostKindOf(host: string): HostKind | null {
  if (isIP(host) === 6) return 'ipv6';
  try {
    const parsed = normaliseHost(host);
    return parsed.host === host ? parsed.hostKind : null;
  } catch {
    return null;
  }
}

/** Hosts repeat across shapes (one per client address): classify each once. */
export class HostKinds {
  private readonly known = new Map<string, HostKind | null>();

  of(host: string): HostKind | null {
    let kind = this.known.get(host);
    if (kind === undefined) {
      kind = hostKindOf(host);
      this.known.set(host, kind);
    }
    return kind;
  }
}

export function toShape(fields: ShapeFields, count: number, lastSeenMs: number, hosts: HostKinds): ShapeVerdict {
  const [kind, method, host, port, path, clientIp, user, decision, wouldDeny, rule, sni] = fields;
  const malformed = { ok: false, why: 'malformed', count } as const;
  // `https`: a request inside an inspected tunnel, replayed as the proxy decides it there (SPEC §6).
  if (kind !== 'connect' && kind !== 'http' && kind !== 'https') return malformed;
  if (typeof host !== 'string' || typeof method !== 'string' || typeof clientIp !== 'string') return malformed;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return malformed;
  if (!nullableText(path) || (kind !== 'connect' && path === null) || !nullableText(user) || !nullableText(rule) || !nullableText(sni ?? null)) return malformed;
  if ((decision !== 'allow' && decision !== 'deny') || isIP(clientIp) === 0) return malformed;
  const hostKind = hosts.of(host);
  if (hostKind === null) return malformed;
  // No rule: the request ended before the policy decided it (the client left, a malformed head).
  if (rule === null) return { ok: false, why: 'undecided', count };
  return {
    ok: true,
    shape: {
      kind, method, host, hostKind, port, path: kind !== 'connect' ? path : null, clientIp, user, decision,
      wouldDeny: wouldDeny === 1, rule, sni: kind === 'connect' ? (sni ?? null) as string | null : null, count, lastSeenMs,
    },
  };
}
