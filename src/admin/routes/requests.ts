import type { FastifyInstance } from 'fastify';
import { parseRequestFilters } from '../../audit/query';
import type { RawRequestFilters, SearchPace } from '../../audit/query';
import type { AuditReader } from '../../audit/reader';
import { LIST_QUERY_SCHEMA } from '../query-schema';

interface ListQuery extends RawRequestFilters {
  limit?: number;
  cursor?: string;
  after_id?: number;
}

export interface RequestRoutesOptions {
  reader: AuditReader;
  clock: () => Date;
  /** How searches pace themselves (tests shrink it); absent: the defaults. */
  pace?: SearchPace;
}

/** A record id as written in a URL: a positive decimal integer, at most 16 digits. */
const RECORD_ID = /^[1-9][0-9]{0,15}$/;

function parseRecordId(raw: string): number | null {
  if (!RECORD_ID.test(raw)) return null;
  const id = Number(raw);
  return Number.isSafeInteger(id) ? id : null;
}

/** Bad filters throw QueryInputError, which the app's error handler answers with 400. */
export function registerRequestRoutes(app: FastifyInstance, opts: RequestRoutesOptions): void {
  app.get<{ Querystring: ListQuery }>('/api/requests', { schema: { querystring: LIST_QUERY_SCHEMA } }, async (request) => {
    const { limit, cursor, after_id: afterId, ...raw } = request.query;
    const filters = parseRequestFilters(raw, opts.clock());
    return opts.reader.listRequests({ limit, cursor, afterId, filters, pace: opts.pace });
  });

  app.get<{ Params: { id: string } }>('/api/requests/:id', async (request, reply) => {
    const id = parseRecordId(request.params.id);
    if (id === null) return reply.code(400).send({ error: 'id must be a positive integer' });
    const record = await opts.reader.getRequest(id);
    if (record === null) return reply.code(404).send({ error: `no request with id ${id}` });
    return record;
  });
}
