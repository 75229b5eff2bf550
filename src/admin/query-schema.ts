import { MAX_HOST_FILTER_LENGTH, MAX_NODE_LENGTH, MAX_Q_LENGTH } from '../audit/filters';
import { MAX_PAGE_LIMIT } from '../audit/query';

/**
 * Query-string schemas. Every value arrives as a string and is parsed, with messages that say
 * how to fix it, in src/audit/filters.ts; the schemas only bound sizes and refuse unknown
 * parameters (additionalProperties: false): a misspelt filter silently ignored would hand back
 * unfiltered records as if they matched.
 */
const TIME = { type: 'string', minLength: 1, maxLength: 64 } as const;

export const TIME_PROPERTIES = { since: TIME, until: TIME } as const;

export const FILTER_PROPERTIES = {
  host: { type: 'string', minLength: 1, maxLength: MAX_HOST_FILTER_LENGTH },
  client: { type: 'string', minLength: 1, maxLength: 100 },
  decision: { type: 'string', enum: ['allow', 'deny'] },
  would_deny: { type: 'string', enum: ['true', 'false'] },
  status: { type: 'string', minLength: 1, maxLength: 3 },
  ...TIME_PROPERTIES,
  q: { type: 'string', maxLength: MAX_Q_LENGTH },
  node: { type: 'string', minLength: 1, maxLength: MAX_NODE_LENGTH },
  tunnel_id: { type: 'string', minLength: 1, maxLength: 16 },
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

export const STATS_QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: { ...TIME_PROPERTIES, top: { type: 'integer', minimum: 1, maximum: 100 } },
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
