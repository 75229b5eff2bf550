import { Authenticator, AUTH_LIMITS, AuthReason, parseProxyAuthorization } from '../src/auth/authenticator';
import { hashPassword, parseHash, verifyPassword } from '../src/auth/password-hash';
import type { ParsedHash } from '../src/auth/password-hash';
import { parseUsersFile } from '../src/auth/users-file';
import { ProxyError } from '../src/request/errors';

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('password hashes', () => {
  test('a hash verifies its password only, and two hashes of one password differ (salted)', async () => {
    const text = await hashPassword('correct horse battery');
    expect(text).toMatch(/^\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    expect(text).not.toContain('correct horse');
    const parsed = parseHash(text) as ParsedHash;
    expect(await verifyPassword('correct horse battery', parsed)).toBe(true);
    expect(await verifyPassword('correct horse batterY', parsed)).toBe(false);
    expect(await hashPassword('correct horse battery')).not.toBe(text);
  });

  test.each(['plain-password', '$scrypt$ln=3,r=8,p=1$c2FsdA$aGFzaA', '$argon2id$v=19$m=1$x$y'])('"%s" is not accepted as a hash', (text) => {
    expect(parseHash(text)).toBeNull();
  });
});

describe('users file', () => {
  test('valid lines load; comments and blank lines are skipped', async () => {
    const line = `alice:${await hashPassword('alice-password')}`;
    const loaded = parseUsersFile('/etc/tollgate/users', `# users\n\n${line}\n`);
    expect(loaded.ok && [...loaded.users.keys()]).toEqual(['alice']);
  });

  test('problems come as FILE:LINE with a hint, and the whole file is refused', async () => {
    const good = `alice:${await hashPassword('alice-password')}`;
    const loaded = parseUsersFile('/etc/tollgate/users', `${good}\nbob:hunter2\n${good}\nbad name:x\n`);
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    expect(loaded.problems).toEqual([
      'users:2: user "bob": expected a $scrypt$ hash; create the line with "tollgate users add bob"',
      'users:3: duplicate user "alice"',
      'users:4: invalid user name "bad name"; use letters, digits, ".", "_", "@", "-"',
    ]);
  });
});

describe('Proxy-Authorization parsing', () => {
  const cases: Array<[string, string | undefined, { user: string; password: string } | null]> = [
    ['absent', undefined, null],
    ['basic', basic('ci-bot', 'pa:ss'), { user: 'ci-bot', password: 'pa:ss' }],
    ['lower-case scheme', `basic ${Buffer.from('u:p').toString('base64')}`, { user: 'u', password: 'p' }],
    ['another scheme', 'Bearer abc', null],
    ['no colon', `Basic ${Buffer.from('nocolon').toString('base64')}`, null],
    ['empty user', `Basic ${Buffer.from(':p').toString('base64')}`, null],
    ['not base64', 'Basic !!!', null],
  ];
  test.each(cases)('%s', (_name, header, expected) => {
    expect(parseProxyAuthorization(header)).toEqual(expected);
  });
});

describe('Authenticator', () => {
  let users: Map<string, ParsedHash>;
  beforeAll(async () => {
    users = new Map([['ci-bot', parseHash(await hashPassword('ci-bot-password')) as ParsedHash]]);
  });

  async function outcome(auth: Authenticator, header: string | undefined, mode: 'off' | 'optional' | 'required', source = '10.0.0.1'): Promise<string | null | ProxyError> {
    try {
      return await auth.authenticate(header, mode, source);
    } catch (err) {
      if (err instanceof ProxyError) return err;
      throw err;
    }
  }

  test('modes: off ignores credentials, optional allows anonymous, required demands them', async () => {
    const auth = new Authenticator(() => users);
    expect(await outcome(auth, basic('ci-bot', 'wrong'), 'off')).toBeNull();
    expect(await outcome(auth, undefined, 'optional')).toBeNull();
    expect(await outcome(auth, basic('ci-bot', 'ci-bot-password'), 'optional')).toBe('ci-bot');
    expect(await outcome(auth, basic('ci-bot', 'ci-bot-password'), 'required')).toBe('ci-bot');
    const missing = await outcome(auth, undefined, 'required');
    expect(missing).toMatchObject({ status: 407, code: 'auth_required', reason: AuthReason.required });
    expect(await outcome(auth, basic('ci-bot', 'wrong'), 'optional')).toMatchObject({ status: 407, code: 'auth_failed' });
    expect(await outcome(auth, basic('nobody', 'x'), 'required')).toMatchObject({ status: 407, code: 'auth_failed' });
  });

  test('repeated failures from one source are answered 429 with Retry-After; others are unaffected', async () => {
    let now = 1_000_000;
    const auth = new Authenticator(() => users, () => now);
    for (let i = 0; i < AUTH_LIMITS.failuresPerWindow; i += 1) {
      expect(await outcome(auth, basic('ci-bot', `guess${i}`), 'required', '10.9.9.9')).toMatchObject({ status: 407 });
    }
    const blocked = await outcome(auth, basic('ci-bot', 'ci-bot-password'), 'required', '10.9.9.9');
    expect(blocked).toMatchObject({ status: 429, code: 'auth_rate_limited' });
    expect((blocked as ProxyError).retryAfterSeconds).toBe(AUTH_LIMITS.failureWindowMs / 1000);
    expect(await outcome(auth, basic('ci-bot', 'ci-bot-password'), 'required', '10.8.8.8')).toBe('ci-bot');
    now += AUTH_LIMITS.failureWindowMs;
    expect(await outcome(auth, basic('ci-bot', 'ci-bot-password'), 'required', '10.9.9.9')).toBe('ci-bot');
  });

  test('a verified credential is cached until the users file changes', async () => {
    const current = new Map(users);
    const auth = new Authenticator(() => current);
    expect(await outcome(auth, basic('ci-bot', 'ci-bot-password'), 'required')).toBe('ci-bot');
    current.delete('ci-bot');
    expect(await outcome(auth, basic('ci-bot', 'ci-bot-password'), 'required')).toBe('ci-bot');
    auth.usersChanged();
    expect(await outcome(auth, basic('ci-bot', 'ci-bot-password'), 'required')).toMatchObject({ status: 407 });
  });
});

describe('Authenticator under a flood', () => {
  test('parallel wrong guesses from one source cannot all slip under the failure limit', async () => {
    const users = new Map([['ci-bot', parseHash(await hashPassword('ci-bot-password')) as ParsedHash]]);
    const auth = new Authenticator(() => users);
    const header = (i: number): string => `Basic ${Buffer.from(`ci-bot:guess-${i}`).toString('base64')}`;
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, (_, i) => auth.authenticate(header(i), 'required', '10.7.7.7').then(() => 200, (err: ProxyError) => err.status)),
    );
    expect(outcomes.filter((s) => s === 407)).toHaveLength(AUTH_LIMITS.failuresPerWindow);
    expect(outcomes.filter((s) => s === 429)).toHaveLength(40 - AUTH_LIMITS.failuresPerWindow);
  });

  test('a verified credential still passes while its address is over the failure limit', async () => {
    const users = new Map([['ci-bot', parseHash(await hashPassword('ci-bot-password')) as ParsedHash]]);
    const auth = new Authenticator(() => users);
    const good = `Basic ${Buffer.from('ci-bot:ci-bot-password').toString('base64')}`;
    expect(await auth.authenticate(good, 'required', '10.6.6.6')).toBe('ci-bot');
    for (let i = 0; i < AUTH_LIMITS.failuresPerWindow; i += 1) {
      await auth.authenticate(`Basic ${Buffer.from(`ci-bot:no-${i}`).toString('base64')}`, 'required', '10.6.6.6').catch(() => undefined);
    }
    expect(await auth.authenticate(good, 'required', '10.6.6.6')).toBe('ci-bot');
  });
});
