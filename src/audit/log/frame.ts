import zlib from 'node:zlib';

/**
 * The byte layout of a segment file: a 12-byte header, then frames back to back.
 *
 *   header: "TGAUDLOG" | u32 format version
 *   frame:  u32 sync marker | u32 payload length | u32 crc32(payload) | payload
 *
 * Every integer is little-endian. The sync marker is not in the bare [length][crc][payload]
 * layout: it lets a reader that met a damaged region (a page the kernel never wrote back before a
 * power cut reads as zeros, while later pages made it) find the next frame by searching for four
 * known bytes instead of trying every offset. Its first byte, 0xFF, never occurs in UTF-8 text, so
 * it cannot appear in a payload's JSON; a false match in a payload's binary prefix still has to
 * pass a plausible length and the CRC (a 2^-32 chance) before it is believed.
 */

export const SEGMENT_MAGIC = Buffer.from('TGAUDLOG', 'latin1');
export const LOG_FORMAT_VERSION = 1;
export const SEGMENT_HEADER_BYTES = SEGMENT_MAGIC.length + 4;

export const FRAME_SYNC = Buffer.from([0xff, 0x54, 0x47, 0x4c]);
const FRAME_SYNC_U32 = FRAME_SYNC.readUInt32LE(0);
export const FRAME_HEADER_BYTES = 12;

/** The smallest payload the codec writes: tag, id and time, then at least "[]". */
export const MIN_PAYLOAD_BYTES = 13 + 2;
/**
 * Far above any real entry (text fields are clipped to 2,048 characters); a length above it is
 * damage, not an entry, and the reader never allocates or skips by it.
 */
export const MAX_PAYLOAD_BYTES = 1 << 20;

export function segmentHeader(): Buffer {
  const header = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(header, 0);
  header.writeUInt32LE(LOG_FORMAT_VERSION, SEGMENT_MAGIC.length);
  return header;
}

/** A segment written by a newer release: reading it as this format would misread it. */
export class UnsupportedLogFormatError extends Error {
  constructor(file: string, version: number) {
    super(`${file}: audit log format version ${version} is newer than this release reads (${LOG_FORMAT_VERSION})`);
    this.name = 'UnsupportedLogFormatError';
  }
}

/** Null when the header is good; otherwise why not (damage, reported and skipped). */
export function headerProblem(bytes: Buffer, file: string): string | null {
  if (bytes.length < SEGMENT_HEADER_BYTES) return allZero(bytes) ? 'zeroed segment header' : 'truncated segment header';
  if (!bytes.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) {
    return allZero(bytes.subarray(0, SEGMENT_HEADER_BYTES)) ? 'zeroed segment header' : 'bad segment header';
  }
  const version = bytes.readUInt32LE(SEGMENT_MAGIC.length);
  if (version !== LOG_FORMAT_VERSION) throw new UnsupportedLogFormatError(file, version);
  return null;
}

/** Writes the frame header for a payload already placed at `at + FRAME_HEADER_BYTES`. */
export function sealFrame(out: Buffer, at: number, payloadBytes: number): void {
  const payloadStart = at + FRAME_HEADER_BYTES;
  out.writeUInt32LE(FRAME_SYNC_U32, at);
  out.writeUInt32LE(payloadBytes, at + 4);
  out.writeUInt32LE(zlib.crc32(out.subarray(payloadStart, payloadStart + payloadBytes)), at + 8);
}

export type FrameCheck =
  | { ok: true; frameBytes: number }
  | { ok: false; reason: string };

/**
 * Checks the frame starting at `bytes[0]`; `bytes` holds the file's bytes from there: at least
 * the header and the payload length it announces, when the file is that long.
 */
export function checkFrame(bytes: Buffer): FrameCheck {
  if (bytes.length < FRAME_HEADER_BYTES) {
    return { ok: false, reason: allZero(bytes) ? 'zeroed region' : 'truncated frame header' };
  }
  if (bytes.readUInt32LE(0) !== FRAME_SYNC_U32) {
    return { ok: false, reason: allZero(bytes.subarray(0, FRAME_HEADER_BYTES)) ? 'zeroed region' : 'no frame marker' };
  }
  const length = bytes.readUInt32LE(4);
  if (length < MIN_PAYLOAD_BYTES || length > MAX_PAYLOAD_BYTES) return { ok: false, reason: `bad length ${length}` };
  const end = FRAME_HEADER_BYTES + length;
  if (end > bytes.length) return { ok: false, reason: 'frame runs past the end of the file' };
  if (zlib.crc32(bytes.subarray(FRAME_HEADER_BYTES, end)) !== bytes.readUInt32LE(8)) {
    return { ok: false, reason: 'checksum mismatch' };
  }
  return { ok: true, frameBytes: end };
}

function allZero(bytes: Buffer): boolean {
  for (let i = 0; i < bytes.length; i += 1) if (bytes[i] !== 0) return false;
  return true;
}
