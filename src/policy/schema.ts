import { LineCounter, parseDocument } from 'yaml';
import type { Action, AuthMode, Mode, ParentProxy, TlsMode } from './types';
import { readParentProxy } from './parent-schema';
import type { Problem } from './problems';
import { ACTIONS, MODES, readRules, TLS_MODES, type RuleSpec } from './rule-schema';
import { readClients, type ClientSpec } from './client-schema';
import { fieldNamed, readChoice, readMap, readRanges, readScalar, report } from './yaml-read';
import type { Field, FileContext, RangeSpec } from './yaml-read';

/**
 * The policy file format (SPEC §2) and its strict validation: every unknown key, bad value and
 * impossible combination is a Problem at FILE:LINE; nothing is silently ignored, since a typo a
 * loose loader skipped (`hots:`) would quietly widen or narrow what a rule allows.
 * One file is validated here; checks that span files live in policy-set-checks.ts.
 */
export type { RuleSpec, PortSpec } from './rule-schema';
export { ACTIONS, MODES, DEFAULT_PORTS } from './rule-schema';
export type { ClientSpec } from './client-schema';
export type { RangeSpec } from './yaml-read';

export const POLICY_VERSION = 1;

export interface SettingsSpec {
  /** Line of the `settings:` key. */
  line: number;
  default: Action;
  /** Line of the `default:` key, or null when the default is implied. */
  defaultLine: number | null;
  mode: Mode;
  auth: AuthMode;
  /** `settings.upstream`, parsed, or null. */
  upstream: ParentProxy | null;
  tls: TlsMode;
}

export interface NetworkSpec {
  allowRanges: RangeSpec[];
  denyRanges: RangeSpec[];
  parentRanges: RangeSpec[];
}

export interface PolicyFileSpec {
  file: string;
  settings: SettingsSpec | null;
  network: NetworkSpec;
  clients: ClientSpec[];
  rules: RuleSpec[];
}

const TOP_LEVEL = ['version', 'settings', 'network', 'clients', 'rules'] as const;
const SETTINGS_KEYS = ['default', 'mode', 'auth', 'upstream', 'tls'] as const;
export const AUTH_MODES: readonly AuthMode[] = ['off', 'optional', 'required'];
const NETWORK_KEYS = ['allow_ranges', 'deny_ranges', 'parent_ranges'] as const;

function readSettings(ctx: FileContext, field: Field): SettingsSpec | null {
  const fields = readMap(ctx, field.node, field.line, 'settings', { known: SETTINGS_KEYS });
  if (fields === null) return null;
  const def = fieldNamed(fields, 'default');
  const mode = fieldNamed(fields, 'mode');
  const auth = fieldNamed(fields, 'auth');
  const upstream = fieldNamed(fields, 'upstream');
  const tls = fieldNamed(fields, 'tls');
  return {
    tls: tls === undefined ? 'any' : (readChoice(ctx, tls.node, tls.line, 'settings.tls', TLS_MODES) ?? 'any'),
    auth: auth === undefined ? 'off' : (readChoice(ctx, auth.node, auth.line, 'settings.auth', AUTH_MODES) ?? 'off'),
    upstream: upstream === undefined ? null : readParentProxy(ctx, upstream, 'settings.upstream'),
    line: field.line,
    default: def === undefined ? 'deny' : (readChoice(ctx, def.node, def.line, 'settings.default', ACTIONS) ?? 'deny'),
    defaultLine: def?.line ?? null,
    mode: mode === undefined ? 'enforce' : (readChoice(ctx, mode.node, mode.line, 'settings.mode', MODES) ?? 'enforce'),
  };
}

function readNetwork(ctx: FileContext, field: Field | undefined): NetworkSpec {
  const network = emptyNetwork();
  if (field === undefined) return network;
  for (const f of readMap(ctx, field.node, field.line, 'network', { known: NETWORK_KEYS }) ?? []) {
    const ranges = readRanges(ctx, f.node, f.line, `network.${f.key}`, true);
    if (f.key === 'allow_ranges') network.allowRanges = ranges;
    else if (f.key === 'parent_ranges') network.parentRanges = ranges;
    else network.denyRanges = ranges;
  }
  return network;
}

function emptyNetwork(): NetworkSpec {
  return { allowRanges: [], denyRanges: [], parentRanges: [] };
}

function checkVersion(ctx: FileContext, field: Field | undefined): void {
  if (field === undefined) {
    report(ctx, 1, `missing "version"; start the file with "version: ${POLICY_VERSION}"`);
    return;
  }
  const scalar = readScalar(ctx, field.node, field.line, 'version');
  if (scalar !== null && scalar.value !== POLICY_VERSION) {
    report(ctx, scalar.line, `version must be ${POLICY_VERSION}, got ${JSON.stringify(scalar.value)}`);
  }
}

/** yaml's messages carry no file name; keep the first line and point at where it happened. */
function syntaxProblems(ctx: FileContext, errors: ReadonlyArray<{ message: string; pos: [number, number] }>): void {
  for (const error of errors) {
    const message = error.message.split('\n')[0] ?? error.message;
    report(ctx, ctx.lines.linePos(error.pos[0]).line, `YAML syntax: ${message}`);
  }
}

function readDocument(ctx: FileContext, text: string): unknown {
  const doc = parseDocument(text, { lineCounter: ctx.lines, prettyErrors: false, uniqueKeys: true });
  syntaxProblems(ctx, doc.errors);
  if (doc.errors.length > 0) return undefined;
  if (doc.contents === null) report(ctx, 1, `the file is empty; start it with "version: ${POLICY_VERSION}"`);
  return doc.contents ?? undefined;
}

/** Validates one file. `spec` is meaningful only when `problems` is empty. */
export function parsePolicyFile(file: string, text: string): { spec: PolicyFileSpec; problems: Problem[] } {
  const ctx: FileContext = { file, lines: new LineCounter(), problems: [] };
  const spec: PolicyFileSpec = { file, settings: null, network: emptyNetwork(), clients: [], rules: [] };
  const contents = readDocument(ctx, text);
  if (contents === undefined) return { spec, problems: ctx.problems };
  const fields = readMap(ctx, contents, 1, 'top level', { known: TOP_LEVEL });
  if (fields === null) return { spec, problems: ctx.problems };
  checkVersion(ctx, fieldNamed(fields, 'version'));
  const settings = fieldNamed(fields, 'settings');
  spec.settings = settings === undefined ? null : readSettings(ctx, settings);
  spec.network = readNetwork(ctx, fieldNamed(fields, 'network'));
  const clients = fieldNamed(fields, 'clients');
  spec.clients = clients === undefined ? [] : readClients(ctx, clients);
  const rules = fieldNamed(fields, 'rules');
  spec.rules = rules === undefined ? [] : readRules(ctx, rules);
  return { spec, problems: ctx.problems };
}

