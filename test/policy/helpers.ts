import { isIP } from 'node:net';
import { join } from 'node:path';
import { loadPolicy, type Policy } from '../../src/policy/load';
import type { RequestFacts } from '../../src/policy/types';

export const FIXTURES = join(__dirname, '..', 'fixtures', 'policies');

/** Loads a fixture folder and fails the test loudly if it does not load. */
export function fixturePolicy(name: string): Policy {
  const result = loadPolicy(join(FIXTURES, name));
  if (!result.ok) throw new Error(`fixture ${name} did not load: ${JSON.stringify(result.problems)}`);
  return result.policy;
}

export interface RequestSketch {
  /** `host:port` for a CONNECT, or `http://host[:port]/path` for plain HTTP. */
  target: string;
  method?: string;
  sourceIp?: string;
  now?: string;
}

function hostKind(host: string): RequestFacts['hostKind'] {
  const version = isIP(host);
  return version === 4 ? 'ipv4' : version === 6 ? 'ipv6' : 'name';
}

/** Builds RequestFacts the way the proxy does, without depending on target parsing. */
export function facts(sketch: RequestSketch): RequestFacts {
  const now = new Date(sketch.now ?? '2026-01-15T12:00:00Z');
  const sourceIp = sketch.sourceIp ?? '127.0.0.1';
  const http = /^http:\/\/(\[[^\]]+\]|[^/:]+)(?::(\d+))?(\/[^?]*)?/.exec(sketch.target);
  if (http) {
    const host = (http[1] ?? '').replace(/^\[|\]$/g, '');
    const port = Number(http[2] ?? 80);
    const method = sketch.method ?? 'GET';
    return { kind: 'http', host, hostKind: hostKind(host), port, method, path: http[3] ?? '/', sourceIp, user: null, now };
  }
  const connect = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(sketch.target);
  if (!connect) throw new Error(`bad target in test: ${sketch.target}`);
  const host = (connect[1] ?? '').replace(/^\[|\]$/g, '');
  return { kind: 'connect', host, hostKind: hostKind(host), port: Number(connect[2]), method: 'CONNECT', path: null, sourceIp, user: null, now };
}
