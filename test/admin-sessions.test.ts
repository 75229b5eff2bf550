import { SessionStore } from '../src/admin/sessions';

const TTL_MS = 60_000;

function store(): { sessions: SessionStore; advance: (ms: number) => void } {
  let now = Date.UTC(2025, 0, 1);
  const sessions = new SessionStore({ ttlMs: TTL_MS, maxSessions: 10, clock: () => new Date(now) });
  return { sessions, advance: (ms) => { now += ms; } };
}

describe('admin sessions', () => {
  it('keeps a live session\'s label', () => {
    const { sessions, advance } = store();
    const id = sessions.create('alice');
    advance(TTL_MS - 1);
    expect(sessions.isValid(id)).toBe(true);
    expect(sessions.label(id)).toBe('alice');
  });

  it('forgets an expired session and its label together', () => {
    const { sessions, advance } = store();
    const id = sessions.create('alice');
    advance(TTL_MS);
    expect(sessions.isValid(id)).toBe(false);
    expect(sessions.label(id)).toBeNull();
    expect(sessions.size).toBe(0);
  });

  it('forgets a revoked session\'s label', () => {
    const { sessions } = store();
    const id = sessions.create('bob');
    sessions.revoke(id);
    expect(sessions.isValid(id)).toBe(false);
    expect(sessions.label(id)).toBeNull();
  });
});
