import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseHash } from './password-hash';
import type { ParsedHash } from './password-hash';

/**
 * The users file, kept outside git: one `name:$scrypt$...` line per user, `#` comments and
 * blank lines ignored. Never plain passwords. Loaded all or nothing, like policies.
 */
export type UsersLoad = { ok: true; users: ReadonlyMap<string, ParsedHash> } | { ok: false; problems: string[] };

/** Proxy usernames: what client groups and the audit `user` field name. */
export const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/;

export function parseUsersFile(file: string, text: string): UsersLoad {
  const users = new Map<string, ParsedHash>();
  const problems: string[] = [];
  const where = path.basename(file);
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const problem = (message: string): number => problems.push(`${where}:${index + 1}: ${message}`);
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    if (!USER_NAME.test(name)) return void problem(`invalid user name "${name.slice(0, 40)}"; use letters, digits, ".", "_", "@", "-"`);
    if (users.has(name)) return void problem(`duplicate user "${name}"`);
    const hash = colon === -1 ? null : parseHash(line.slice(colon + 1));
    if (hash === null) return void problem(`user "${name}": expected a $scrypt$ hash; create the line with "tollgate users add ${name}"`);
    users.set(name, hash);
  });
  return problems.length > 0 ? { ok: false, problems } : { ok: true, users };
}

export function loadUsersFile(file: string): UsersLoad {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, problems: [`${file}: ${(err as Error).message}`] };
  }
  return parseUsersFile(file, text);
}
