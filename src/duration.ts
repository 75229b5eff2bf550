/**
 * One duration form for every option, command and query (SPEC §1's `7d`, §6's "any duration of
 * §1's form"): a number and a unit, ms, s, m, h, d or w (500ms, 90s, 15m, 24h, 7d, 2w).
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000,
};

const DURATION = /^([0-9]{1,15}(?:\.[0-9]{1,9})?)(ms|s|m|h|d|w)?$/;

/** The examples every message about a duration gives. */
export const DURATION_EXAMPLES = '500ms, 90s, 15m, 24h, 7d or 2w';

/**
 * Milliseconds of `text` (rounded), or null when it is not a duration (nor one that rounds to
 * nothing). A bare number is in `bareUnit`, or not a duration when that is null.
 */
export function durationMs(text: string, bareUnit: 's' | null): number | null {
  const match = DURATION.exec(text);
  if (match === null) return null;
  const unit = match[2] ?? bareUnit;
  if (unit === null) return null;
  const amount = Number(match[1]);
  const ms = Math.round(amount * UNIT_MS[unit]);
  // Less than half a millisecond but not nothing (0.4ms, 0.0001s): 0 would mean "off" to an option.
  return ms === 0 && amount > 0 ? null : ms;
}

/** Node's timers take at most 2^31 - 1 ms (24.8 days); a longer delay fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
