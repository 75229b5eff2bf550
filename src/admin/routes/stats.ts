import type { FastifyInstance } from 'fastify';
import type { FirstSeenBy } from '../../audit/first-seen';
import type { AuditReader } from '../../audit/reader';
import type { StatsWindow } from '../../audit/stats';
import { QueryInputError } from '../../audit/query-errors';
import { parseTimeWindow } from '../../audit/time-window';
import type { TimeWindow } from '../../audit/time-window';
import { parseRequestFilters } from '../../audit/filters';
import type { RawRequestFilters } from '../../audit/filters';
import { FIRST_SEEN_QUERY_SCHEMA, STATS_QUERY_SCHEMA } from '../query-schema';

export interface StatsRoutesOptions {
  reader: AuditReader;
  clock: () => Date;
}

interface WindowQuery {
  since?: string;
  until?: string;
}

const DAY_MS = 86_400_000;
const DEFAULT_TOP = 10;
const DEFAULT_FIRST_SEEN_LIMIT = 100;

/** The window of an aggregate, as parsed: the last 24 hours unless said otherwise. */
function statsWindow(window: TimeWindow, now: Date): StatsWindow {
  const untilMs = window.untilMs ?? now.getTime();
  const sinceMs = window.sinceMs ?? untilMs - DAY_MS;
  if (sinceMs >= untilMs) throw new QueryInputError('since', 'since must be earlier than until (default: now)');
  return { sinceMs, untilMs };
}

export function registerStatsRoutes(app: FastifyInstance, opts: StatsRoutesOptions): void {
  /** Every /api/requests filter applies (SPEC §6); the window defaults to the last 24 hours. */
  app.get<{ Querystring: RawRequestFilters & { top?: number } }>(
    '/api/stats',
    { schema: { querystring: STATS_QUERY_SCHEMA } },
    async (request) => {
      const { top = DEFAULT_TOP, ...raw } = request.query;
      const now = opts.clock();
      const filters = parseRequestFilters(raw, now);
      return opts.reader.stats(statsWindow(filters.window, now), top, filters);
    },
  );

  /** "The view a team checks every morning": destinations never seen before the window. */
  app.get<{ Querystring: WindowQuery & { by?: FirstSeenBy; limit?: number } }>(
    '/api/first-seen',
    { schema: { querystring: FIRST_SEEN_QUERY_SCHEMA } },
    async (request) => {
      const { by = 'host', limit = DEFAULT_FIRST_SEEN_LIMIT } = request.query;
      const now = opts.clock();
      return opts.reader.firstSeen(statsWindow(parseTimeWindow(request.query, now), now), by, limit);
    },
  );

  /** The replicas in this history, with their policy versions and last contact (SPEC §6). */
  app.get('/api/nodes', async () => opts.reader.nodes(opts.clock()));
}
