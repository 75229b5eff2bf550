import type { ParentProxy } from '../policy/types';
import { formatAuthority, normaliseHost } from './target';

export type { ParentProxy } from '../policy/types';

/** Parse `http://[user:password@]host:port`; throws with a message fit for FILE:LINE. */
export function parseParentProxy(text: string): ParentProxy {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`"${text}" is not a URL; expected http://[user:password@]host:port`);
  }
  if (url.protocol !== 'http:' || url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.port === '') {
    throw new Error(`"${text}" must be http://[user:password@]host:port (with the port)`);
  }
  let host: ReturnType<typeof normaliseHost>;
  try {
    host = normaliseHost(url.hostname);
  } catch {
    throw new Error(`"${text}": invalid host`);
  }
  const port = Number(url.port);
  const user = decodeURIComponent(url.username);
  const credentials = user ? { user, password: decodeURIComponent(url.password) } : null;
  const label = `http://${user ? `${user}:***@` : ''}${formatAuthority({ ...host, port })}`;
  return { label, ...host, port, credentials };
}
