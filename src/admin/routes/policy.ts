import type { FastifyInstance } from 'fastify';
import type { AuditReader } from '../../audit/reader';
import { parseTimeParam } from '../../audit/time-window';
import { FALLBACK_RULES, policyView } from '../policy-view';
import type { PolicySnapshot } from '../policy-view';
import { POLICY_QUERY_SCHEMA } from '../query-schema';

export interface PolicyRoutesOptions {
  reader: AuditReader;
  clock: () => Date;
  /** The policy in force; absent: the route answers 503 (nothing to show yet). */
  policy?: () => PolicySnapshot;
  noPolicyReason?: string;
}

const DEFAULT_HITS_WINDOW = '7d';

export function registerPolicyRoutes(app: FastifyInstance, opts: PolicyRoutesOptions): void {
  app.get<{ Querystring: { since?: string } }>(
    '/api/policy',
    { schema: { querystring: POLICY_QUERY_SCHEMA } },
    async (request, reply) => {
      const now = opts.clock();
      const sinceMs = parseTimeParam('since', request.query.since ?? DEFAULT_HITS_WINDOW, now);
      if (opts.policy === undefined) return reply.code(503).send({ error: opts.noPolicyReason ?? 'no policy is available to this admin app' });
      const snapshot = opts.policy();
      const names = [...snapshot.policy.rules.map((rule) => rule.name), ...FALLBACK_RULES];
      return policyView(snapshot, await opts.reader.ruleHits(names, sinceMs), sinceMs, now.getTime());
    },
  );
}
