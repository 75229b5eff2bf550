import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseRequestFilters } from '../../audit/filters';
import type { RawRequestFilters } from '../../audit/filters';
import { QueryInputError } from '../../audit/query-errors';
import { CONSOLE_ACTIONS, ViewConflictError } from '../console-store';
import type { ConsoleStore } from '../console-store';
import type { Identity } from '../identity';
import { FILTER_PROPERTIES } from '../query-schema';

export const MAX_VIEW_NAME = 100;
export const MAX_VIEW_QUERY = 2000;
const DEFAULT_EVENTS_LIMIT = 100;
const MAX_EVENTS_LIMIT = 1000;

export interface ViewRoutesOptions {
  console: ConsoleStore;
  clock: () => Date;
  identify: (request: FastifyRequest) => Identity;
  /** Whether this request's admin can sign out (a session cookie; not the token, not loopback). */
  canSignOut: (request: FastifyRequest) => boolean;
}

/** The filter part of the /api/requests query schema: a saved view's query is checked against it. */
const VIEW_FILTERS_SCHEMA = { type: 'object', additionalProperties: false, properties: FILTER_PROPERTIES } as const;
const FILTER_NAMES = Object.keys(FILTER_PROPERTIES);

/** The schema's first complaint about a view's filters, in the words the console shows. */
function schemaProblem(errors: ReadonlyArray<{ keyword: string; instancePath: string; params: Record<string, unknown> }>): string {
  const [first] = errors;
  const extra = first?.params.additionalProperty;
  if (first?.keyword === 'additionalProperties' && typeof extra === 'string') {
    return `query: "${extra}" is not a filter (known: ${FILTER_NAMES.join(', ')})`;
  }
  return `query: ${first?.instancePath.slice(1) ?? 'a filter'} is not a valid value for this filter`;
}

/**
 * A saved view's query: the filters as /api/requests takes them, checked as it checks them (its
 * schema's names and bounds, each name once, values that parse), so a view never opens on a
 * 400. Returned without a leading `?`. Relative times (`since=24h`) stay relative: the view
 * means "the last day".
 */
function checkViewQuery(request: FastifyRequest, text: string, now: Date): string {
  const query = text.startsWith('?') ? text.slice(1) : text;
  if (query.length > MAX_VIEW_QUERY) throw new QueryInputError('query', `query is longer than ${MAX_VIEW_QUERY} characters`);
  // No prototype: a parameter named __proto__ or constructor is a name like any other (not a filter).
  const raw: Record<string, string> = Object.create(null) as Record<string, string>;
  let twice: string | null = null;
  for (const [name, value] of new URLSearchParams(query)) {
    if (Object.hasOwn(raw, name)) twice ??= name;
    else raw[name] = value;
  }
  const validate = request.compileValidationSchema(VIEW_FILTERS_SCHEMA);
  if (!validate(raw)) throw new QueryInputError('query', schemaProblem(validate.errors ?? []));
  if (twice !== null) throw new QueryInputError('query', `query: "${twice}" is given twice`);
  try {
    parseRequestFilters(raw as RawRequestFilters, now);
  } catch (err) {
    if (err instanceof QueryInputError) throw new QueryInputError('query', `query: ${err.message}`);
    throw err;
  }
  return query;
}

function checkViewName(text: string): string {
  const name = text.trim();
  if (name === '' || name.length > MAX_VIEW_NAME || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new QueryInputError('name', `name must be 1 to ${MAX_VIEW_NAME} printable characters`);
  }
  return name;
}

const VIEW_BODY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'query'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: MAX_VIEW_NAME },
    query: { type: 'string', maxLength: MAX_VIEW_QUERY },
  },
} as const;

const EVENTS_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: MAX_EVENTS_LIMIT },
    before: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    action: { type: 'string', enum: CONSOLE_ACTIONS },
  },
} as const;

/** Saved views (SPEC §6), the console's events (who looked) and who the console thinks you are. */
export function registerViewRoutes(app: FastifyInstance, opts: ViewRoutesOptions): void {
  app.get('/api/views', async () => ({ items: await opts.console.listViews() }));

  app.post<{ Body: { name: string; query: string } }>('/api/views', { schema: { body: VIEW_BODY_SCHEMA }, bodyLimit: 8192 }, async (request, reply) => {
    const now = opts.clock();
    const name = checkViewName(request.body.name);
    const query = checkViewQuery(request, request.body.query, now);
    try {
      const view = await opts.console.createView({ name, query }, opts.identify(request), now);
      return reply.code(201).send(view);
    } catch (err) {
      if (err instanceof ViewConflictError) return reply.code(409).send({ error: err.message });
      throw err;
    }
  });

  app.delete<{ Params: { id: string } }>('/api/views/:id', async (request, reply) => {
    const id = /^[1-9][0-9]{0,15}$/.test(request.params.id) ? Number(request.params.id) : NaN;
    if (!Number.isSafeInteger(id)) return reply.code(400).send({ error: 'id must be a positive integer' });
    const deleted = await opts.console.deleteView(id, opts.identify(request), opts.clock());
    if (deleted === null) return reply.code(404).send({ error: `no view with id ${id}` });
    return reply.code(204).send();
  });

  app.get<{ Querystring: { limit?: number; before?: number; action?: (typeof CONSOLE_ACTIONS)[number] } }>(
    '/api/console/events',
    { schema: { querystring: EVENTS_QUERY_SCHEMA } },
    async (request) => {
      const limit = request.query.limit ?? DEFAULT_EVENTS_LIMIT;
      // One more than asked says whether an older page exists.
      const items = await opts.console.listEvents(limit + 1, request.query.before ?? null, request.query.action ?? null);
      const page = items.slice(0, limit);
      return { items: page, next_before: items.length > limit ? page[page.length - 1].id : null };
    },
  );

  app.get('/api/console/me', async (request) => ({ ...opts.identify(request), can_sign_out: opts.canSignOut(request) }));
}
