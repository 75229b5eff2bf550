// Calls to the admin API. The session cookie (token mode) goes along automatically; a 401 sends
// the browser to the login page.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET /api/<path>?<params> as JSON; throws ApiError with the server's `error` text. */
export async function apiGet(path, params = new URLSearchParams(), { signal } = {}) {
  const query = params.toString();
  const response = await fetch(`/api/${path}${query === '' ? '' : `?${query}`}`, {
    headers: { accept: 'application/json' },
    credentials: 'same-origin',
    cache: 'no-store',
    signal,
  });
  if (response.status === 401) toLogin();
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body !== null && typeof body.error === 'string' ? body.error : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

/**
 * POST (JSON body) or DELETE on /api/<path>; JSON back, or null for an empty answer. The browser
 * sends Origin and Sec-Fetch-Site, which the server's cross-site check reads (same-origin.ts).
 */
export async function apiSend(method, path, body = undefined) {
  const response = await fetch(`/api/${path}`, {
    method,
    headers: body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (response.status === 401) toLogin();
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const message = parsed !== null && typeof parsed.error === 'string' ? parsed.error : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return parsed;
}

/** The export link for exactly the filtered set (no limit, no cursor). */
export function exportHref(format, filterParams) {
  const params = new URLSearchParams(filterParams);
  params.set('format', format);
  return `/api/requests/export?${params.toString()}`;
}

/** To the login page, and back here after signing in (login.js and the server accept only a path on this admin). */
function toLogin() {
  const next = `${window.location.pathname}${window.location.search}`;
  window.location.assign(`/login.html?${new URLSearchParams({ next }).toString()}`);
  throw new ApiError(401, 'authentication required');
}
