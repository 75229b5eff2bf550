/** Where a browser without a session is sent. */
export const LOGIN_PAGE = '/login.html';

/**
 * Where a login returns to: the link a signed-out visit asked for (`/login.html?next=...`).
 * Only a path on this admin is accepted, never another site: it must start with one `/`
 * (`//host` and `/\host` are network-path references a browser follows off-site), hold no
 * backslash, control character or space, and resolve to this origin. Anything else, and the
 * login pages themselves (a loop), answer `/`.
 */
const MAX_NEXT_LENGTH = 2048;

const PLACEHOLDER_ORIGIN = 'http://admin.invalid';

export function safeNextPath(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NEXT_LENGTH) return '/';
  if (!value.startsWith('/') || value.startsWith('//')) return '/';
  if (/[\\\s\u0000-\u001f\u007f]/.test(value)) return '/';
  let url: URL;
  try {
    url = new URL(value, PLACEHOLDER_ORIGIN);
  } catch {
    return '/';
  }
  if (url.origin !== PLACEHOLDER_ORIGIN) return '/';
  if (url.pathname === '/login' || url.pathname === '/logout' || url.pathname.startsWith('/login.')) return '/';
  return `${url.pathname}${url.search}${url.hash}`;
}

/** The login page's address carrying `next` (none for `/`, the default). */
export function loginPageFor(next: string, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams(extra);
  const safe = safeNextPath(next);
  if (safe !== '/') params.set('next', safe);
  const query = params.toString();
  return query === '' ? LOGIN_PAGE : `${LOGIN_PAGE}?${query}`;
}
