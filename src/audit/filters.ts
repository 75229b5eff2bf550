import { isIP } from 'node:net';
import { NAME_PATTERN } from '../policy/client-schema';
import { compileHostMatcher, hostMatches, parseHostEntry, viewHost } from '../policy/host-match';
import type { HostEntry, HostMatcher } from '../policy/host-match';
import { looksLikeIp, parseLiteral, parseRange, rangeContains } from '../policy/ip-range';
import type { IpRange } from '../policy/ip-range';
import type { Action } from '../policy/types';
import { QueryInputError } from './query-errors';
import { parseTimeWindow } from './time-window';
import type { TimeWindow } from './time-window';

/** The filters that may also be given negated, as `not.NAME=` (SPEC §6): all but the time window. */
export const NEGATABLE_FILTERS = ['host', 'client', 'decision', 'would_deny', 'status', 'q', 'node', 'tunnel_id', 'rule', 'user'] as const;
export type NegatableFilter = (typeof NEGATABLE_FILTERS)[number];

/** The SPEC §5 filters as the query string gives them: every value a string, all optional. */
export type RawRequestFilters = { [K in NegatableFilter]?: string } & { [K in NegatableFilter as `not.${K}`]?: string } & {
  since?: string;
  until?: string;
};

/** A host filter: one policy host entry or several, comma-separated; matched as policies match. */
export interface HostFilter {
  text: string;
  matcher: HostMatcher;
  /** A single wildcard-free name: looked up directly, no scan of the known hosts. */
  exactName: string | null;
}

export type ClientFilter = { kind: 'group'; name: string } | { kind: 'address'; text: string; range: IpRange };

export type StatusFilter = { kind: 'exact'; code: number } | { kind: 'class'; low: number; high: number };

/** The filters a record must match (or, under `not`, must not match); absent ones are null. */
export interface MatchFilters {
  host: HostFilter | null;
  client: ClientFilter | null;
  decision: Action | null;
  wouldDeny: boolean | null;
  status: StatusFilter | null;
  /** Free text, matched case-insensitively (ASCII) as a substring. */
  q: string | null;
  /** The replica's name (--node), matched exactly. */
  node: string | null;
  /** Only the requests inside this tunnel: the tunnel's record id (SPEC §6 TLS inspection). */
  tunnelId: number | null;
  /** The rule that decided, by name, exactly (`(default)`, `(sni)` and the like included). */
  rule: string | null;
  /** The proxy user, exactly. */
  user: string | null;
}

/** Validated filters: the positive ones, the time window, and the negated ones (`not.NAME`). */
export interface RequestFilters extends MatchFilters {
  window: TimeWindow;
  /** Each one set excludes the records it would match; a record missing the field is kept. */
  not: MatchFilters;
}

export const MAX_HOST_FILTER_LENGTH = 1000;
export const MAX_Q_LENGTH = 200;

/** The columns free text (`q`) searches, on both engines. */
export const Q_COLUMNS = ['host', 'path', 'reason', 'rule', 'error', 'client_ip'] as const;
export const MAX_NODE_LENGTH = 255;
export const MAX_NAME_FILTER_LENGTH = 255;

function parseHost(param: string, text: string): HostFilter {
  if (text.length > MAX_HOST_FILTER_LENGTH) {
    throw new QueryInputError(param, `${param} is longer than ${MAX_HOST_FILTER_LENGTH} characters`);
  }
  const entries: HostEntry[] = [];
  for (const raw of text.split(',').map((part) => part.trim())) {
    const parsed = parseHostEntry(raw);
    if (!parsed.ok) throw new QueryInputError(param, `${param}: ${parsed.message}`);
    entries.push(parsed.entry);
  }
  const only = entries.length === 1 ? entries[0] : undefined;
  const exactName = only?.kind === 'name' && !/[*?]/.test(only.pattern) ? only.pattern : null;
  return { text, matcher: compileHostMatcher(entries), exactName };
}

/**
 * A client group name, or a client address or CIDR range. Group names may hold digits, dots
 * and colons, so text that reads as an address (policy rules: ends in a number or holds ":")
 * is taken as one: a group named like an IP address cannot be filtered by name.
 */
function parseClient(param: string, text: string): ClientFilter {
  if (looksLikeIp(text)) {
    const parsed = parseRange(text);
    if (!parsed.ok) throw new QueryInputError(param, `${param}: ${parsed.message}`);
    return { kind: 'address', text, range: parsed.range };
  }
  if (!NAME_PATTERN.test(text)) {
    throw new QueryInputError(param, `${param} must be a client group name, an IP address or a CIDR range`);
  }
  return { kind: 'group', name: text };
}

