import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../../src/admin/app';
import { AUDIT_RECORD_FIELDS } from '../../src/audit/query';
import type { AuditReader } from '../../src/audit/reader';
import type { AuditOpen, AuditRecordJson } from '../../src/audit/record-types';
import { openFacts } from './audit-log-fixtures';

/**
 * Records of an inspected tunnel (issue 18: kind https, tunnel_id) and what the admin API must
 * answer about them on either engine: test/audit-tunnel-field.test.ts (the local store) and
 * test/audit-tunnel-field-pg.test.ts (PostgreSQL).
 */

export const NOW = new Date('2025-03-01T12:05:00.000Z');
export const NODE = 'node-tunnel';

export function adminOn(reader: AuditReader): FastifyInstance {
  return buildAdminApp({ reader, ready: () => ({ ok: true, detail: {} }), clock: () => NOW });
}

export async function getJson<T>(app: FastifyInstance, url: string): Promise<T> {
  const res = await app.inject({ method: 'GET', url });
  expect(res.statusCode).toBe(200);
  return res.json<T>();
}

export async function pageIds(app: FastifyInstance, query: string): Promise<number[]> {
  return (await getJson<{ items: AuditRecordJson[] }>(app, `/api/requests?${query}`)).items.map((r) => r.id);
}

/** The tunnel's record, as the proxy opens it for a CONNECT to github.com with `tls: inspect`. */
export function tunnelOpen(n: number, overrides: Partial<AuditOpen> = {}): AuditOpen {
  return openFacts(n, { host: 'github.com', sni: 'github.com', rule: 'github-org', ...overrides });
}

/** A request read inside that tunnel: decided on its own, scheme https, its path recorded. */
export function innerOpen(n: number, tunnelId: number, overrides: Partial<AuditOpen> = {}): AuditOpen {
  return openFacts(n, {
    kind: 'https', method: 'GET', scheme: 'https', host: 'github.com', path: '/our-org/app', rule: 'github-org', tunnelId, ...overrides,
  });
}

export const DENIED_INNER: Partial<AuditOpen> = {
  method: 'POST', path: '/gists', decision: 'deny', rule: '(default)', reason: 'no rule matched; default deny',
};

/** What a store holds once a tunnel and its requests are written: ids the API must show. */
export interface Written {
  tunnel: number;
  /** Inside the tunnel, oldest first: an allowed GET, then a refused POST. */
  inner: number[];
  plain: number;
}

/**
 * Everything the API hands out, on either engine: the field in its place, the kind, the filter
 * (alone, with another filter, across pages, for a record with nothing inside), the exports.
 */
export async function expectTunnelThroughAdmin(app: FastifyInstance, w: Written): Promise<void> {
  const [get, post] = w.inner;
  const record = await getJson<AuditRecordJson>(app, `/api/requests/${get}`);
  expect(Object.keys(record)).toEqual([...AUDIT_RECORD_FIELDS]);
  expect(record).toMatchObject({ kind: 'https', scheme: 'https', method: 'GET', path: '/our-org/app', tunnel_id: w.tunnel });
  expect(await getJson<AuditRecordJson>(app, `/api/requests/${post}`)).toMatchObject({ kind: 'https', tunnel_id: w.tunnel, decision: 'deny' });
  expect(await getJson<AuditRecordJson>(app, `/api/requests/${w.tunnel}`)).toMatchObject({ kind: 'connect', tunnel_id: null });
  expect(await getJson<AuditRecordJson>(app, `/api/requests/${w.plain}`)).toMatchObject({ kind: 'http', tunnel_id: null });

  const page = await getJson<{ items: AuditRecordJson[] }>(app, '/api/requests');
  const keys = Object.keys(page.items[0]);
  expect(keys.indexOf('tunnel_id')).toBe(keys.indexOf('sni') + 1);

  // The tunnel's page: the requests inside it, newest first; nothing else.
  expect(await pageIds(app, `tunnel_id=${w.tunnel}`)).toEqual([post, get]);
  expect(await pageIds(app, `tunnel_id=${w.tunnel}&decision=deny`)).toEqual([post]);
  expect(await pageIds(app, `tunnel_id=${w.tunnel}&host=other.example`)).toEqual([]);
  const first = await getJson<{ items: AuditRecordJson[]; next_cursor: string }>(app, `/api/requests?tunnel_id=${w.tunnel}&limit=1`);
  expect(first.items.map((r) => r.id)).toEqual([post]);
  expect(await pageIds(app, `tunnel_id=${w.tunnel}&limit=1&cursor=${first.next_cursor}`)).toEqual([get]);
  expect(await pageIds(app, `tunnel_id=${w.plain}`)).toEqual([]);
  expect(await pageIds(app, `tunnel_id=${get}`)).toEqual([]);
  expect(await pageIds(app, 'tunnel_id=9007199254740991')).toEqual([]);

  const csv = await app.inject({ method: 'GET', url: '/api/requests/export?format=csv' });
  expect(csv.statusCode).toBe(200);
  const lines = csv.body.split('\r\n').filter((line) => line !== '');
  expect(lines[0].split(',')).toEqual([...AUDIT_RECORD_FIELDS]);
  expect(lines[0]).toContain(',sni,tunnel_id,decision,');
  const row = (id: number): string => lines.find((line) => line.startsWith(`${id},`)) ?? '';
  expect(row(get)).toContain(`,https,GET,https,github.com,443,/our-org/app,203.0.113.9,,${w.tunnel},allow,`);
  expect(row(w.tunnel)).toContain(',connect,CONNECT,,github.com,443,,203.0.113.9,github.com,,allow,');
  expect(row(w.plain)).toContain(',203.0.113.9,,,allow,');

  const ndjson = await app.inject({ method: 'GET', url: `/api/requests/export?format=ndjson&tunnel_id=${w.tunnel}` });
  const exported = ndjson.body.trimEnd().split('\n').map((line) => JSON.parse(line) as AuditRecordJson);
  expect(exported.map((r) => [r.id, r.kind, r.tunnel_id])).toEqual([[post, 'https', w.tunnel], [get, 'https', w.tunnel]]);
  const csvInside = await app.inject({ method: 'GET', url: `/api/requests/export?format=csv&tunnel_id=${w.tunnel}` });
  expect(csvInside.body.split('\r\n').filter((line) => line !== '').slice(1).map((line) => Number(line.split(',')[0]))).toEqual([post, get]);
}
