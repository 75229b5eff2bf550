import { join } from 'node:path';
import { checkPolicies } from '../../src/policy/check';
import { FIXTURES } from './helpers';

describe('checkPolicies', () => {
  test('a valid folder passes with a summary line', () => {
    const result = checkPolicies(join(FIXTURES, 'no-settings'), new Date('2026-01-01T00:00:00Z'));
    expect(result.ok).toBe(true);
    expect(result.lines).toEqual([expect.stringMatching(/^ok: 1 file, 1 rule, default deny, mode enforce \((git:[0-9a-f]{12}(-dirty)?|sha256:[0-9a-f]{12})\)$/)]);
  });

  test('problems fail the check, one FILE:LINE line each', () => {
    const result = checkPolicies(join(FIXTURES, 'bad-duplicate-rule'));
    expect(result).toEqual({
      ok: false,
      lines: [
        '20-b.yaml:6: duplicate rule name "same" (first defined at 10-a.yaml:3); rule names must be unique across all files',
        'invalid: 1 problem',
      ],
    });
  });

  test.each([
    ['2026-01-01T00:00:00Z', null],
    ['2026-03-17T00:00:00Z', null],
    ['2026-03-18T00:00:00Z', 'policy.yaml:3: warning: rule "temporary" expires on 2026-03-31 (in 14 days)'],
    ['2026-03-31T09:00:00Z', 'policy.yaml:3: warning: rule "temporary" expires on 2026-03-31 (at the end of today (UTC))'],
    ['2026-04-01T00:00:00Z', 'policy.yaml:3: warning: rule "temporary" expired on 2026-03-31 and no longer matches'],
  ])('expiry warning at %s', (now, warning) => {
    const result = checkPolicies(join(FIXTURES, 'expires'), new Date(now));
    expect(result.ok).toBe(true);
    expect(result.lines.slice(0, -1)).toEqual(warning === null ? [] : [warning]);
  });

  test('over-broad host patterns warn without failing', () => {
    const result = checkPolicies(join(FIXTURES, 'matching'));
    expect(result.ok).toBe(true);
    expect(result.lines).toContain('20-more.yaml:7: warning: rule "four-labels": host pattern "*.*.*.*" is very broad');
  });
});
