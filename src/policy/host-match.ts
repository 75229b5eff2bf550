import { domainToASCII } from 'node:url';
import { isIP } from 'node:net';
import { Minimatch } from 'minimatch';
import type { HostKind } from '../request/target-types';
import { patternToPunycode } from './idn-pattern';
import { looksLikeIp, parseLiteral, parseRange, rangeContains, type IpRange } from './ip-range';

/**
 * Host patterns. A name pattern is a glob over dot-separated labels, matched by minimatch on
 * the name with dots turned into slashes (`a.b.example.com` -> `a/b/example/com`), so `*` is
 * exactly one label and `**` any number of labels including none. Only the wildcards `*`,
 * `**` and `?` are accepted: braces, classes, extglobs and negation are refused at load time
 * rather than half-supported. An entry that reads as an address (it contains ":" or ends in a
 * number, WHATWG URL §3.5) is an IP or CIDR entry; IPv4 legacy spellings (`0x7f.1`, `127.1`,
 * `2130706433`, `0177.0.0.1`) are canonicalised exactly as target parsing does. A name written
 * in Unicode is matched in punycode (idn-pattern.ts).
 */
export type HostEntry =
  /** `written`: the Unicode form when the pattern was written in Unicode (display, warnings). */
  | { kind: 'name'; pattern: string; written?: string }
  | { kind: 'range'; range: IpRange };

export type HostEntryParse = { ok: true; entry: HostEntry } | { ok: false; message: string };

/** Everything one rule needs to match a host, compiled once at load. */
export interface HostMatcher {
  /** Patterns without wildcards: a set lookup instead of a glob. */
  exactNames: ReadonlySet<string>;
  globs: readonly HostGlob[];
  ranges: readonly IpRange[];
}

/**
 * A compiled name glob. `suffix` is its trailing literal labels (`pastebin.com` for
 * `**.pastebin.com`): every name the glob matches ends with it, so a cheap string test skips
 * minimatch for almost every rule a host cannot match.
 */
export interface HostGlob {
  suffix: string;
  glob: Minimatch;
}

/** A request's host prepared once per request, shared by every rule it is tested against. */
export interface HostView {
  /** The normalised name, or null for an IP literal. */
  name: string | null;
  /** The name with dots as slashes, for minimatch; null for IP literals and malformed names. */
  globPath: string | null;
  ip: ReturnType<typeof parseLiteral>;
}

const GLOB_OPTIONS = { dot: true, nobrace: true, noext: true, nonegate: true, nocomment: true } as const;
const LABEL = /^[a-z0-9_*?-]+$/;
const PLAIN_NAME = /^[a-z0-9_.-]+$/;

/** Lower-case, one trailing dot dropped, IDN labels in punycode (SPEC §2). */
export function normalizeHostName(host: string): string {
  const lower = host.toLowerCase();
  const trimmed = lower.endsWith('.') ? lower.slice(0, -1) : lower;
  if (PLAIN_NAME.test(trimmed)) return trimmed;
  const ascii = domainToASCII(trimmed);
  return ascii === '' ? trimmed : ascii;
}

function checkLabels(pattern: string): string | null {
  for (const label of pattern.split('.')) {
    if (label === '') return `host pattern "${pattern}" has an empty label`;
    if (label === '**') continue;
    if (!LABEL.test(label)) {
      return `host pattern "${pattern}": only letters, digits, "-", "_" and the wildcards "*", "**" and "?" are allowed`;
    }
    if (label.includes('**')) return `host pattern "${pattern}": "**" must be a whole label, as in "**.example.com"`;
  }
  return null;
}

function parseNamePattern(raw: string): HostEntryParse {
  const lower = raw.toLowerCase();
  const pattern = lower.endsWith('.') ? lower.slice(0, -1) : lower;
  if (pattern === '') return { ok: false, message: 'empty host pattern' };
  const converted = patternToPunycode(pattern);
  if (!converted.ok) return converted;
  const problem = checkLabels(converted.pattern);
  if (problem !== null) {
    // Messages name the pattern as the author wrote it, not its punycode.
    return { ok: false, message: converted.pattern === pattern ? problem : problem.replace(`"${converted.pattern}"`, `"${raw}"`) };
  }
  const { written } = converted;
  return { ok: true, entry: written === null ? { kind: 'name', pattern: converted.pattern } : { kind: 'name', pattern: converted.pattern, written } };
}

