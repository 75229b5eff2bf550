import { isMap, isScalar } from 'yaml';
import type { Action, Mode, ParentProxy, TlsMode } from './types';
import { readParentProxy } from './parent-schema';
import { parseHostEntry, type HostEntry } from './host-match';
import { displayPattern } from './idn-pattern';
import { NAME_PATTERN, NAME_RULE } from './client-schema';
import { fieldNamed, isMistyped, lineOf, readChoice, readList, readMap, readScalar, readString, readStringList, report } from './yaml-read';
import type { Field, FileContext, Located } from './yaml-read';

/** Inclusive port ranges, or 'any'. */
export type PortSpec = 'any' | ReadonlyArray<readonly [number, number]>;

/** SPEC §2: a rule without `ports` covers plain HTTP and HTTPS only. */
export const DEFAULT_PORTS: PortSpec = [[80, 80], [443, 443]];

export interface RuleSpec {
  name: string;
  /** Line of the rule's `- name:` item. */
  line: number;
  action: Action;
  clients: Array<Located<string>> | null;
  hosts: HostEntry[];
  /** Line of each entry of `hosts`, in the same order (warnings about one entry). */
  hostLines: number[];
  /**
   * The host entries as normalised text, for messages and the admin UI; a pattern written in
   * Unicode reads `münchen.example (xn--mnchen-3ya.example)`: as written, then what is matched.
   */
  hostPatterns: string[];
  ports: PortSpec;
  /** Upper-case. */
  methods: string[] | null;
  paths: string[] | null;
  mode: Mode | null;
  /** `endsAt` is the first instant (ms, UTC) after the expiry day, when the rule stops matching. */
  expires: { date: string; endsAt: number; line: number } | null;
  /** `via: direct` (null parent) or a parent proxy; undefined: follow settings.upstream. */
  via?: { parent: ParentProxy | null };
  /** `tls:`, or null to follow settings.tls. */
  tls: TlsMode | null;
}

export const ACTIONS: readonly Action[] = ['allow', 'deny'];
export const MODES: readonly Mode[] = ['enforce', 'report'];
export const TLS_MODES: readonly TlsMode[] = ['any', 'sni-must-match', 'require', 'inspect'];
const RULE_KEYS = ['name', 'action', 'clients', 'hosts', 'ports', 'methods', 'paths', 'mode', 'expires', 'via', 'tls'] as const;
const PORT_HELP = 'a port is 1-65535, a range like "8000-8999", or write "ports: any"';

/** `via: direct` or a parent proxy URL; absent: the rule follows settings.upstream. */
function readVia(ctx: FileContext, field: Field | undefined, label: string): { parent: ParentProxy | null } | undefined {
  if (field === undefined) return undefined;
  if (isScalar(field.node) && field.node.value === 'direct') return { parent: null };
  const parent = readParentProxy(ctx, field, `${label}: via`);
  return parent === null ? undefined : { parent };
}

function readTls(ctx: FileContext, field: Field | undefined, label: string): TlsMode | null {
  if (field === undefined) return null;
  return readChoice(ctx, field.node, field.line, `${label}: tls`, TLS_MODES);
}

/**
 * `tls: inspect` widens what a rule matches: its CONNECTs are matched on hosts, ports and
 * clients alone. On a deny rule that would refuse whole tunnels its methods and paths were
 * meant to narrow, so it is refused; a deny rule with methods or paths already applies inside
 * the tunnels an allow rule inspects.
 */
function checkInspect(ctx: FileContext, field: Field | undefined, label: string, action: Action | null, tls: TlsMode | null): void {
  if (field === undefined || tls !== 'inspect' || action !== 'deny') return;
  report(ctx, field.line, `${label}: "tls: inspect" belongs on the allow rule that opens the tunnel; a deny rule's methods and paths already apply to every request inside inspected tunnels (drop "tls" here)`);
}

function ruleLabel(node: unknown, index: number): string {
  const name: unknown = isMap(node) ? node.get('name') : undefined;
  return typeof name === 'string' ? `rule "${name}"` : `rule #${index + 1}`;
}

/** Reports a missing required key, unless a typo of it was already reported. */
function missing(ctx: FileContext, rule: RuleNode, key: string, hint: string): null {
  if (!isMistyped(rule.node, key, RULE_KEYS)) report(ctx, rule.line, `${rule.label}: missing "${key}"${hint}`);
  return null;
}

interface RuleNode {
  node: unknown;
  line: number;
  label: string;
}

function readName(ctx: FileContext, field: Field | undefined, rule: RuleNode): string | null {
  if (field === undefined) return missing(ctx, rule, 'name', '; every rule needs a unique name');
  const label = rule.label;
  const name = readString(ctx, field.node, field.line, `${label}: name`);
  if (name === null || NAME_PATTERN.test(name.value)) return name?.value ?? null;
  return fail(ctx, name.line, `${label}: the name may hold only ${NAME_RULE} characters`);
}

function fail(ctx: FileContext, line: number, message: string): null {
  report(ctx, line, message);
  return null;
}

function readHosts(ctx: FileContext, field: Field | undefined, rule: RuleNode): Array<Located<HostEntry>> | null {
  if (field === undefined) return missing(ctx, rule, 'hosts', '; use ["**"] for every name (IP literals need "0.0.0.0/0", "::/0")');
  const label = rule.label;
  const entries: Array<Located<HostEntry>> = [];
  for (const item of readStringList(ctx, field.node, field.line, `${label}: hosts`) ?? []) {
    const parsed = parseHostEntry(item.value);
    if (parsed.ok) entries.push({ value: parsed.entry, line: item.line });
    else report(ctx, item.line, `${label}: ${parsed.message}`);
  }
  return entries;
}

