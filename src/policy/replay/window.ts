import { DURATION_EXAMPLES, durationMs } from '../../duration';
import { ReplayInputError } from './input-error';

/**
 * `--since` for `policy replay`, `unused` and `suggest`: a look-back (a duration of
 * src/duration.ts with its unit: `90s`, `12h`, `7d`, `2w`) or a UTC date or timestamp
 * (`2026-01-01`, `2026-01-01T08:00:00Z`). The window ends now.
 */

const DATE = /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/;
const TIMESTAMP = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,3})?)?(?:Z|[+-][0-9]{2}:[0-9]{2})$/;

export interface TimeWindow {
  sinceMs: number;
  untilMs: number;
}

/** The window from `since` to `now`; throws ReplayInputError with a how-to-fix message. */
export function parseWindow(since: string, now: Date): TimeWindow {
  const untilMs = now.getTime();
  const lookBack = durationMs(since, null);
  if (lookBack !== null) {
    if (lookBack === 0) throw new ReplayInputError(`--since ${since}: the window is empty; give e.g. 7d`);
    if (lookBack > untilMs) throw new ReplayInputError(`--since ${since}: reaches back before 1970`);
    return { sinceMs: untilMs - lookBack, untilMs };
  }
  if (DATE.test(since) || TIMESTAMP.test(since)) {
    // A bare date is midnight UTC, as `expires` dates are read.
    const sinceMs = Date.parse(DATE.test(since) ? `${since}T00:00:00Z` : since);
    if (Number.isNaN(sinceMs)) throw new ReplayInputError(`--since ${since}: not a real date`);
    if (sinceMs >= untilMs) throw new ReplayInputError(`--since ${since}: is not in the past`);
    return { sinceMs, untilMs };
  }
  throw new ReplayInputError(`--since "${since}": use a look-back such as ${DURATION_EXAMPLES}, or a UTC date such as 2026-01-01`);
}
