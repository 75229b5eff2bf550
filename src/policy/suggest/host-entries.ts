import { getDomain } from 'tldts';
import type { HostKind } from '../../request/target-types';
import { compileHostMatcher, hostMatches, parseHostEntry, viewHost } from '../host-match';

/**
 * Destinations as policy host entries. Names are grouped into families by registrable domain
 * (Public Suffix List with its private section, through tldts), so `bucket.s3.amazonaws.com` is
 * its own registrable domain (s3.amazonaws.com is a public suffix there) and never widens to
 * `**.amazonaws.com` or `**.s3.amazonaws.com`. Every entry written is parsed back with the
 * policy's own parser and must match the hosts it stands for: a host the policy cannot express
 * exactly is skipped, never approximated.
 */

/** Three or more distinct subdomains of one registrable domain become one `**.` glob (SPEC §6). */
const GLOB_MIN_SUBDOMAINS = 3;

/** The registrable domain of a name, or the name itself (a public suffix, a single label); an IP itself. */
export function familyOf(host: string, hostKind: HostKind): string {
  if (hostKind !== 'name') return host;
  return getDomain(host, { allowPrivateDomains: true }) ?? host;
}

/** Whether `entry`, read by the policy parser, is exactly one name/range entry that matches every host. */
function entryCovers(entry: string, hosts: ReadonlyArray<{ host: string; hostKind: HostKind }>, kind: 'name' | 'range'): boolean {
  const parsed = parseHostEntry(entry);
  if (!parsed.ok || parsed.entry.kind !== kind) return false;
  if (parsed.entry.kind === 'name' && parsed.entry.pattern !== entry) return false;
  const matcher = compileHostMatcher([parsed.entry]);
  return hosts.every((h) => hostMatches(matcher, viewHost(h.host, h.hostKind)));
}

/**
 * The entry for one recorded host: the exact name, or `/32` (`/128`) for an IP literal. Null
 * when the policy cannot express it exactly (a wildcard character, a label it refuses).
 */
export function exactEntry(host: string, hostKind: HostKind): string | null {
  if (hostKind !== 'name') {
    const entry = `${host}/${hostKind === 'ipv4' ? 32 : 128}`;
    return entryCovers(entry, [{ host, hostKind }], 'range') ? entry : null;
  }
  if (/[*?]/.test(host)) return null;
  return entryCovers(host, [{ host, hostKind }], 'name') ? host : null;
}

/**
 * `**.DOMAIN` for a family with enough distinct subdomains, else null. `**` matches any number
 * of labels including none, so the glob also covers the apex (`**.example.com` matches
 * example.com itself: host-match.ts). `domain` is a registrable domain (never a public suffix),
 * as familyOf() returns only those or a host that has no subdomain seen here.
 */
export function globEntry(domain: string, hosts: readonly string[]): string | null {
  if (getDomain(domain, { allowPrivateDomains: true }) !== domain) return null;
  const subdomains = new Set(hosts.filter((h) => h.endsWith(`.${domain}`)));
  if (subdomains.size < GLOB_MIN_SUBDOMAINS) return null;
  const entry = `**.${domain}`;
  return entryCovers(entry, hosts.map((host) => ({ host, hostKind: 'name' as const })), 'name') ? entry : null;
}