function parsePort(value: unknown): readonly [number, number] | null {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string') return null;
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!match) return null;
  const low = Number(match[1]);
  const high = match[2] === undefined ? low : Number(match[2]);
  return low >= 1 && high <= 65535 && low <= high ? [low, high] : null;
}

function readPorts(ctx: FileContext, field: Field | undefined, label: string): PortSpec {
  if (field === undefined) return DEFAULT_PORTS;
  const what = `${label}: ports`;
  if (isScalar(field.node) && field.node.value === 'any') return 'any';
  const items = readList(ctx, field.node, field.line, what) ?? [];
  const ports: Array<readonly [number, number]> = [];
  for (const item of items) {
    const value = readScalar(ctx, item, field.line, `${what} entry`);
    const port = value === null ? null : parsePort(value.value);
    if (port !== null) ports.push(port);
    else if (value !== null) report(ctx, value.line, `${what}: bad port ${JSON.stringify(value.value)}; ${PORT_HELP}`);
  }
  return ports;
}

function readMethods(ctx: FileContext, field: Field | undefined, label: string): string[] | null {
  if (field === undefined) return null;
  const methods = new Set<string>();
  for (const item of readStringList(ctx, field.node, field.line, `${label}: methods`) ?? []) {
    const method = item.value.toUpperCase();
    if (method === 'CONNECT') {
      report(ctx, item.line, `${label}: rules with "methods" apply to plain HTTP only, so CONNECT never matches; to match tunnels, drop "methods"`);
    } else if (!/^[A-Z]+$/.test(method)) {
      report(ctx, item.line, `${label}: ${JSON.stringify(item.value)} is not an HTTP method (e.g. GET, HEAD, POST)`);
    } else {
      methods.add(method);
    }
  }
  return [...methods];
}

function readPaths(ctx: FileContext, field: Field | undefined, label: string): string[] | null {
  if (field === undefined) return null;
  const paths: string[] = [];
  for (const item of readStringList(ctx, field.node, field.line, `${label}: paths`) ?? []) {
    if (!item.value.startsWith('/')) report(ctx, item.line, `${label}: path pattern "${item.value}" must start with "/", e.g. "/${item.value}"`);
    else if (/\s|[?#]/.test(item.value)) report(ctx, item.line, `${label}: path pattern "${item.value}" may not hold spaces, "?" or "#" (paths are matched without the query string)`);
    else paths.push(item.value);
  }
  return paths;
}

/** The rule matches through the end of its expiry day in UTC, and not after. */
function readExpires(ctx: FileContext, field: Field | undefined, label: string): RuleSpec['expires'] {
  if (field === undefined) return null;
  const scalar = readScalar(ctx, field.node, field.line, `${label}: expires`);
  if (scalar === null) return null;
  const match = typeof scalar.value === 'string' ? /^(\d{4})-(\d{2})-(\d{2})$/.exec(scalar.value) : null;
  const [year, month, day] = (match ?? []).slice(1).map(Number);
  const start = year === undefined || month === undefined || day === undefined ? NaN : Date.UTC(year, month - 1, day);
  if (Number.isNaN(start) || new Date(start).toISOString().slice(0, 10) !== scalar.value) {
    return fail(ctx, scalar.line, `${label}: expires must be a date written YYYY-MM-DD, e.g. 2026-12-31; got ${JSON.stringify(scalar.value)}`);
  }
  return { date: String(scalar.value), endsAt: start + 24 * 60 * 60 * 1000, line: scalar.line };
}

function readRule(ctx: FileContext, rule: RuleNode): RuleSpec | null {
  const { node, line, label } = rule;
  const fields = readMap(ctx, node, line, label, { known: RULE_KEYS });
  if (fields === null) return null;
  const field = (key: string): Field | undefined => fieldNamed(fields, key);
  const name = readName(ctx, field('name'), rule);
  const actionField = field('action');
  const action = actionField === undefined
    ? missing(ctx, rule, 'action', ' (allow or deny)')
    : readChoice(ctx, actionField.node, actionField.line, `${label}: action`, ACTIONS);
  const hosts = readHosts(ctx, field('hosts'), rule);
  const clients = field('clients');
  const mode = field('mode');
  const parts = {
    line,
    clients: clients === undefined ? null : readStringList(ctx, clients.node, clients.line, `${label}: clients`),
    ports: readPorts(ctx, field('ports'), label),
    methods: readMethods(ctx, field('methods'), label),
    paths: readPaths(ctx, field('paths'), label),
    mode: mode === undefined ? null : readChoice(ctx, mode.node, mode.line, `${label}: mode`, MODES),
    expires: readExpires(ctx, field('expires'), label),
    via: readVia(ctx, field('via'), label),
    tls: readTls(ctx, field('tls'), label),
  };
  checkInspect(ctx, field('tls'), label, action, parts.tls);
  if (name === null || action === null || hosts === null) return null;
  const entries = hosts.map((h) => h.value);
  return { ...parts, name, action, hosts: entries, hostLines: hosts.map((h) => h.line), hostPatterns: entries.map(hostText) };
}

function hostText(entry: HostEntry): string {
  return entry.kind === 'name' ? displayPattern(entry.pattern, entry.written) : entry.range.cidr;
}

export function readRules(ctx: FileContext, field: Field): RuleSpec[] {
  const items = readList(ctx, field.node, field.line, 'rules', true) ?? [];
  const rules: RuleSpec[] = [];
  items.forEach((item, index) => {
    const rule = readRule(ctx, { node: item, line: lineOf(ctx, item, field.line), label: ruleLabel(item, index) });
    if (rule !== null) rules.push(rule);
  });
  return rules;
}
