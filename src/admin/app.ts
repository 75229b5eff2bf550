import path from 'node:path';
import Fastify from 'fastify';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import fastifyStatic from '@fastify/static';
import { QueryInputError } from '../audit/query-errors';
import type { AuditStore } from '../audit/store';
import type { SearchPace } from '../audit/query';
import type { AuditReader } from '../audit/reader';
import { SqliteAuditReader } from '../audit/sqlite-reader';
import type { ProxyMetrics } from '../metrics';
import { hasValidSession, isAuthenticated, registerAccessControl } from './access';
import { LOGIN_LIMIT_DEFAULTS, LoginLimiter } from './login-limiter';
import type { PolicySnapshot } from './policy-view';
import { registerAuditHeadRoutes } from './routes/audit-head';
import type { ChainHeadView } from './routes/audit-head';
import { registerExportRoutes } from './routes/export';
import { registerFacetRoutes } from './routes/facets';
import type { FacetBudget } from '../audit/facets';
import { registerHealthRoutes } from './routes/health';
import type { ReadinessReport, ReadinessView } from './routes/health';
import { registerLoginRoutes } from './routes/login';
import { registerMetricsRoute } from './routes/metrics';
import { registerPolicyRoutes } from './routes/policy';
import { registerRequestRoutes } from './routes/requests';
import { registerStatsRoutes } from './routes/stats';
import { registerSuggestRoutes } from './routes/suggest';
import { SESSION_DEFAULTS, SessionStore } from './sessions';
import { SqliteConsoleStore } from './console-sqlite';
import type { ConsoleStore } from './console-store';
import { identify } from './identity';
import { registerViewRoutes } from './routes/views';
import type { IpRange } from '../policy/ip-range';

export type { ReadinessReport } from './routes/health';
export type { PolicySnapshot } from './policy-view';

export interface AdminAppOptions {
  /**
   * A replica's own store: read through a SqliteAuditReader on `store.db`, read at each request
   * (the store may reopen its file). Absent with `reader` (tollgate admin on PostgreSQL).
   */
  store?: Pick<AuditStore, 'db' | 'isWritable'> & {
    /**
     * The read barrier of a store whose index follows an audit log (logged-store.ts): an API
     * read waits until every request already answered is in the index.
     */
    syncIndex?(): Promise<boolean>;
  };
  /** Where API reads go instead of `store` (the shared history in PostgreSQL). */
  reader?: AuditReader;
  /** This replica's node name, on every record of `store` (default: the host name). */
  node?: string;
  /** Readiness apart from the audit log (policy loaded, ...); /readyz adds `audit_writable` with a store. */
  ready: (view: ReadinessView) => ReadinessReport | Promise<ReadinessReport>;
  logger?: boolean;
  /** TOLLGATE_ADMIN_TOKEN; null or absent: loopback-only, no token. */
  token?: string | null;
  /** The policy in force and the last reload, for GET /api/policy (503 without it). */
  policy?: () => PolicySnapshot;
  /** What GET /api/policy's 503 says without a policy (tollgate admin has none of its own). */
  noPolicyReason?: string;
  /** GET /api/policy/suggest holds at most this many distinct shapes (default 200,000); tests shrink it. */
  suggestMaxShapes?: number;
  /** The process's metrics, rendered by GET /metrics (503 without them). */
  metrics?: ProxyMetrics;
  /** "now" for relative times (since=24h), sessions and login limits; tests pass their own. */
  clock?: () => Date;
  /** GET /api/audit/head: the chain heads this process writes (serve); absent answers 501. */
  auditHeads?: () => ChainHeadView[] | Promise<ChainHeadView[]>;
  /** How long a UI login lasts (default 12 h). */
  sessionTtlMs?: number;
  /** How request searches pace themselves; tests shrink it to see partial pages. */
  searchPace?: SearchPace;
  /** Facet budgets in place of the defaults (facets.ts budgetFor); tests shrink them. */
  facetBudget?: (hasSearch: boolean) => FacetBudget;
  /**
   * Saved views and who looked (issue 19), kept apart from the audit index; the app closes it
   * when it closes. Absent: a SQLite store in memory (tests, tools), which forgets at exit.
   */
  console?: ConsoleStore;
  /** --admin-auth-proxy: peers whose X-Forwarded-User names the admin (identity.ts). */
  authProxy?: readonly IpRange[];
}

/** web-admin/ at the package root: two levels up from both src/admin and dist/admin. */
export const WEB_ADMIN_DIR = path.resolve(__dirname, '..', '..', 'web-admin');

