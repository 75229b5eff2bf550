import { destinationOf } from '../replay/tally';
import { exactEntry, familyOf, globEntry } from './host-entries';
import type { LeftOutTally } from './classify';
import { methodList, pathPatterns } from './path-patterns';
import { ruleNames } from './rule-names';
import type { Observed } from './types';

/**
 * Observed destinations -> allow rules. One rule per client group and destination family
 * (registrable domain, or IP literal), split further only where one rule would be wider than the
 * traffic: hosts seen on different ports, or (--with-paths) with different methods and paths, get
 * rules of their own, so `ports` are exactly the ports each host was seen on. A `**.` glob
 * (host-entries.ts) takes the union of its subdomains' ports, as it already stands for the family.
 */
export interface SuggestedRule {
  name: string;
  /** The client group, or null: every client. */
  group: string | null;
  family: string;
  hosts: string[];
  ports: number[];
  methods: string[] | null;
  paths: string[] | null;
  requests: number;
  /** Distinct host:port destinations it is written for. */
  destinations: number;
  clientIps: Set<string>;
  lastSeenMs: number;
  /** For a `**.` glob: the distinct hosts it stands for. */
  globOf: string[] | null;
  ipLiteral: boolean;
  /** --by client-group, for clients in no group: the rule is for every client. */
  ungrouped: boolean;
}

interface HostEntry {
  entry: string;
  seen: Observed[];
  globOf: string[] | null;
}

const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Drops destinations seen fewer than `min` times (per group, over both HTTP flavours). */
function applyMinimum(observed: readonly Observed[], min: number, leftOut: LeftOutTally): Observed[] {
  const totals = new Map<string, number>();
  const key = (o: Observed): string => JSON.stringify([o.group, o.host, o.port]);
  for (const o of observed) totals.set(key(o), (totals.get(key(o)) ?? 0) + o.requests);
  return observed.filter((o) => {
    if ((totals.get(key(o)) ?? 0) >= min) return true;
    leftOut.add('below_min_requests', destinationOf(o), o.requests, '(default)');
    return false;
  });
}

/** The family's host entries: one glob, or an exact entry per host; hosts the policy cannot express are left out. */
function hostEntries(family: string, seen: readonly Observed[], leftOut: LeftOutTally): HostEntry[] {
  const valid: Observed[] = [];
  const byHost = new Map<string, HostEntry>();
  for (const o of seen) {
    const entry = exactEntry(o.host, o.hostKind);
    if (entry === null) {
      leftOut.add('invalid_host', destinationOf(o), o.requests, '(default)');
      continue;
    }
    valid.push(o);
    const item = byHost.get(entry) ?? { entry, seen: [], globOf: null };
    item.seen.push(o);
    byHost.set(entry, item);
  }
  const names = [...new Set(valid.filter((o) => o.hostKind === 'name').map((o) => o.host))].sort(byText);
  const glob = valid.every((o) => o.hostKind === 'name') ? globEntry(family, names) : null;
  if (glob !== null) return [{ entry: glob, seen: valid, globOf: names }];
  return [...byHost.values()].sort((a, b) => byText(a.entry, b.entry));
}

/** What must be equal for host entries to share a rule without widening it. */
function shapeOf(entry: HostEntry, http: boolean): { ports: number[]; methods: string[] | null; paths: string[] | null } {
  const ports = [...new Set(entry.seen.map((o) => o.port))].sort((a, b) => a - b);
  if (!http) return { ports, methods: null, paths: null };
  const methods = new Set(entry.seen.flatMap((o) => [...o.methods]));
  const paths = new Set(entry.seen.flatMap((o) => [...o.paths]));
  return { ports, methods: methodList(methods), paths: pathPatterns(paths) };
}

function ruleFor(group: string | null, family: string, entries: HostEntry[], shape: ReturnType<typeof shapeOf>): Omit<SuggestedRule, 'name' | 'ungrouped'> {
  const seen = entries.flatMap((e) => e.seen);
  const clientIps = new Set(seen.flatMap((o) => [...o.clientIps]));
  return {
    group, family, hosts: entries.map((e) => e.entry), ...shape,
    requests: seen.reduce((sum, o) => sum + o.requests, 0),
    destinations: new Set(seen.map((o) => destinationOf(o))).size,
    clientIps,
    lastSeenMs: Math.max(...seen.map((o) => o.lastSeenMs)),
    globOf: entries.find((e) => e.globOf !== null)?.globOf ?? null,
    ipLiteral: seen.some((o) => o.hostKind !== 'name'),
  };
}

/** One bucket (group, family, HTTP flavour) -> its rules, split by equal ports (methods, paths). */
function bucketRules(group: string | null, family: string, http: boolean, seen: Observed[], leftOut: LeftOutTally): Array<Omit<SuggestedRule, 'name' | 'ungrouped'>> {
  const partitions = new Map<string, { shape: ReturnType<typeof shapeOf>; entries: HostEntry[] }>();
  for (const entry of hostEntries(family, seen, leftOut)) {
    const shape = shapeOf(entry, http);
    const key = JSON.stringify(shape);
    const partition = partitions.get(key) ?? { shape, entries: [] };
    partition.entries.push(entry);
    partitions.set(key, partition);
  }
  return [...partitions.values()].map((p) => ruleFor(group, family, p.entries, p.shape));
}

/**
 * The rules for everything observed, in client-group order (policy order, every-client rules
 * last), then by family. `groupOrder` is the policy's client groups; `taken` its rule names;
 * `byGroup`: --by client-group (an every-client rule is then named `ungrouped-…`).
 */
export function buildRules(
  observed: readonly Observed[],
  options: { minRequests: number; byGroup: boolean; groupOrder: readonly string[]; taken: ReadonlySet<string> },
  leftOut: LeftOutTally,
): SuggestedRule[] {
  const buckets = new Map<string, { group: string | null; family: string; http: boolean; seen: Observed[] }>();
  for (const o of applyMinimum(observed, options.minRequests, leftOut)) {
    const family = familyOf(o.host, o.hostKind);
    const key = JSON.stringify([o.group, family, o.http]);
    const bucket = buckets.get(key) ?? { group: o.group, family, http: o.http, seen: [] };
    bucket.seen.push(o);
    buckets.set(key, bucket);
  }
  const rank = (group: string | null): number => (group === null ? options.groupOrder.length : options.groupOrder.indexOf(group));
  const ordered = [...buckets.values()].sort(
    (a, b) => rank(a.group) - rank(b.group) || byText(a.family, b.family) || Number(a.http) - Number(b.http),
  );
  const rules = ordered.flatMap((b) => bucketRules(b.group, b.family, b.http, b.seen, leftOut).map((rule) => ({ rule, http: b.http })));
  const names = ruleNames(rules.map(({ rule, http }) => ({ group: rule.group, family: rule.family, ipLiteral: rule.ipLiteral, http, grouped: options.byGroup })), options.taken);
  return rules.map(({ rule }, i) => ({ ...rule, name: names[i], ungrouped: options.byGroup && rule.group === null }));
}
