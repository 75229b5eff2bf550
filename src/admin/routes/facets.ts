import type { FastifyInstance } from 'fastify';
import { budgetFor, DEFAULT_FACET_LIMIT, parseFacetFields } from '../../audit/facets';
import type { FacetBudget } from '../../audit/facets';
import { parseRequestFilters } from '../../audit/filters';
import type { RawRequestFilters } from '../../audit/filters';
import { QueryInputError } from '../../audit/query-errors';
import type { AuditReader } from '../../audit/reader';
import { FACETS_QUERY_SCHEMA } from '../query-schema';

interface FacetsQueryString extends RawRequestFilters {
  fields?: string;
  limit?: number;
}

export interface FacetRoutesOptions {
  reader: AuditReader;
  clock: () => Date;
  /** Budgets in place of the defaults (tests shrink them to see a capped answer). */
  budget?: (hasSearch: boolean) => FacetBudget;
}

/**
 * GET /api/requests/facets?<filters>&fields=F,…[&limit=N] (SPEC §6): the total of the filtered
 * set and the top values of each field. Registered before /api/requests/:id would see "facets"
 * as an id (a static path wins in Fastify's router either way).
 */
export function registerFacetRoutes(app: FastifyInstance, opts: FacetRoutesOptions): void {
  app.get<{ Querystring: FacetsQueryString }>('/api/requests/facets', { schema: { querystring: FACETS_QUERY_SCHEMA } }, async (request) => {
    const { fields: fieldsText, limit = DEFAULT_FACET_LIMIT, ...raw } = request.query;
    const fields = parseFacetFields(fieldsText);
    if (typeof fields === 'string') throw new QueryInputError('fields', fields);
    const filters = parseRequestFilters(raw, opts.clock());
    const hasSearch = filters.q !== null || filters.not.q !== null;
    return opts.reader.facets({ filters, fields, limit, budget: (opts.budget ?? budgetFor)(hasSearch) });
  });
}
