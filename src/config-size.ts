import { ConfigError } from './config-error';

/**
 * The low-disk watermark of `--min-free-disk`: an absolute size, a share of the volume, or both
 * (the smaller applies, which is how the default "1 GiB or 5 %, whichever is smaller" reads).
 * Both null: off. The volume's size is known only at run time, so the share stays a share here.
 */
export interface MinFreeDisk {
  readonly bytes: number | null;
  readonly percent: number | null;
}

export const MIN_FREE_DISK_OFF: MinFreeDisk = Object.freeze({ bytes: null, percent: null });

/** Binary units (KiB) are powers of 1024, decimal ones (KB) of 1000, as on a disk's label. */
const SIZE_UNITS: Record<string, number> = {
  b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4,
  kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3, tb: 1000 ** 4,
};

const SIZE = /^([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)$/;
const PERCENT = /^([0-9]+(?:\.[0-9]+)?)\s*%$/;

/** A size like 512MiB, 1GiB, 500MB or 1048576 (bytes). */
export function parseSize(text: string, what: string): number {
  const match = SIZE.exec(text.trim().toLowerCase());
  const unit = match === null ? undefined : SIZE_UNITS[match[2] === '' ? 'b' : match[2]];
  if (match === null || unit === undefined) {
    // A bare K, M or G is ambiguous (1000s or 1024s?): say which spellings are meant.
    throw new ConfigError(`${what}: expected a size such as 512MiB, 1GiB or 500MB (or a percentage such as 5%), got "${text}"`);
  }
  const bytes = Math.floor(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new ConfigError(`${what}: "${text}" is too large`);
  return bytes;
}

function parsePercent(text: string, what: string): number {
  const match = PERCENT.exec(text.trim());
  const percent = match === null ? NaN : Number(match[1]);
  if (!(percent >= 0 && percent <= 100)) throw new ConfigError(`${what}: expected a percentage from 0% to 100%, got "${text}"`);
  return percent;
}

/** `SIZE`, `PERCENT%`, or both separated by a comma (the smaller applies); `0` is off. */
export function parseMinFreeDisk(text: string, what: string): MinFreeDisk {
  const parts = text.split(',').map((part) => part.trim());
  let bytes: number | null = null;
  let percent: number | null = null;
  for (const part of parts) {
    if (part.endsWith('%')) {
      if (percent !== null) throw new ConfigError(`${what}: more than one percentage in "${text}"`);
      percent = parsePercent(part, what);
    } else {
      if (bytes !== null) throw new ConfigError(`${what}: more than one size in "${text}"`);
      bytes = parseSize(part, what);
    }
  }
  // Either part at zero makes the smaller of the two zero: no watermark at all.
  if (bytes === 0 || percent === 0) return MIN_FREE_DISK_OFF;
  return Object.freeze({ bytes, percent });
}

/** The watermark in bytes on a volume of `totalBytes`; 0 when off. */
export function minFreeBytes(limit: MinFreeDisk, totalBytes: number): number {
  const candidates: number[] = [];
  if (limit.bytes !== null) candidates.push(limit.bytes);
  if (limit.percent !== null) candidates.push(Math.floor((totalBytes * limit.percent) / 100));
  return candidates.length === 0 ? 0 : Math.min(...candidates);
}
