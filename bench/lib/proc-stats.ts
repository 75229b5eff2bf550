import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * What Linux says about another process, from /proc. RSS is what the OS has to back, so it is the
 * honest figure for "memory per tunnel"; kernel socket buffers are not part of it.
 */

/** VmRSS (resident set) of a process, in KiB. */
export function rssKiB(pid: number): number {
  return statusField(pid, 'VmRSS');
}

/** One `Name:   1234 kB` line of /proc/PID/status, as a number. */
export function statusField(pid: number, name: string): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status);
  if (!match) throw new Error(`/proc/${pid}/status has no ${name} line`);
  return Number(match[1]);
}

/** Open file descriptors of a process. */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** The soft "Max open files" limit of a process. */
export function fdLimit(pid: number): number {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const match = /^Max open files\s+(\d+)/m.exec(limits);
  if (!match) throw new Error(`/proc/${pid}/limits has no "Max open files" line`);
  return Number(match[1]);
}

export interface RssSample {
  medianKiB: number;
  minKiB: number;
  maxKiB: number;
  samples: number;
}

/** RSS sampled every `intervalMs` for `durationMs`; the median resists a GC caught mid-way. */
export async function sampleRss(pid: number, durationMs: number, intervalMs: number): Promise<RssSample> {
  const values: number[] = [];
  const until = Date.now() + durationMs;
  do {
    values.push(rssKiB(pid));
    await delay(intervalMs);
  } while (Date.now() < until);
  values.sort((a, b) => a - b);
  return { medianKiB: values[Math.floor(values.length / 2)], minKiB: values[0], maxKiB: values[values.length - 1], samples: values.length };
}

/**
 * Polls until `done()` holds, for at most `limitMs`. Another process's state has no event we
 * could await, so this polls, but never longer than the limit.
 */
export async function pollUntil(done: () => boolean, limitMs: number, what: string, intervalMs = 50): Promise<void> {
  const until = Date.now() + limitMs;
  while (!done()) {
    if (Date.now() > until) throw new Error(`${what}: not reached within ${limitMs} ms`);
    await delay(intervalMs);
  }
}
