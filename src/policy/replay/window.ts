import { ReplayInputError } from './input-error';

/**
 * `--since` for `policy replay` and `policy unused`: a look-back (`7d`, `12h`, `90m`, `2w`) or
 * a UTC date or timestamp (`2026-01-01`, `2026-01-01T08:00:00Z`). The window ends now.
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

const LOOK_BACK = /^([0-9]{1,6})([mhdw])$/;
const DATE = /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/;
const TIMESTAMP = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,3})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})$/;

export interface TimeWindow {
  sinceMs: number;
  untilMs: number;
}

/** The window from `since` to `now`; throws ReplayInputError with a how-to-fix message. */
export function parseWindow(since: string, now: Date): TimeWindow {
  const untilMs = now.getTime();
  const lookBack = LOOK_BACK.exec(since);
  if (lookBack) {
    const amount = Number(lookBack[1]);
    if (amount === 0) throw new ReplayInputError(`--since ${since}: the window is empty; give e.g. 7d`);
    return { sinceMs: untilMs - amount * UNIT_MS[lookBack[2]], untilMs };
  }
  if (DATE.test(since) || TIMESTAMP.test(since)) {
    // A bare date is midnight UTC, as `expires` dates are read.
    const sinceMs = Date.parse(DATE.test(since) ? `${since}T00:00:00Z` : since);
    if (Number.isNaN(sinceMs)) throw new ReplayInputError(`--since ${since}: not a real date`);
    if (sinceMs >= untilMs) throw new ReplayInputError(`--since ${since}: is not in the past`);
    return { sinceMs, untilMs };
  }
  throw new ReplayInputError(`--since "${since}": use a look-back such as 30m, 12h, 7d, 2w, or a UTC date such as 2026-01-01`);
}
