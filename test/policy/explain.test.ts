import { decide } from '../../src/policy/decide';
import { explainDecision } from '../../src/policy/explain';
import { MATCHED_PHRASE, MISMATCH_PHRASES } from '../../src/policy/reasons';
import { facts, fixturePolicy, type RequestSketch } from './helpers';

const policy = fixturePolicy('matching');

function whyFor(sketch: RequestSketch, rule: string): string | undefined {
  return explainDecision(policy, facts(sketch)).considered.find((c) => c.rule === rule)?.why;
}

describe('explainDecision', () => {
  test('lists rules in order up to the deciding one, and decides like decide()', () => {
    const request = facts({ target: 'http://api.example/repos/x' });
    const { decision, considered } = explainDecision(policy, request);
    expect(decision).toEqual(decide(policy, request));
    expect(considered.at(-1)).toEqual({ rule: 'api-paths', source: '10-rules.yaml:45', matched: true, why: MATCHED_PHRASE });
    expect(considered.slice(0, -1).every((c) => !c.matched)).toBe(true);
    expect(considered.map((c) => c.rule)).toEqual(policy.rules.slice(0, considered.length).map((r) => r.name));
  });

  test('an unmatched request considers every rule', () => {
    const { decision, considered } = explainDecision(policy, facts({ target: 'nowhere.example:443' }));
    expect(decision.rule).toBe('(default)');
    expect(considered).toHaveLength(policy.rules.length);
  });

  test.each([
    ['host', { target: 'other.example:443' }, 'deny-paste', `${MISMATCH_PHRASES.host}: "other.example" vs [pastebin.com]`],
    ['port', { target: 'range.example:443' }, 'ports-range', `${MISMATCH_PHRASES.port}: 443 vs [8000-8999, 9443]`],
    ['method', { target: 'http://deb.example/', method: 'POST' }, 'apt-methods', `${MISMATCH_PHRASES.method}: POST vs [GET, HEAD]`],
    ['path', { target: 'http://api.example/admin?x=1' }, 'api-paths', `${MISMATCH_PHRASES.path}: "/admin" vs [/repos/**]`],
    ['connect', { target: 'api.example:443' }, 'api-paths', `${MISMATCH_PHRASES.connect}: CONNECT`],
    ['client', { target: 'ci.example:443', sourceIp: '192.168.1.2' }, 'ci-only', `${MISMATCH_PHRASES.client}: request is in [office], rule wants [ci]`],
  ] as const)('says which part did not match: %s', (_part, sketch, rule, why) => {
    expect(whyFor(sketch, rule)).toBe(why);
  });

  test('says when a rule has expired', () => {
    const expiring = fixturePolicy('expires');
    const { considered } = explainDecision(expiring, facts({ target: 'temp.example:443', now: '2026-04-02T00:00:00Z' }));
    expect(considered).toEqual([{ rule: 'temporary', source: 'policy.yaml:3', matched: false, why: 'expired: on 2026-03-31' }]);
  });
});
