import os from 'node:os';
import ipaddr from 'ipaddr.js';
import { derivedClientConnections, readDescriptorLimit } from './descriptors';
import type { DescriptorLimit } from './descriptors';
import { ConfigError } from './config-error';
import { parseMinFreeDisk } from './config-size';
import type { MinFreeDisk } from './config-size';
import { isInMemory } from './audit/connection';
import { AuditKeyError, readAuditKey } from './audit/log/verify-chain';
import { AuditUrlError, resolveAuditUrl } from './fleet/audit-url';
import { parseRange } from './policy/ip-range';
import type { IpRange } from './policy/ip-range';
import { DURATION_EXAMPLES, durationMs, MAX_TIMER_MS } from './duration';

export { ConfigError } from './config-error';
export { parseMinFreeDisk } from './config-size';
export type { MinFreeDisk } from './config-size';

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
  /** On SIGTERM, how long the proxy still takes new connections while /readyz fails (0: none). */
  readonly drainGraceMs: number;
  readonly tunnelIdleTimeoutMs: number;
  readonly tunnelMaxLifetimeMs: number;
  readonly requestIdleTimeoutMs: number;
  readonly maxTunnels: number;
  readonly maxTunnelsPerSource: number;
  /** Open client connections; past it a new one gets 503. */
  readonly maxClientConnections: number;
  /** The open-files limit read at start, which `auto` derived the cap from. */
  readonly descriptorLimit: DescriptorLimit;
  /** The users file for proxy credentials, or null. */
  readonly usersFile: string | null;
  /** Audit records started longer ago than this are deleted; 0 keeps every record. */
  readonly retainMs: number;
  /** Below this much free space on the audit folder's volume, requests get 503. */
  readonly minFreeDisk: MinFreeDisk;
  /** PRAGMA synchronous=FULL: every audit commit is fsynced (survives a power cut). */
  readonly auditFsync: boolean;
  /**
   * --audit-key: the file whose bytes key the audit log's chain (HMAC-SHA256), or null for plain
   * SHA-256. The path only, checked at load: the key is read where the log is opened, never kept here.
   */
  readonly auditKeyFile: string | null;
  /** Where audit records are shipped (PostgreSQL), or null; never logged whole (redactAuditUrl). */
  readonly auditUrl: string | null;
  /** This replica's name in the shared history. */
  readonly node: string;
  /** `stdout` or a file: one JSON line per completed record (null: off). */
  readonly accessLog: string | null;
  /** Load balancers that must send a PROXY protocol header (nobody else may); empty: off. */
  readonly proxyProtocolFrom: readonly IpRange[];
  /** Authenticating reverse proxies whose X-Forwarded-User names the admin (issue 19); empty: nobody. */
  readonly adminAuthProxy: readonly IpRange[];
  /** Proxy worker processes (node:cluster); 1 runs the proxy in this process, as before. */
  readonly workers: number;
  /** --max-client-connections was `auto`: each worker process derives its own from its open-files limit. */
  readonly maxClientConnectionsAuto: boolean;
  /**
   * --inspect-ca: the folder of ca.pem and ca-key.pem for `tls: inspect` rules, or null (nothing is
   * inspected). The path only: the CA is loaded and checked at start (inspect/ca.ts), by each
   * worker process for itself, so its key never crosses the cluster channel.
   */
  readonly inspectCa: string | null;
  /** --inspect-trust: a PEM bundle of CAs trusted for inspected destinations besides the system's, or null. */
  readonly inspectTrust: string | null;
}

interface OptionSpec {
  readonly flag: string;
  readonly env: string;
  readonly fallback: string;
  readonly help: string;
  /** A flag that takes no value (`--audit-fsync`); its variable takes 1/0, true/false. */
  readonly boolean?: true;
}

