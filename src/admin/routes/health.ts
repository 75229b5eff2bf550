import type { FastifyInstance, FastifyRequest } from 'fastify';

export interface ReadinessReport {
  ok: boolean;
  detail: Record<string, unknown>;
}

/** Who asks: an authenticated request may see error texts (they can name hosts and users). */
export interface ReadinessView {
  authenticated: boolean;
}

export interface HealthRoutesOptions {
  /**
   * Readiness of everything but the audit log (policy loaded, ...), from the serve command; or
   * for `tollgate admin`, whether the shared history answers.
   */
  ready: (view: ReadinessView) => ReadinessReport | Promise<ReadinessReport>;
  /** Whether the request would pass access control (access.ts isAuthenticated). */
  authenticated: (request: FastifyRequest) => boolean;
  /** The audit log accepts writes (AuditStore.isWritable); absent where nothing is written. */
  auditWritable?: () => boolean;
}

/**
 * Liveness and readiness (SPEC §5). Both stay open when an admin token is set: orchestrators
 * probe them without credentials. Without credentials /readyz says only `{ ready }`: its detail
 * names policy files, rules and reload errors, which are nobody else's business (issue 19).
 */
export function registerHealthRoutes(app: FastifyInstance, opts: HealthRoutesOptions): void {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (request, reply) => {
    const authenticated = opts.authenticated(request);
    const report = await opts.ready({ authenticated });
    const writable = opts.auditWritable === undefined ? {} : { audit_writable: opts.auditWritable() };
    const ready = report.ok && (writable.audit_writable ?? true);
    if (!authenticated) return reply.code(ready ? 200 : 503).send({ ready });
    // `ready` last, so a detail key of the same name cannot contradict the status code.
    return reply
      .code(ready ? 200 : 503)
      .send({ ...report.detail, ...writable, ready });
  });
}
