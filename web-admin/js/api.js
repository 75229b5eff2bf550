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
  if (response.status === 401) {
    // Back here after signing in (login.js and the server accept only a path on this admin).
    const next = `${window.location.pathname}${window.location.search}`;
    window.location.assign(`/login.html?${new URLSearchParams({ next }).toString()}`);
    throw new ApiError(401, 'authentication required');
  }
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

/** The export link for exactly the filtered set (no limit, no cursor). */
export function exportHref(format, filterParams) {
  const params = new URLSearchParams(filterParams);
  params.set('format', format);
  return `/api/requests/export?${params.toString()}`;
}
