import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadPolicy } from '../src/policy/load';
import type { Policy } from '../src/policy/load';
import { ShapeDecider } from '../src/policy/replay/decide-shape';
import type { RecordedShape } from '../src/policy/replay/recorded-shape';
import { writeAuthPolicy } from './helpers/auth-policy';

/**
 * Replay takes a recorded user as the proxy would under the proposed policy: the proxy ignores
 * proxy credentials while `settings.auth` is off, so a proposal turning it off drops every
 * user-based client group, and replay must say what that would deny.
 */
const NOW = new Date('2026-03-01T12:00:00Z');
let dir: string;

beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-replay-auth-'))));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function policyWithAuth(auth: 'off' | 'optional' | 'required'): Policy {
  writeAuthPolicy(dir, auth);
  const loaded = loadPolicy(dir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.policy;
}

const RECORDED: RecordedShape = {
  kind: 'connect', method: 'CONNECT', host: 'bots.example', hostKind: 'name', port: 443, path: null,
  clientIp: '10.0.8.7', user: 'ci-bot', decision: 'allow', wouldDeny: false, rule: 'bots-only', sni: null,
  count: 3, lastSeenMs: NOW.getTime() - 60_000,
};

describe('replay and settings.auth', () => {
  test.each(['optional', 'required'] as const)('auth %s: the recorded user still joins its group', (auth) => {
    const decided = new ShapeDecider(policyWithAuth(auth), NOW, () => undefined).decide(RECORDED);
    expect(decided).toMatchObject({ outcome: 'allow', rule: 'bots-only' });
    expect(decided.verdict.clients).toEqual(['bots']);
  });

  test('auth off: the recorded user is ignored, as the proxy would ignore the credentials', () => {
    const decided = new ShapeDecider(policyWithAuth('off'), NOW, () => undefined).decide(RECORDED);
    expect(decided).toMatchObject({ outcome: 'deny', rule: '(default)' });
    expect(decided.verdict.clients).toEqual([]);
  });
});
