import { parseParentProxy } from './parent-url';
import type { ParentProxy } from './types';
import { readString, report } from './yaml-read';
import type { Field, FileContext } from './yaml-read';

/** A parent proxy URL (`settings.upstream`, a rule's `via`), checked at load. */
export function readParentProxy(ctx: FileContext, field: Field, what: string): ParentProxy | null {
  const text = readString(ctx, field.node, field.line, what);
  if (text === null) return null;
  try {
    return parseParentProxy(text.value);
  } catch (err) {
    report(ctx, text.line, `${what}: ${(err as Error).message}`);
    return null;
  }
}