function parseStatus(param: string, text: string): StatusFilter {
  if (/^[1-5][0-9]{2}$/.test(text)) return { kind: 'exact', code: Number(text) };
  const cls = /^([1-5])xx$/i.exec(text);
  if (cls) {
    const low = Number(cls[1]) * 100;
    return { kind: 'class', low, high: low + 99 };
  }
  throw new QueryInputError(param, `${param} must be a code from 100 to 599 or a class such as 4xx`);
}

function parseDecision(param: string, text: string): Action {
  if (text === 'allow' || text === 'deny') return text;
  throw new QueryInputError(param, `${param} must be allow or deny`);
}

function parseBoolean(param: string, text: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new QueryInputError(param, `${param} must be true or false`);
}

function parseQ(param: string, text: string): string | null {
  if (text.length > MAX_Q_LENGTH) throw new QueryInputError(param, `${param} is longer than ${MAX_Q_LENGTH} characters`);
  return text === '' ? null : text;
}

function parseNode(param: string, text: string): string {
  if (text.length === 0 || text.length > MAX_NODE_LENGTH) {
    throw new QueryInputError(param, `${param} must be a node name of 1 to ${MAX_NODE_LENGTH} characters`);
  }
  return text;
}

/** A rule or user name, matched exactly. */
function parseName(param: string, text: string): string {
  if (text.length === 0 || text.length > MAX_NAME_FILTER_LENGTH) {
    throw new QueryInputError(param, `${param} must be 1 to ${MAX_NAME_FILTER_LENGTH} characters`);
  }
  return text;
}

/** A record id as the API hands them out (the same rule as a cursor's id). */
function parseTunnelId(param: string, text: string): number {
  const id = /^[1-9][0-9]{0,15}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(id)) throw new QueryInputError(param, `${param} must be a tunnel's record id (a whole number from 1)`);
  return id;
}

/**
 * One side of the filters: the positive ones (`prefix` '') or the negated ones ('not.'). Each
 * parser is given the parameter's name as written (`not.host`), which its errors name.
 */
function parseMatchFilters(raw: RawRequestFilters, prefix: '' | 'not.'): MatchFilters {
  const named = <T>(name: NegatableFilter, parse: (param: string, text: string) => T): T | null => {
    const param = `${prefix}${name}`;
    const text = (raw as Record<string, string | undefined>)[param];
    return text === undefined ? null : parse(param, text);
  };
  return {
    host: named('host', parseHost),
    client: named('client', parseClient),
    decision: named('decision', parseDecision),
    wouldDeny: named('would_deny', parseBoolean),
    status: named('status', parseStatus),
    q: named('q', parseQ),
    node: named('node', parseNode),
    tunnelId: named('tunnel_id', parseTunnelId),
    rule: named('rule', parseName),
    user: named('user', parseName),
  };
}

/** Validates every filter; throws QueryInputError naming the first bad one. */
export function parseRequestFilters(raw: RawRequestFilters, now: Date): RequestFilters {
  return {
    ...parseMatchFilters(raw, ''),
    window: parseTimeWindow({ since: raw.since, until: raw.until }, now),
    not: parseMatchFilters(raw, 'not.'),
  };
}

/** Any negated filter is set. */
function hasNegated(filters: RequestFilters): boolean {
  return Object.values(filters.not).some((value) => value !== null);
}

/** Any filter but the time window is set (positive or negated). */
export function narrowsBeyondWindow(filters: RequestFilters): boolean {
  const { window: _window, not: _not, ...positive } = filters;
  return Object.values(positive).some((value) => value !== null) || hasNegated(filters);
}

/** A recorded host as the policy engine would see it: IP literals by their kind, else a name. */
export function recordedHostMatches(matcher: HostMatcher, host: string): boolean {
  const family = isIP(host);
  return hostMatches(matcher, viewHost(host, family === 4 ? 'ipv4' : family === 6 ? 'ipv6' : 'name'));
}

/** A recorded client address is in the filter's range (IPv4-mapped IPv6 compared as IPv4). */
export function recordedAddressMatches(range: IpRange, clientIp: string): boolean {
  const addr = parseLiteral(clientIp);
  return addr !== null && rangeContains(range, addr);
}

/**
 * The recorded hosts a host filter matches, out of every host ever recorded (first_seen_hosts):
 * a single wildcard-free name is itself, with no scan. Both engines resolve globs this way.
 */
export function hostsMatching(filter: HostFilter, known: () => readonly string[]): string[] {
  if (filter.exactName !== null) return [filter.exactName];
  return known().filter((name) => recordedHostMatches(filter.matcher, name));
}

/** The recorded client addresses in an address filter's range, out of every one ever recorded. */
export function addressesMatching(range: IpRange, known: readonly string[]): string[] {
  return known.filter((ip) => recordedAddressMatches(range, ip));
}
