import { EntryDecodeError, readEntryHead } from './entry-decode';
import type { EntryHead } from './entry-decode';
import { scanSegment } from './segment-scan';

/**
 * The heads (type, id, time) of one segment's readable record entries (chain checkpoints are
 * not records: they are passed over) from `startOffset`, without
 * parsing their JSON: all that retention and the index lag need. Damage and entries that do not
 * decode are passed over here; the reader is the one that reports them.
 */
export function* entryHeads(file: string, startOffset = 0): Generator<EntryHead> {
  for (const item of scanSegment(file, startOffset)) {
    if (item.kind !== 'frame') continue;
    let head: EntryHead;
    try {
      head = readEntryHead(item.payload);
    } catch (err) {
      if (!(err instanceof EntryDecodeError)) throw err;
      continue;
    }
    if (head.type !== 'head') yield head;
  }
}
