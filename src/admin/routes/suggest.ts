import type { FastifyInstance } from 'fastify';
import { parseRequestFilters, QueryInputError } from '../../audit/query';
import type { RawRequestFilters, RequestFilters, SearchPace } from '../../audit/query';
import type { AuditReader } from '../../audit/reader';
import { NoClientGroupsError, suggestPolicy } from '../../policy/suggest/suggest';
import type { SuggestBy } from '../../policy/suggest/types';
import { ExportedShapes, TooManyShapesError } from '../exported-shapes';
import type { PolicySnapshot } from '../policy-view';
import { SUGGEST_QUERY_SCHEMA } from '../query-schema';

interface SuggestQuery extends RawRequestFilters {
  min_requests?: number;
  by?: SuggestBy;
  with_paths?: '0' | '1';
}

export interface SuggestRoutesOptions {
  reader: AuditReader;
  clock: () => Date;
  pace?: SearchPace;
  /** The policy in force; absent: 503, as GET /api/policy answers (tollgate admin has none). */
  policy?: () => PolicySnapshot;
  noPolicyReason?: string;
  /** Distinct shapes the route holds at most (exported-shapes.ts); tests shrink it. */
  maxShapes?: number;
}

/** Without `since`: `tollgate policy suggest`'s default window, 14 days. */
export const DEFAULT_SUGGEST_WINDOW_MS = 14 * 86_400_000;

/**
 * The filters' window with the suggestion's defaults: it ends at `until` or now, and begins 14
 * days earlier unless `since` says otherwise. Without `until` the export's bound is just past now:
 * the CLI's window includes its end, the filters' excludes it.
 */
function suggestWindow(filters: RequestFilters, now: Date): { summary: { sinceMs: number; untilMs: number }; exportUntilMs: number } {
  const untilMs = filters.window.untilMs ?? now.getTime();
  const sinceMs = filters.window.sinceMs ?? untilMs - DEFAULT_SUGGEST_WINDOW_MS;
  if (sinceMs >= untilMs) throw new QueryInputError('since', 'since must be earlier than until (or now, without until)');
  return { summary: { sinceMs, untilMs }, exportUntilMs: filters.window.untilMs ?? untilMs + 1 };
}

/** Named in the YAML's header: which history, and which filters chose its records. */
function sourceLabel(engine: AuditReader['engine'], raw: RawRequestFilters): string {
  const narrowing = Object.entries(raw).filter(([key, value]) => key !== 'since' && key !== 'until' && typeof value === 'string');
  const filters = narrowing.length === 0 ? 'no filter' : `filters ${narrowing.map(([key, value]) => `${key}=${String(value)}`).join(' ')}`;
  return `the ${engine} audit history through the admin API (${filters})`;
}

/**
 * GET /api/policy/suggest: `tollgate policy suggest` for the records the /api/requests filters
 * select, against the policy in force. Answers `{ yaml, summary }` as suggestPolicy returns them.
 */
export function registerSuggestRoutes(app: FastifyInstance, opts: SuggestRoutesOptions): void {
  app.get<{ Querystring: SuggestQuery }>(
    '/api/policy/suggest',
    { schema: { querystring: SUGGEST_QUERY_SCHEMA } },
    async (request, reply) => {
      const { min_requests: minRequests = 1, by = null, with_paths: withPaths, ...raw } = request.query;
      const now = opts.clock();
      const filters = parseRequestFilters(raw, now);
      const window = suggestWindow(filters, now);
      if (opts.policy === undefined) return reply.code(503).send({ error: opts.noPolicyReason ?? 'no policy is available to this admin app' });
      const { policy } = opts.policy();
      const exportFilters: RequestFilters = { ...filters, window: { sinceMs: window.summary.sinceMs, untilMs: window.exportUntilMs } };
      const traffic = new ExportedShapes(() => opts.reader.exportRecords(exportFilters, opts.pace), sourceLabel(opts.reader.engine, raw), opts.maxShapes);
      try {
        return await suggestPolicy(traffic, policy, { window: window.summary, now, minRequests, by, withPaths: withPaths === '1' });
      } catch (err) {
        if (err instanceof TooManyShapesError) return reply.code(400).send({ error: err.message });
        if (err instanceof NoClientGroupsError) {
          return reply.code(400).send({ error: 'by=client-group: the policy in force defines no client groups; use by=none' });
        }
        throw err;
      }
    },
  );
}
