import { isMap, isScalar } from 'yaml';
import { fieldNamed, lineOf, readMap, readRanges, readStringList, report, type Field, type FileContext, type RangeSpec } from './yaml-read';

/**
 * Named client groups. A request belongs to every group whose `sources` hold its source
 * address, and to every group whose `users` name its authenticated proxy user.
 */
export interface ClientSpec {
  name: string;
  /** Line of the group's name. */
  line: number;
  sources: RangeSpec[];
  /** Proxy usernames (Proxy-Authorization: Basic), checked against the users file. */
  users: string[];
}

/** Rule and client names travel in the X-Tollgate-Rule header and the audit log: keep them plain. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/;
export const NAME_RULE = 'letters, digits, ".", "_", ":" and "-", starting with a letter or digit, at most 100';

const CLIENT_KEYS = ['sources', 'users'] as const;
/** Same as the users file's names (src/auth/users-file.ts). */
const USER_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/;

function readUsers(ctx: FileContext, field: Field, what: string): string[] {
  const users: string[] = [];
  for (const entry of readStringList(ctx, field.node, field.line, `${what}: users`) ?? []) {
    if (USER_NAME.test(entry.value)) users.push(entry.value);
    else report(ctx, entry.line, `${what}: user name ${JSON.stringify(entry.value)} may hold only letters, digits, ".", "_", "@" and "-"`);
  }
  return users;
}

function readClient(ctx: FileContext, name: string, line: number, node: unknown): ClientSpec {
  const what = `client "${name}"`;
  const fields = readMap(ctx, node, line, what, { known: CLIENT_KEYS }) ?? [];
  const sources = fieldNamed(fields, 'sources');
  const users = fieldNamed(fields, 'users');
  return {
    name,
    line,
    sources: sources === undefined ? [] : readRanges(ctx, sources.node, sources.line, `${what}: sources`, false),
    users: users === undefined ? [] : readUsers(ctx, users, what),
  };
}

export function readClients(ctx: FileContext, field: Field): ClientSpec[] {
  if (!isMap(field.node)) {
    report(ctx, lineOf(ctx, field.node, field.line), 'clients must be a mapping of group names to { sources: [...] }');
    return [];
  }
  const clients: ClientSpec[] = [];
  for (const pair of field.node.items) {
    const line = lineOf(ctx, pair.key, field.line);
    const name = isScalar(pair.key) ? pair.key.value : undefined;
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
      report(ctx, line, `client group name ${JSON.stringify(name)} may hold only ${NAME_RULE} characters`);
      continue;
    }
    clients.push(readClient(ctx, name, line, pair.value));
  }
  return clients;
}