/** Every serve option in one table: flag, environment variable, default with its unit. */
export const SERVE_OPTIONS = {
  listen: { flag: 'listen', env: 'TOLLGATE_LISTEN', fallback: '127.0.0.1:3128', help: 'proxy address HOST:PORT (port 0 picks one)' },
  adminListen: { flag: 'admin-listen', env: 'TOLLGATE_ADMIN_LISTEN', fallback: '127.0.0.1:3129', help: 'admin UI/API address HOST:PORT' },
  policies: { flag: 'policies', env: 'TOLLGATE_POLICIES', fallback: './policies', help: 'folder of *.yaml policy files' },
  db: { flag: 'db', env: 'TOLLGATE_DB', fallback: './data/audit.db', help: 'SQLite audit database (folder created if missing)' },
  users: { flag: 'users', env: 'TOLLGATE_USERS_FILE', fallback: '', help: 'users file for proxy credentials (none by default)' },
  dnsTimeout: { flag: 'dns-timeout', env: 'TOLLGATE_DNS_TIMEOUT', fallback: '5s', help: 'destination DNS lookup limit (504 past it)' },
  connectTimeout: { flag: 'connect-timeout', env: 'TOLLGATE_CONNECT_TIMEOUT', fallback: '10s', help: 'destination TCP connect limit (504 past it)' },
  drainGrace: { flag: 'drain-grace', env: 'TOLLGATE_DRAIN_GRACE', fallback: '0', help: 'on SIGTERM, keep taking new connections this long while /readyz fails (a load balancer\'s time to notice)' },
  drainTimeout: { flag: 'drain-timeout', env: 'TOLLGATE_DRAIN_TIMEOUT', fallback: '30s', help: 'on SIGTERM, how long open tunnels may finish' },
  tunnelIdleTimeout: { flag: 'tunnel-idle-timeout', env: 'TOLLGATE_TUNNEL_IDLE_TIMEOUT', fallback: '5m', help: 'close a tunnel with no bytes either way for this long' },
  tunnelMaxLifetime: { flag: 'tunnel-max-lifetime', env: 'TOLLGATE_TUNNEL_MAX_LIFETIME', fallback: '24h', help: 'close any tunnel open this long (0 = no limit)' },
  requestIdleTimeout: { flag: 'request-idle-timeout', env: 'TOLLGATE_REQUEST_IDLE_TIMEOUT', fallback: '60s', help: 'plain HTTP: destination silent this long -> 504' },
  maxTunnels: { flag: 'max-tunnels', env: 'TOLLGATE_MAX_TUNNELS', fallback: '8000', help: 'open tunnels overall (429 past it)' },
  maxTunnelsPerSource: { flag: 'max-tunnels-per-source', env: 'TOLLGATE_MAX_TUNNELS_PER_SOURCE', fallback: '1000', help: 'open tunnels per client address (429 past it)' },
  maxClientConnections: { flag: 'max-client-connections', env: 'TOLLGATE_MAX_CLIENT_CONNECTIONS', fallback: 'auto', help: 'open client connections (503 past it; auto = what fits the open-files limit)' },
  retain: { flag: 'retain', env: 'TOLLGATE_RETAIN', fallback: '0', help: 'delete audit records older than this, e.g. 14d (0 = keep every record)' },
  minFreeDisk: { flag: 'min-free-disk', env: 'TOLLGATE_MIN_FREE_DISK', fallback: '1GiB,5%', help: 'free space below which requests get 503: SIZE, PERCENT% or both, the smaller applies (0 = off)' },
  accessLog: { flag: 'access-log', env: 'TOLLGATE_ACCESS_LOG', fallback: '', help: 'one JSON line per completed record: stdout or FILE (reopened on SIGUSR1; off by default)' },
  auditFsync: { flag: 'audit-fsync', env: 'TOLLGATE_AUDIT_FSYNC', fallback: 'false', help: 'fsync every audit commit (survives a power cut; costs write throughput)', boolean: true },
  auditKey: { flag: 'audit-key', env: 'TOLLGATE_AUDIT_KEY', fallback: '', help: 'key the audit log\'s chain of hashes (HMAC-SHA256) with this file\'s bytes (mode 0600); see tollgate audit verify' },
  auditUrl: { flag: 'audit-url', env: 'TOLLGATE_AUDIT_URL', fallback: '', help: 'ship audit records to this PostgreSQL URL (prefer the variable or --audit-url-file: a flag shows in the process list)' },
  auditUrlFile: { flag: 'audit-url-file', env: 'TOLLGATE_AUDIT_URL_FILE', fallback: '', help: 'read the PostgreSQL URL from this file' },
  proxyProtocolFrom: { flag: 'proxy-protocol-from', env: 'TOLLGATE_PROXY_PROTOCOL_FROM', fallback: '', help: 'CIDR[,CIDR...]: load balancers that must send a PROXY protocol v1/v2 header (refused from anyone else; off by default)' },
  inspectCa: { flag: 'inspect-ca', env: 'TOLLGATE_INSPECT_CA', fallback: '', help: 'folder of ca.pem and ca-key.pem (mode 0600; see tollgate ca init) for rules with tls: inspect (off by default)' },
  inspectTrust: { flag: 'inspect-trust', env: 'TOLLGATE_INSPECT_TRUST', fallback: '', help: 'PEM bundle of CAs trusted for inspected destinations besides the system CAs (needs --inspect-ca)' },
  adminAuthProxy: { flag: 'admin-auth-proxy', env: 'TOLLGATE_ADMIN_AUTH_PROXY', fallback: '', help: 'CIDR[,CIDR...]: reverse proxies whose X-Forwarded-User header names the admin in the console\'s record of who looked (ignored from anyone else; off by default)' },
  workers: { flag: 'workers', env: 'TOLLGATE_WORKERS', fallback: '1', help: 'proxy worker processes: N or auto (one per core); 1 = a single process' },
  node: { flag: 'node', env: 'TOLLGATE_NODE', fallback: '', help: "this replica's name in the shared audit history (default the host name)" },
} as const satisfies Record<string, OptionSpec>;

