import type { ParentProxy } from './types';
import { formatAuthority, normaliseHost } from '../request/target';

export type { ParentProxy } from './types';

/** The URL with its credentials blanked: what error messages may show. */
function redact(text: string): string {
  return text.replace(/\/\/[^/@]*@/, '//***@');
}

/** Parse `http://[user:password@]host:port`; throws with a message fit for FILE:LINE (no password). */
export function parseParentProxy(text: string): ParentProxy {
  const shown = `"${redact(text)}"`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`${shown} is not a URL; expected http://[user:password@]host:port`);
  }
  if (url.protocol !== 'http:' || url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.port === '') {
    throw new Error(`${shown} must be http://[user:password@]host:port (with the port)`);
  }
  if (url.password !== '' && url.username === '') throw new Error(`${shown}: a password needs a user name`);
  let host: ReturnType<typeof normaliseHost>;
  let credentials: ParentProxy['credentials'] = null;
  try {
    host = normaliseHost(url.hostname);
    if (url.username) credentials = { user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
  } catch {
    throw new Error(`${shown}: invalid host or credentials (percent-encode special characters)`);
  }
  const port = Number(url.port);
  // The label reaches clients (502 bodies) and the audit: no user name, no password.
  return { label: `http://${formatAuthority({ ...host, port })}`, ...host, port, credentials };
}
