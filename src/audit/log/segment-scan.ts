import fs from 'node:fs';
import {
  checkFrame, FRAME_HEADER_BYTES, FRAME_SYNC, headerProblem, MAX_PAYLOAD_BYTES, SEGMENT_HEADER_BYTES,
} from './frame';

/**
 * Walks one segment file frame by frame, without trusting any byte it has not checked. What is
 * not a whole frame with a matching checksum is damage: reported with its offset and the reason
 * found at its start, then skipped by searching for the next frame marker at which a whole,
 * checksummed frame begins. Why search rather than give up on the rest of the segment: after a
 * power cut the kernel may have written back a later page of the file and not an earlier one, so
 * good, acknowledged entries can follow a zeroed hole; the CRC makes finding them safe.
 */

export type ScanItem =
  | { kind: 'frame'; offset: number; end: number; payload: Buffer }
  | { kind: 'damage'; offset: number; length: number; reason: string; toEnd: boolean };

const CHUNK_BYTES = 1 << 20;

/** Reads a file through one reusable window, so a scan costs a read per megabyte, not per frame. */
class FileWindow {
  private buffer = Buffer.alloc(0);
  private start = 0;

  constructor(private readonly fd: number, readonly size: number) {}

  /** The file's bytes [at, at + n), fewer at the end of the file; valid until the next call. */
  bytes(at: number, n: number): Buffer {
    const want = Math.min(n, this.size - at);
    if (want <= 0) return Buffer.alloc(0);
    const from = at - this.start;
    if (from < 0 || from + want > this.buffer.length) {
      this.fill(at, Math.min(Math.max(want, CHUNK_BYTES), this.size - at));
      return this.buffer.subarray(0, want);
    }
    return this.buffer.subarray(from, from + want);
  }

  private fill(at: number, n: number): void {
    const buffer = this.buffer.length >= n ? this.buffer : Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const read = fs.readSync(this.fd, buffer, got, n - got, at + got);
      if (read === 0) break;
      got += read;
    }
    // A file that shrank under us (a writer truncating a torn tail) reads as ending here.
    this.buffer = buffer.subarray(0, got);
    this.start = at;
  }
}

/**
 * The bytes checkFrame needs at `at`: the header, then exactly the payload it announces (or
 * nothing more when the length is implausible). Asking for the largest possible frame instead
 * would refill the window with a megabyte for every frame of a segment longer than that.
 */
function frameAt(window: FileWindow, at: number): Buffer {
  const head = window.bytes(at, FRAME_HEADER_BYTES);
  if (head.length < FRAME_HEADER_BYTES) return head;
  const length = head.readUInt32LE(4);
  return window.bytes(at, FRAME_HEADER_BYTES + (length <= MAX_PAYLOAD_BYTES ? length : 0));
}

/**
 * The next offset after `from` where a whole, checksummed frame begins, or the file's size when
 * there is none. Bounded: every step moves forward by at least one byte.
 */
function nextGoodFrame(window: FileWindow, from: number): number {
  let at = from;
  while (at < window.size) {
    const chunk = window.bytes(at, CHUNK_BYTES);
    const hit = chunk.indexOf(FRAME_SYNC);
    if (hit < 0) {
      // The marker might straddle the chunk's end: step back by its length less one.
      at = chunk.length < CHUNK_BYTES ? window.size : at + chunk.length - (FRAME_SYNC.length - 1);
      continue;
    }
    if (checkFrame(frameAt(window, at + hit)).ok) return at + hit;
    at += hit + 1;
  }
  return window.size;
}

/**
 * Frames and damage of `file` from `startOffset` (clamped to just after the header) to its end as
 * it was when the scan began. A frame's payload is a view valid until the next item is pulled.
 */
export function* scanSegment(file: string, startOffset = 0): Generator<ScanItem> {
  const fd = fs.openSync(file, 'r');
  try {
    const window = new FileWindow(fd, fs.fstatSync(fd).size);
    if (window.size === 0) return;
    let at = Math.max(startOffset, SEGMENT_HEADER_BYTES);
    if (startOffset < SEGMENT_HEADER_BYTES) {
      const problem = headerProblem(window.bytes(0, SEGMENT_HEADER_BYTES), file);
      if (problem !== null) {
        const resume = Math.min(window.size, nextGoodFrame(window, 0));
        yield { kind: 'damage', offset: 0, length: resume, reason: problem, toEnd: resume === window.size };
        at = Math.max(resume, SEGMENT_HEADER_BYTES);
      }
    }
    while (at < window.size) {
      const check = checkFrame(frameAt(window, at));
      if (check.ok) {
        const payload = window.bytes(at + FRAME_HEADER_BYTES, check.frameBytes - FRAME_HEADER_BYTES);
        yield { kind: 'frame', offset: at, end: at + check.frameBytes, payload };
        at += check.frameBytes;
        continue;
      }
      const resume = nextGoodFrame(window, at + 1);
      yield { kind: 'damage', offset: at, length: resume - at, reason: check.reason, toEnd: resume === window.size };
      at = resume;
    }
  } finally {
    fs.closeSync(fd);
  }
}