export type ServeOptionName = keyof typeof SERVE_OPTIONS;

/** Parse HOST:PORT, with IPv6 hosts in brackets. */
export function parseListen(text: string, what: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new ConfigError(`${what}: expected HOST:PORT (IPv6 in brackets), got "${text}"`);
  return { host: match[1] ?? match[2], port };
}

/** Durations like 500ms, 10s, 2m, 24h, 14d, 2w (src/duration.ts); a bare number is seconds. */
export function parseDuration(text: string, what: string): number {
  const ms = durationMs(text.trim(), 's');
  if (ms === null) throw new ConfigError(`${what}: expected a duration such as ${DURATION_EXAMPLES}, got "${text}"`);
  if (!Number.isSafeInteger(ms)) throw new ConfigError(`${what}: "${text}" is too long`);
  return ms;
}

/** A duration a timer waits for: at most Node's longest timer (24.8 days). */
export function parseTimerDuration(text: string, what: string): number {
  const ms = parseDuration(text, what);
  if (ms > MAX_TIMER_MS) throw new ConfigError(`${what}: "${text}" is longer than a timer can wait (at most 24d)`);
  return ms;
}

const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on']);
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off', '']);

/** A boolean option: the flag alone gives "true"; a variable says 1/0, true/false, yes/no, on/off. */
export function parseBoolean(text: string, what: string): boolean {
  const word = text.trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  throw new ConfigError(`${what}: expected 1 or 0 (true or false), got "${text}"`);
}

/** The largest count a flag takes (--max-tunnels, --batch-size...): seven digits, past any real need. */
export const MAX_COUNT = 9_999_999;

/**
 * A whole-number flag from `min` to `max`: decimal digits, with surrounding spaces (an environment
 * variable may carry them) and leading zeros allowed; a sign, a fraction or an exponent is not.
 */
export function parseWholeNumber(text: string, flag: string, min: number, max: number): number {
  const digits = text.trim();
  const n = /^[0-9]{1,15}$/.test(digits) ? Number(digits) : NaN;
  if (!(n >= min && n <= max)) throw new ConfigError(`${flag}: expected a whole number from ${min} to ${max}, got "${text}"`);
  return n;
}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (!ipaddr.isValid(host)) return false;
  const address = ipaddr.process(host);
  return address.range() === 'loopback';
}

/** `auto`, or a count given by the operator. */
function parseClientConnections(text: string, limit: DescriptorLimit): number {
  return text.trim() === 'auto' ? derivedClientConnections(limit) : parseWholeNumber(text, '--max-client-connections', 1, MAX_COUNT);
}

/** `auto` is one worker per core the process may use (os.availableParallelism). */
function parseWorkers(text: string): number {
  if (text.trim() === 'auto') return os.availableParallelism();
  try {
    return parseWholeNumber(text, '--workers', 1, 256);
  } catch {
    throw new ConfigError(`--workers: expected auto or a number from 1 to 256, got "${text}"`);
  }
}

/** --audit-key: refused at start when empty, unreadable or readable by others (never echoed). */
function auditKeyFileOf(file: string): string | null {
  if (file === '') return null;
  try {
    readAuditKey(file);
  } catch (err) {
    if (err instanceof AuditKeyError) throw new ConfigError(err.message);
    throw err;
  }
  return file;
}

/** --audit-url or --audit-url-file (one of them), checked without ever echoing the URL. */
function auditUrlOf(url: string, file: string): string | null {
  try {
    return resolveAuditUrl({ url: url === '' ? undefined : url, file: file === '' ? undefined : file });
  } catch (err) {
    if (err instanceof AuditUrlError) throw new ConfigError(err.message);
    throw err;
  }
}

