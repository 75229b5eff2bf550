import type { BatchOutcome, CompletionEntry } from '../../src/audit/connection';
import type { NewEntry } from '../../src/audit/log/entry-codec';
import type { AuditOpen } from '../../src/audit/record-types';

/** One batch as the log's appendBatch takes it: the opens (ids assigned by the log), then the completions. */
export function logBatch(opens: readonly AuditOpen[], completions: readonly CompletionEntry[]): NewEntry[] {
  return [
    ...opens.map((open) => ({ type: 'open' as const, open })),
    ...completions.map(([id, completion]) => ({ type: 'complete' as const, id, completion })),
  ];
}

/** The ids commitBatch gave the opens; a bench stops at the first record that failed. */
export function committedIds(result: BatchOutcome): number[] {
  return result.ids.map((id) => {
    if (typeof id !== 'number') throw id;
    return id;
  });
}