/** Catches the two most common slips, a URL or a host:port, before they read as bad IPv6. */
function misplacedSyntax(raw: string): string | null {
  const url = /^[a-z][a-z0-9+.-]*:\/\/([^/:]*)/i.exec(raw);
  if (url) return `host "${raw}" is a URL; write the host only: "${url[1] ?? ''}"`;
  const hostPort = /^([^:[\]]+):(\d+)$/.exec(raw);
  if (hostPort) return `host "${raw}" has a port; write "${hostPort[1] ?? ''}" and put ${hostPort[2] ?? ''} in "ports"`;
  return null;
}

export function parseHostEntry(raw: string): HostEntryParse {
  const slip = misplacedSyntax(raw);
  if (slip !== null) return { ok: false, message: slip };
  if (!looksLikeIp(raw)) return parseNamePattern(raw);
  if (/[*?]/.test(raw)) return { ok: false, message: `"${raw}": IP entries take no wildcards; use a CIDR such as "10.0.0.0/8"` };
  const parsed = parseRange(raw);
  return parsed.ok ? { ok: true, entry: { kind: 'range', range: parsed.range } } : parsed;
}

function compileGlob(pattern: string): HostGlob {
  const literal: string[] = [];
  for (const label of pattern.split('.').reverse()) {
    if (/[*?]/.test(label)) break;
    literal.unshift(label);
  }
  return { suffix: literal.join('.'), glob: new Minimatch(pattern.replaceAll('.', '/'), GLOB_OPTIONS) };
}

function globMatches({ suffix, glob }: HostGlob, name: string, path: string): boolean {
  if (suffix !== '' && name !== suffix && !name.endsWith(`.${suffix}`)) return false;
  return glob.match(path);
}

export function compileHostMatcher(entries: readonly HostEntry[]): HostMatcher {
  const exactNames = new Set<string>();
  const globs: HostGlob[] = [];
  const ranges: IpRange[] = [];
  for (const entry of entries) {
    if (entry.kind === 'range') ranges.push(entry.range);
    else if (/[*?]/.test(entry.pattern)) globs.push(compileGlob(entry.pattern));
    else exactNames.add(entry.pattern);
  }
  return { exactNames, globs, ranges };
}

/**
 * Trusts the target's hostKind but double-checks with net.isIP, so that a name that is really
 * an IP literal can never be matched by a name pattern.
 */
export function viewHost(host: string, hostKind: HostKind): HostView {
  if (hostKind !== 'name' || isIP(host) !== 0) {
    return { name: null, globPath: null, ip: parseLiteral(host) };
  }
  const name = normalizeHostName(host);
  const wellFormed = name !== '' && !name.split('.').includes('') && !/[/\\]/.test(name);
  return { name, globPath: wellFormed ? name.replaceAll('.', '/') : null, ip: null };
}

export function hostMatches(matcher: HostMatcher, view: HostView): boolean {
  if (view.ip !== null) {
    const ip = view.ip;
    return matcher.ranges.some((range) => rangeContains(range, ip));
  }
  if (view.name === null || view.globPath === null) return false;
  if (matcher.exactNames.has(view.name)) return true;
  const { name, globPath } = view;
  return matcher.globs.some((glob) => globMatches(glob, name, globPath));
}

/**
 * Patterns with a wildcard and fewer than two literal labels (`**`, `*`, `**.com`) match a
 * whole top-level domain or more: worth a warning from `policy check`, not an error.
 */
export function isOverBroad(pattern: string): boolean {
  const labels = pattern.split('.');
  const literal = labels.filter((label) => !/[*?]/.test(label)).length;
  return literal < 2 && literal < labels.length;
}
