import { MAX_HOST_FILTER_LENGTH, MAX_NAME_FILTER_LENGTH, MAX_NODE_LENGTH, MAX_Q_LENGTH, NEGATABLE_FILTERS } from '../audit/filters';
import { MAX_FACET_LIMIT } from '../audit/facets';
import { MAX_PAGE_LIMIT } from '../audit/query';

/**
 * Query-string schemas. Every value arrives as a string and is parsed, with messages that say
 * how to fix it, in src/audit/filters.ts; the schemas only bound sizes and refuse unknown
 * parameters (additionalProperties: false): a misspelt filter silently ignored would hand back
 * unfiltered records as if they matched.
 */
const TIME = { type: 'string', minLength: 1, maxLength: 64 } as const;

export const TIME_PROPERTIES = { since: TIME, until: TIME } as const;

/** The filters that may be negated (`not.NAME`), with their bounds. */
const MATCH_PROPERTIES = {
  host: { type: 'string', minLength: 1, maxLength: MAX_HOST_FILTER_LENGTH },
  client: { type: 'string', minLength: 1, maxLength: 100 },
  decision: { type: 'string', enum: ['allow', 'deny'] },
  would_deny: { type: 'string', enum: ['true', 'false'] },
  status: { type: 'string', minLength: 1, maxLength: 3 },
  q: { type: 'string', maxLength: MAX_Q_LENGTH },
  node: { type: 'string', minLength: 1, maxLength: MAX_NODE_LENGTH },
  tunnel_id: { type: 'string', minLength: 1, maxLength: 16 },
  rule: { type: 'string', minLength: 1, maxLength: MAX_NAME_FILTER_LENGTH },
  user: { type: 'string', minLength: 1, maxLength: MAX_NAME_FILTER_LENGTH },
} as const satisfies Record<(typeof NEGATABLE_FILTERS)[number], unknown>;

const NEGATED_PROPERTIES = Object.fromEntries(
  Object.entries(MATCH_PROPERTIES).map(([name, schema]) => [`not.${name}`, schema]),
) as { [K in keyof typeof MATCH_PROPERTIES as `not.${K}`]: (typeof MATCH_PROPERTIES)[K] };

export const FILTER_PROPERTIES = {
  ...MATCH_PROPERTIES,
  ...NEGATED_PROPERTIES,
  ...TIME_PROPERTIES,
} as const;

export const LIST_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...FILTER_PROPERTIES,
    limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE_LIMIT },
    cursor: { type: 'string', minLength: 1, maxLength: 64 },
    after_id: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
  },
} as const;

export const EXPORT_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: { ...FILTER_PROPERTIES, format: { type: 'string', enum: ['csv', 'ndjson'] } },
} as const;

/** /api/stats takes every /api/requests filter (SPEC §6), so Overview can honour History's. */
export const STATS_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: { ...FILTER_PROPERTIES, top: { type: 'integer', minimum: 1, maximum: 100 } },
} as const;

export const FACETS_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...FILTER_PROPERTIES,
    fields: { type: 'string', minLength: 1, maxLength: 200 },
    limit: { type: 'integer', minimum: 1, maximum: MAX_FACET_LIMIT },
  },
} as const;

export const FIRST_SEEN_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...TIME_PROPERTIES,
    by: { type: 'string', enum: ['host', 'client_host'] },
    limit: { type: 'integer', minimum: 1, maximum: 1000 },
  },
} as const;

export const POLICY_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: { since: TIME },
} as const;

/** GET /api/policy/suggest: the /api/requests filters and `tollgate policy suggest`'s options. */
export const SUGGEST_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...FILTER_PROPERTIES,
    min_requests: { type: 'integer', minimum: 1, maximum: 1_000_000_000 },
    by: { type: 'string', enum: ['client-group', 'none'] },
    with_paths: { type: 'string', enum: ['0', '1'] },
  },
} as const;
