import type { FastifyInstance } from 'fastify';
import type Database from 'better-sqlite3';
import { getRequest, listRequests, MAX_PAGE_LIMIT, QueryInputError } from '../../audit/query';

interface ListQuery {
  limit?: number;
  cursor?: string;
}

/**
 * additionalProperties false: the SPEC §5 filters (host, decision, ...) are not implemented yet,
 * and silently ignoring one would hand back unfiltered records as if they matched.
 */
const listQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE_LIMIT },
    cursor: { type: 'string', minLength: 1, maxLength: 64 },
  },
} as const;

/** A record id as written in a URL: a positive decimal integer, at most 16 digits. */
const RECORD_ID = /^[1-9][0-9]{0,15}$/;

function parseRecordId(raw: string): number | null {
  if (!RECORD_ID.test(raw)) return null;
  const id = Number(raw);
  return Number.isSafeInteger(id) ? id : null;
}

export function registerRequestRoutes(app: FastifyInstance, opts: { db: Database.Database }): void {
  app.get<{ Querystring: ListQuery }>(
    '/api/requests',
    { schema: { querystring: listQuerySchema } },
    async (request, reply) => {
      try {
        return listRequests(opts.db, { limit: request.query.limit, cursor: request.query.cursor });
      } catch (err) {
        if (err instanceof QueryInputError) return reply.code(400).send({ error: err.message });
        throw err;
      }
    },
  );

  app.get<{ Params: { id: string } }>('/api/requests/:id', async (request, reply) => {
    const id = parseRecordId(request.params.id);
    if (id === null) return reply.code(400).send({ error: 'id must be a positive integer' });
    const record = getRequest(opts.db, id);
    if (record === null) return reply.code(404).send({ error: `no request with id ${id}` });
    return record;
  });
}