/** The name people see for this replica: the host name unless given; printable, at most 128 characters. */
function parseNodeName(text: string): string {
  const name = text.trim() === '' ? os.hostname() : text.trim();
  if (name.length > 128 || /[\u0000-\u001f\u007f]/.test(name)) throw new ConfigError(`--node: expected a printable name of at most 128 characters, got ${JSON.stringify(name.slice(0, 140))}`);
  return name;
}

/** Comma-separated ranges as policy files write them (a bare address is /32 or /128). */
export function parseRangeList(text: string, flag: string): IpRange[] {
  const items = text.split(',').map((item) => item.trim()).filter((item) => item !== '');
  return items.map((item) => {
    const parsed = parseRange(item);
    if (!parsed.ok) throw new ConfigError(`${flag}: ${parsed.message}`);
    return parsed.range;
  });
}

/**
 * Build the config from flags, then environment, then defaults. The open-files limit is read
 * here, once, at start (tests pass their own).
 */
export function resolveServeConfig(
  flags: Partial<Record<ServeOptionName, string>>,
  env: NodeJS.ProcessEnv,
  descriptorLimit: DescriptorLimit = readDescriptorLimit(),
): ServeConfig {
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
    dnsTimeoutMs: parseTimerDuration(pick('dnsTimeout'), '--dns-timeout'),
    connectTimeoutMs: parseTimerDuration(pick('connectTimeout'), '--connect-timeout'),
    drainTimeoutMs: parseTimerDuration(pick('drainTimeout'), '--drain-timeout'),
    drainGraceMs: parseTimerDuration(pick('drainGrace'), '--drain-grace'),
    tunnelIdleTimeoutMs: parseTimerDuration(pick('tunnelIdleTimeout'), '--tunnel-idle-timeout'),
    tunnelMaxLifetimeMs: parseTimerDuration(pick('tunnelMaxLifetime'), '--tunnel-max-lifetime'),
    requestIdleTimeoutMs: parseTimerDuration(pick('requestIdleTimeout'), '--request-idle-timeout'),
    maxTunnels: parseWholeNumber(pick('maxTunnels'), '--max-tunnels', 1, MAX_COUNT),
    maxTunnelsPerSource: parseWholeNumber(pick('maxTunnelsPerSource'), '--max-tunnels-per-source', 1, MAX_COUNT),
    maxClientConnections: parseClientConnections(pick('maxClientConnections'), descriptorLimit),
    descriptorLimit,
    usersFile: pick('users') === '' ? null : pick('users'),
    retainMs: parseDuration(pick('retain'), '--retain'),
    minFreeDisk: parseMinFreeDisk(pick('minFreeDisk'), '--min-free-disk'),
    auditFsync: parseBoolean(pick('auditFsync'), '--audit-fsync'),
    auditKeyFile: auditKeyFileOf(pick('auditKey')),
    auditUrl: auditUrlOf(pick('auditUrl'), pick('auditUrlFile')),
    node: parseNodeName(pick('node')),
    accessLog: pick('accessLog') === '' ? null : pick('accessLog'),
    proxyProtocolFrom: parseRangeList(pick('proxyProtocolFrom'), '--proxy-protocol-from'),
    adminAuthProxy: parseRangeList(pick('adminAuthProxy'), '--admin-auth-proxy'),
    workers: parseWorkers(pick('workers')),
    maxClientConnectionsAuto: pick('maxClientConnections').trim() === 'auto',
    inspectCa: pick('inspectCa') === '' ? null : pick('inspectCa'),
    inspectTrust: pick('inspectTrust') === '' ? null : pick('inspectTrust'),
  };
  if (config.auditUrl !== null && isInMemory(config.dbFile)) {
    throw new ConfigError('--audit-url needs an audit file (--db FILE): an in-memory store has no log to ship from');
  }
  if (config.auditKeyFile !== null && isInMemory(config.dbFile)) {
    throw new ConfigError('--audit-key keys the audit log\'s chain, which an in-memory --db does not have: give --db a file');
  }
  if (config.accessLog !== null && isInMemory(config.dbFile)) {
    throw new ConfigError('--access-log follows the audit log, which an in-memory --db does not have: give --db a file');
  }
  if (config.inspectTrust !== null && config.inspectCa === null) {
    throw new ConfigError('--inspect-trust is for destinations of inspected tunnels, and nothing is inspected without --inspect-ca DIR');
  }
  if (!isLoopbackHost(config.adminListen.host) && config.adminToken === null) {
    throw new ConfigError(
      `refusing to serve the admin UI on non-loopback ${config.adminListen.host} without TOLLGATE_ADMIN_TOKEN`,
    );
  }
  return Object.freeze(config);
}
