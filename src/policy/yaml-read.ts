import { isAlias, isMap, isScalar, isSeq, type LineCounter } from 'yaml';
import { closestName, suggestion } from './closest-name';
import { parseRange, type IpRange } from './ip-range';
import type { Problem } from './problems';

/**
 * Small readers over the YAML syntax tree that keep every value's line number and report each
 * problem as it is found, so validation can go on and list every problem in one pass.
 */
export interface FileContext {
  file: string;
  lines: LineCounter;
  problems: Problem[];
}

/** One key of a mapping: its name, the line of the key, and the value node. */
export interface Field {
  key: string;
  line: number;
  node: unknown;
}

export interface Located<T> {
  value: T;
  line: number;
}

export function lineOf(ctx: FileContext, node: unknown, fallback = 1): number {
  if (typeof node !== 'object' || node === null || !('range' in node)) return fallback;
  const range: unknown = node.range;
  if (!Array.isArray(range) || typeof range[0] !== 'number') return fallback;
  return ctx.lines.linePos(range[0]).line;
}

export function report(ctx: FileContext, line: number, message: string): void {
  ctx.problems.push({ file: ctx.file, line, message });
}

/** Aliases would let a value come from elsewhere in the file; an unquoted `*.x` is one too. */
function refuseAlias(ctx: FileContext, node: unknown, line: number, what: string): boolean {
  if (!isAlias(node)) return false;
  report(ctx, lineOf(ctx, node, line), `${what}: YAML aliases are not supported; quote values that start with "*", e.g. "*${node.source}"`);
  return true;
}

export interface MapShape {
  known: readonly string[];
  /** Keys that are recognised but not supported yet, with the message explaining so. */
  notYet?: Readonly<Record<string, string>>;
}

/** Reads a mapping, reporting unknown keys with the closest known key as a hint. */
export function readMap(ctx: FileContext, node: unknown, line: number, what: string, shape: MapShape): Field[] | null {
  if (refuseAlias(ctx, node, line, what)) return null;
  if (!isMap(node)) {
    report(ctx, lineOf(ctx, node, line), `${what} must be a mapping of keys to values`);
    return null;
  }
  const fields: Field[] = [];
  for (const pair of node.items) {
    const keyLine = lineOf(ctx, pair.key, line);
    const key = isScalar(pair.key) ? pair.key.value : undefined;
    if (typeof key !== 'string') {
      report(ctx, keyLine, `${what}: keys must be plain words`);
    } else if (shape.notYet?.[key] !== undefined) {
      report(ctx, keyLine, `${what}: ${shape.notYet[key]}`);
    } else if (!shape.known.includes(key)) {
      report(ctx, keyLine, `${what}: unknown key "${key}"${suggestion(key, shape.known)}`);
    } else {
      fields.push({ key, line: keyLine, node: pair.value });
    }
  }
  return fields;
}

/**
 * True when the mapping has an unknown key that looks like a typo of `key`: the typo is
 * already reported, so a second "missing key" message would only be noise.
 */
export function isMistyped(node: unknown, key: string, known: readonly string[]): boolean {
  if (!isMap(node)) return false;
  return node.items.some((pair) => {
    const written = isScalar(pair.key) ? pair.key.value : undefined;
    return typeof written === 'string' && !known.includes(written) && closestName(written, known) === key;
  });
}

export function fieldNamed(fields: readonly Field[], key: string): Field | undefined {
  return fields.find((f) => f.key === key);
}

function typeName(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  return Array.isArray(value) ? 'a list' : `a ${typeof value}`;
}

/** A scalar's value with its line, or null (reported) when the node is not a scalar. */
export function readScalar(ctx: FileContext, node: unknown, line: number, what: string): Located<unknown> | null {
  if (refuseAlias(ctx, node, line, what)) return null;
  if (!isScalar(node)) {
    const shape = isMap(node) ? 'a mapping' : isSeq(node) ? 'a list' : 'nothing';
    report(ctx, lineOf(ctx, node, line), `${what} must be a single value, got ${shape}`);
    return null;
  }
  return { value: node.value, line: lineOf(ctx, node, line) };
}

export function readString(ctx: FileContext, node: unknown, line: number, what: string): Located<string> | null {
  const scalar = readScalar(ctx, node, line, what);
  if (scalar === null) return null;
  if (typeof scalar.value === 'string' && scalar.value !== '') return { value: scalar.value, line: scalar.line };
  report(ctx, scalar.line, `${what} must be a non-empty string, got ${typeName(scalar.value)}`);
  return null;
}

/**
 * A list's items, or null (reported). Empty lists are refused unless allowed: an empty `hosts`
 * or `ports` is a rule that can never match, which is never what the author meant.
 */
export function readList(ctx: FileContext, node: unknown, line: number, what: string, allowEmpty = false): unknown[] | null {
  if (refuseAlias(ctx, node, line, what)) return null;
  if (!isSeq(node)) {
    const single = isScalar(node) && node.value !== null ? `; write [${String(node.value)}] for a single value` : ', e.g. [a, b]';
    report(ctx, lineOf(ctx, node, line), `${what} must be a list${single}`);
    return null;
  }
  if (node.items.length === 0 && !allowEmpty) {
    report(ctx, lineOf(ctx, node, line), `${what} must not be empty`);
    return null;
  }
  return node.items;
}

export function readStringList(
  ctx: FileContext,
  node: unknown,
  line: number,
  what: string,
  allowEmpty = false,
): Array<Located<string>> | null {
  const items = readList(ctx, node, line, what, allowEmpty);
  if (items === null) return null;
  const strings: Array<Located<string>> = [];
  for (const item of items) {
    const value = readString(ctx, item, line, `${what} entry`);
    if (value !== null) strings.push(value);
  }
  return strings.length === items.length ? strings : null;
}

export interface RangeSpec {
  range: IpRange;
  line: number;
}

/** Reads one of a fixed set of words, e.g. allow|deny. */
export function readChoice<T extends string>(
  ctx: FileContext,
  node: unknown,
  line: number,
  what: string,
  choices: readonly T[],
): T | null {
  const scalar = readScalar(ctx, node, line, what);
  if (scalar === null) return null;
  const found = choices.find((c) => c === scalar.value);
  if (found !== undefined) return found;
  const close = typeof scalar.value === 'string' ? closestName(scalar.value, choices) : null;
  const hint = close === null ? '' : `; did you mean "${close}"?`;
  report(ctx, scalar.line, `${what} must be ${choices.join(' or ')}, got ${JSON.stringify(scalar.value)}${hint}`);
  return null;
}

export function readRanges(ctx: FileContext, node: unknown, line: number, what: string, allowEmpty: boolean): RangeSpec[] {
  const ranges: RangeSpec[] = [];
  for (const entry of readStringList(ctx, node, line, what, allowEmpty) ?? []) {
    const parsed = parseRange(entry.value);
    if (parsed.ok) ranges.push({ range: parsed.range, line: entry.line });
    else report(ctx, entry.line, `${what}: ${parsed.message}`);
  }
  return ranges;
}
