import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import { buildAdminApp } from '../admin/app';
import { shippedHeads } from '../fleet/pg-chain';
import { ConfigError, isLoopbackHost, parseListen, parseRangeList } from '../config';
import { PgConsoleStore } from '../fleet/pg-console';
import type { IpRange } from '../policy/ip-range';
import { AuditUrlError, openAuditPool, redactAuditUrl, resolveAuditUrl, scrubSecret } from '../fleet/audit-url';
import { ensurePgSchema } from '../fleet/pg-migrate';
import { PgAuditReader } from '../fleet/pg-reader';
import { createLogger } from '../log';

const DEFAULT_ADMIN_LISTEN = '127.0.0.1:3129';

/** What /api/policy says here: the console has no policy of its own; each node reports its version. */
export const NO_POLICY_IN_ADMIN_MODE = 'no policy in admin mode: tollgate admin reads the shared history only; each node\'s policy version is in GET /api/nodes';

export const ADMIN_HELP = `usage: tollgate admin (--audit-url URL | --audit-url-file FILE) [--admin-listen HOST:PORT]

The admin UI and API alone, on the fleet's shared audit history in PostgreSQL: no proxy.

  --audit-url URL          TOLLGATE_AUDIT_URL     postgres://USER@HOST:PORT/DB (prefer the variable
                                                   or --audit-url-file: a password on the command
                                                   line is in the process list)
  --audit-url-file FILE                            the URL, read from the file's first line
  --admin-listen HOST:PORT TOLLGATE_ADMIN_LISTEN  default ${DEFAULT_ADMIN_LISTEN}
                           TOLLGATE_ADMIN_TOKEN   required for a non-loopback address
  --admin-auth-proxy CIDR[,CIDR...]               TOLLGATE_ADMIN_AUTH_PROXY: reverse proxies whose
                                                   X-Forwarded-User names the admin in the record
                                                   of who looked (ignored from anyone else)

SIGTERM/SIGINT: stop and exit 0.
`;

interface AdminConfig {
  url: string;
  listen: { host: string; port: number };
  token: string | null;
  authProxy: IpRange[];
}

function resolveAdminConfig(values: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): AdminConfig {
  const url = resolveAuditUrl({
    url: typeof values['audit-url'] === 'string' ? values['audit-url'] : undefined,
    file: typeof values['audit-url-file'] === 'string' ? values['audit-url-file'] : undefined,
    env: env.TOLLGATE_AUDIT_URL,
  });
  if (url === null) throw new ConfigError('tollgate admin needs --audit-url, --audit-url-file or TOLLGATE_AUDIT_URL');
  const listenText = typeof values['admin-listen'] === 'string' ? values['admin-listen'] : env.TOLLGATE_ADMIN_LISTEN ?? DEFAULT_ADMIN_LISTEN;
  const listen = parseListen(listenText, '--admin-listen');
  const token = env.TOLLGATE_ADMIN_TOKEN ? env.TOLLGATE_ADMIN_TOKEN : null;
  // The same rule as serve (config.ts): the whole fleet's history is no less sensitive than one node's.
  if (!isLoopbackHost(listen.host) && token === null) {
    throw new ConfigError(`refusing to serve the admin UI on non-loopback ${listen.host} without TOLLGATE_ADMIN_TOKEN`);
  }
  const proxyText = typeof values['admin-auth-proxy'] === 'string' ? values['admin-auth-proxy'] : env.TOLLGATE_ADMIN_AUTH_PROXY ?? '';
  return { url, listen, token, authProxy: parseRangeList(proxyText, '--admin-auth-proxy') };
}

function scrubbed(err: unknown, url: string): string {
  return scrubSecret(err instanceof Error ? err.message : String(err), url);
}

/** `tollgate admin`: the console on the shared history, until SIGTERM/SIGINT. */
export async function runAdmin(args: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      options: { 'audit-url': { type: 'string' }, 'audit-url-file': { type: 'string' }, 'admin-listen': { type: 'string' }, 'admin-auth-proxy': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`tollgate admin: ${(err as Error).message}\n\n${ADMIN_HELP}`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(ADMIN_HELP);
    return 0;
  }
  const log = createLogger();
  let config: AdminConfig;
  try {
    config = resolveAdminConfig(values, process.env);
  } catch (err) {
    if (!(err instanceof ConfigError) && !(err instanceof AuditUrlError)) throw err;
    log.fatal(err.message);
    process.stderr.write(`tollgate admin: ${err.message}\n`);
    return 1;
  }
  const pool = openAuditPool(config.url, { applicationName: 'tollgate admin' });
  const where = redactAuditUrl(config.url);
  try {
    await ensurePgSchema(pool);
  } catch (err) {
    const message = `cannot prepare the shared history at ${where}: ${scrubbed(err, config.url)}`;
    log.fatal(message);
    process.stderr.write(`tollgate admin: ${message}\n`);
    await pool.end().catch(() => undefined);
    return 1;
  }
  const reader = new PgAuditReader(pool);
  const app = buildAdminApp({
    reader,
    auditHeads: () => shippedHeads(pool),
    token: config.token,
    noPolicyReason: NO_POLICY_IN_ADMIN_MODE,
    console: new PgConsoleStore(pool),
    authProxy: config.authProxy,
    ready: async () => {
      const answers = await reader.answers();
      return { ok: answers, detail: { audit_database: 'postgres', audit_database_answers: answers } };
    },
  });
  try {
    await app.listen({ host: config.listen.host, port: config.listen.port });
  } catch (err) {
    await app.close();
    await pool.end().catch(() => undefined);
    const message = `cannot listen: ${err instanceof Error ? err.message : String(err)}`;
    log.fatal(message);
    process.stderr.write(`tollgate admin: ${message}\n`);
    return 1;
  }
  const address = app.server.address() as AddressInfo;
  const admin = address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`;
  log.info({ admin, audit_url: where }, 'listening');
  return new Promise((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping');
      void app.close().then(() => pool.end()).then(() => resolve(0), () => resolve(1));
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