/**
 * Sent on every response, errors and 404s included. The UI loads nothing from elsewhere and has
 * no inline script, so `default-src 'self'` costs nothing and blunts any XSS through logged
 * hostnames or paths; frame-ancestors/base-uri/form-action are not covered by default-src.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
});

function addSecurityHeaders(request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  reply.headers(SECURITY_HEADERS);
  // Audit records name clients and destinations: keep them out of browser and proxy caches.
  if (request.url.startsWith('/api/')) reply.header('cache-control', 'no-store');
  return Promise.resolve(payload);
}

/** Errors as `{ error }`; a 5xx hides its message (it may carry paths or SQL) and is logged. */
function sendError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof QueryInputError) return reply.code(400).send({ error: error.message });
  const status = error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : 500;
  if (status >= 500) {
    request.log.error({ err: error }, 'admin request failed');
    return reply.code(status).send({ error: 'internal error' });
  }
  return reply.code(status).send({ error: error.message });
}

/** Ajv's "must NOT have additional properties" does not say which one; a user needs the name. */
function formatSchemaErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  const messages = errors.map((error) => {
    const extra = error.params.additionalProperty;
    if (error.keyword === 'additionalProperties' && typeof extra === 'string') {
      return `${dataVar} parameter "${extra}" is not supported`;
    }
    return `${dataVar}${error.instancePath} ${error.message ?? 'is invalid'}`;
  });
  return new Error(messages.join(', '));
}

/** The admin HTTP app (SPEC §5), not listening: the caller listens, tests use inject(). */
export function buildAdminApp(opts: AdminAppOptions): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    // Without this Fastify strips unknown query parameters before validation; we want them
    // rejected (see requests.ts).
    ajv: { customOptions: { removeAdditional: false } },
    schemaErrorFormatter: formatSchemaErrors,
  });
  app.addHook('onSend', addSecurityHeaders);
  app.setErrorHandler(sendError);
  app.setNotFoundHandler((_request, reply) => reply.code(404).send({ error: 'not found' }));
  const token = opts.token ?? null;
  const clock = opts.clock ?? (() => new Date());
  const sessions = new SessionStore({ ...SESSION_DEFAULTS, ttlMs: opts.sessionTtlMs ?? SESSION_DEFAULTS.ttlMs, clock });
  registerAccessControl(app, { token, sessions });

  const store = opts.store;
  const reader = opts.reader ?? (store === undefined ? null : new SqliteAuditReader(() => store.db, opts.node));
  if (reader === null) throw new Error('buildAdminApp needs a store or a reader');
  const syncIndex = store?.syncIndex?.bind(store);
  // After access control (onRequest): an unauthenticated request never costs a catch-up.
  if (syncIndex !== undefined) {
    app.addHook('preHandler', async (request) => {
      if (request.url.startsWith('/api/')) await syncIndex();
    });
  }
  const authenticated = (request: FastifyRequest): boolean => isAuthenticated(request, { token, sessions });
  registerHealthRoutes(app, { ready: opts.ready, authenticated, auditWritable: store === undefined ? undefined : () => store.isWritable() });
  const authProxy = opts.authProxy ?? [];
  const consoleStore = opts.console ?? new SqliteConsoleStore(':memory:');
  app.addHook('onClose', async () => consoleStore.close());
  const who = (request: FastifyRequest) => identify(request, { token, sessions, authProxy });
  registerLoginRoutes(app, { token, sessions, limiter: new LoginLimiter({ ...LOGIN_LIMIT_DEFAULTS, clock }), webDir: WEB_ADMIN_DIR, authProxy });
  registerFacetRoutes(app, { reader, clock, budget: opts.facetBudget });
  registerRequestRoutes(app, { reader, clock, pace: opts.searchPace });
  registerExportRoutes(app, {
    reader,
    clock,
    pace: opts.searchPace,
    recordExport: (request, detail) => consoleStore.recordEvent('export', detail, who(request), clock()),
  });
  registerViewRoutes(app, {
    console: consoleStore,
    clock,
    identify: who,
    canSignOut: (request) => token !== null && hasValidSession(request, sessions),
  });
  registerStatsRoutes(app, { reader, clock });
  registerPolicyRoutes(app, { reader, clock, policy: opts.policy, noPolicyReason: opts.noPolicyReason });
  registerSuggestRoutes(app, {
    reader, clock, pace: opts.searchPace, policy: opts.policy, noPolicyReason: opts.noPolicyReason, maxShapes: opts.suggestMaxShapes,
  });
  registerMetricsRoute(app, opts.metrics);
  registerAuditHeadRoutes(app, {
    heads: opts.auditHeads,
    noHeadsReason: opts.reader !== undefined
      ? 'this shared history serves no chain heads'
      : 'this store keeps no audit log chain (an in-memory --db)',
  });
  app.register(fastifyStatic, { root: WEB_ADMIN_DIR, prefix: '/', index: 'index.html' });
  return app;
}
