import ipaddr from 'ipaddr.js';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** `tollgate serve` options, validated once and frozen. */
export interface ServeConfig {
  readonly listen: ListenAddress;
  readonly adminListen: ListenAddress;
  readonly policiesDir: string;
  readonly dbFile: string;
  readonly adminToken: string | null;
  readonly dnsTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly drainTimeoutMs: number;
}

export class ConfigError extends Error {}

interface OptionSpec {
  readonly flag: string;
  readonly env: string;
  readonly fallback: string;
  readonly help: string;
}

/** Every serve option in one table: flag, environment variable, default with its unit. */
export const SERVE_OPTIONS = {
  listen: { flag: 'listen', env: 'TOLLGATE_LISTEN', fallback: '127.0.0.1:3128', help: 'proxy address HOST:PORT (port 0 picks one)' },
  adminListen: { flag: 'admin-listen', env: 'TOLLGATE_ADMIN_LISTEN', fallback: '127.0.0.1:3129', help: 'admin UI/API address HOST:PORT' },
  policies: { flag: 'policies', env: 'TOLLGATE_POLICIES', fallback: './policies', help: 'folder of *.yaml policy files' },
  db: { flag: 'db', env: 'TOLLGATE_DB', fallback: './data/audit.db', help: 'SQLite audit database (folder created if missing)' },
  dnsTimeout: { flag: 'dns-timeout', env: 'TOLLGATE_DNS_TIMEOUT', fallback: '5s', help: 'destination DNS lookup limit (504 past it)' },
  connectTimeout: { flag: 'connect-timeout', env: 'TOLLGATE_CONNECT_TIMEOUT', fallback: '10s', help: 'destination TCP connect limit (504 past it)' },
  drainTimeout: { flag: 'drain-timeout', env: 'TOLLGATE_DRAIN_TIMEOUT', fallback: '30s', help: 'on SIGTERM, how long open tunnels may finish' },
} as const satisfies Record<string, OptionSpec>;

export type ServeOptionName = keyof typeof SERVE_OPTIONS;

/** Parse HOST:PORT, with IPv6 hosts in brackets. */
export function parseListen(text: string, what: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new ConfigError(`${what}: expected HOST:PORT (IPv6 in brackets), got "${text}"`);
  return { host: match[1] ?? match[2], port };
}

/** Durations like 500ms, 10s, 2m; a bare number is seconds. */
export function parseDuration(text: string, what: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$/.exec(text.trim());
  if (!match) throw new ConfigError(`${what}: expected a duration such as 500ms, 10s or 2m, got "${text}"`);
  const scale = match[2] === 'ms' ? 1 : match[2] === 'm' ? 60_000 : 1000;
  return Math.round(Number(match[1]) * scale);
}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (!ipaddr.isValid(host)) return false;
  const address = ipaddr.process(host);
  return address.range() === 'loopback';
}

/** Build the config from flags, then environment, then defaults. */
export function resolveServeConfig(flags: Partial<Record<ServeOptionName, string>>, env: NodeJS.ProcessEnv): ServeConfig {
  const pick = (name: ServeOptionName): string => {
    const spec = SERVE_OPTIONS[name];
    return flags[name] ?? env[spec.env] ?? spec.fallback;
  };
  const config: ServeConfig = {
    listen: parseListen(pick('listen'), '--listen'),
    adminListen: parseListen(pick('adminListen'), '--admin-listen'),
    policiesDir: pick('policies'),
    dbFile: pick('db'),
    adminToken: env.TOLLGATE_ADMIN_TOKEN ? env.TOLLGATE_ADMIN_TOKEN : null,
    dnsTimeoutMs: parseDuration(pick('dnsTimeout'), '--dns-timeout'),
    connectTimeoutMs: parseDuration(pick('connectTimeout'), '--connect-timeout'),
    drainTimeoutMs: parseDuration(pick('drainTimeout'), '--drain-timeout'),
  };
  if (!isLoopbackHost(config.adminListen.host) && config.adminToken === null) {
    throw new ConfigError(
      `refusing to serve the admin UI on non-loopback ${config.adminListen.host} without TOLLGATE_ADMIN_TOKEN`,
    );
  }
  return Object.freeze(config);
}
