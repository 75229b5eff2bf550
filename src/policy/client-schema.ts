import { isMap, isScalar } from 'yaml';
import { fieldNamed, lineOf, readMap, readRanges, report, type Field, type FileContext, type RangeSpec } from './yaml-read';

/**
 * Named client groups. A request belongs to every group whose `sources` hold its source
 * address. Proxy credentials (`users`) are not supported yet and are refused loudly: silently
 * ignoring them would turn a group meant for one bot into a group nobody is in, or worse.
 */
export interface ClientSpec {
  name: string;
  /** Line of the group's name. */
  line: number;
  sources: RangeSpec[];
}

/** Rule and client names travel in the X-Tollgate-Rule header and the audit log: keep them plain. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/;
export const NAME_RULE = 'letters, digits, ".", "_", ":" and "-", starting with a letter or digit, at most 100';

const CLIENT_KEYS = ['sources'] as const;
const CLIENT_NOT_YET = {
  users: '"users" (proxy credentials) is not supported yet; identify clients by "sources"',
};

function readClient(ctx: FileContext, name: string, line: number, node: unknown): ClientSpec {
  const what = `client "${name}"`;
  const fields = readMap(ctx, node, line, what, { known: CLIENT_KEYS, notYet: CLIENT_NOT_YET }) ?? [];
  const sources = fieldNamed(fields, 'sources');
  return {
    name,
    line,
    sources: sources === undefined ? [] : readRanges(ctx, sources.node, sources.line, `${what}: sources`, false),
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
