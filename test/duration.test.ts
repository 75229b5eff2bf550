import { parseDuration, parseTimerDuration } from '../src/config';
import { parseTimeParam } from '../src/audit/time-window';
import { parseWindow } from '../src/policy/replay/window';
import { QueryInputError } from '../src/audit/query-errors';
import { ReplayInputError } from '../src/policy/replay/input-error';

/**
 * One duration form everywhere (SPEC §1, §6 "any duration of §1's form"): serve's timeouts and
 * --retain, audit prune --older-than, the policy commands' --since and the API's since/until.
 * Each once took its own subset (--retain refused 2w, --since refused 90s).
 */
const NOW = new Date('2026-03-01T12:00:00Z');

describe('one duration form', () => {
  test.each([
    ['500ms', 500],
    ['90s', 90_000],
    ['15m', 900_000],
    ['1.5h', 5_400_000],
    ['7d', 604_800_000],
    ['2w', 1_209_600_000],
  ])('%s means the same to an option, a look-back and a query', (text, ms) => {
    expect(parseDuration(text, '--retain')).toBe(ms);
    expect(parseWindow(text, NOW)).toEqual({ sinceMs: NOW.getTime() - ms, untilMs: NOW.getTime() });
    expect(parseTimeParam('since', text, NOW)).toBe(NOW.getTime() - ms);
  });

  test('a bare number is seconds for an option, and not a look-back or a relative time', () => {
    expect(parseDuration('90', '--retain')).toBe(90_000);
    expect(() => parseWindow('90', NOW)).toThrow(ReplayInputError);
    expect(() => parseTimeParam('since', '90', NOW)).toThrow(QueryInputError);
  });

  test.each(['2y', '-1d', '1e3s', 'd', '7 d', '1d2h', '0.4ms', '0.0001s'])('%s is refused by each', (text) => {
    expect(() => parseDuration(text, '--retain')).toThrow(/expected a duration such as 500ms, 90s, 15m, 24h, 7d or 2w/);
    expect(() => parseWindow(text, NOW)).toThrow(/use a look-back such as 500ms, 90s, 15m, 24h, 7d or 2w/);
    expect(() => parseTimeParam('since', text, NOW)).toThrow(QueryInputError);
  });

  test('a look-back of nothing, or past 1970, is refused; a relative time past ten years too', () => {
    expect(() => parseWindow('0s', NOW)).toThrow(/the window is empty/);
    expect(() => parseWindow('100000w', NOW)).toThrow(/before 1970/);
    expect(() => parseTimeParam('since', '3651d', NOW)).toThrow(/more than 3650 days/);
  });

  test('an option trims the spaces a variable may carry; a query and a look-back take the text as it is', () => {
    expect(parseDuration(' 7d ', '--retain')).toBe(604_800_000);
    expect(() => parseWindow(' 7d', NOW)).toThrow(ReplayInputError);
    expect(() => parseTimeParam('since', ' 7d', NOW)).toThrow(QueryInputError);
  });

  test('a timeout is at most what a Node timer can wait (a longer one would fire after 1 ms)', () => {
    expect(parseTimerDuration('24d', '--tunnel-max-lifetime')).toBe(24 * 86_400_000);
    expect(parseTimerDuration('0', '--tunnel-max-lifetime')).toBe(0);
    for (const text of ['25d', '4w']) {
      expect(() => parseTimerDuration(text, '--tunnel-max-lifetime')).toThrow(/longer than a timer can wait \(at most 24d\)/);
    }
    // Retention is an age, not a timer: weeks and years of days are fine.
    expect(parseDuration('52w', '--retain')).toBe(52 * 604_800_000);
  });
});
