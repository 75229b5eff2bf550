import { isIP } from 'node:net';
import fc from 'fast-check';
import { ProxyError } from '../../src/request/errors';
import { parseAbsoluteTarget, parseConnectTarget } from '../../src/request/target';
import type { Target } from '../../src/request/target';
import { fuzzBudget, reportThroughput } from './budget';
import { CONNECT_SEEDS, fillPorts, hostileTarget, URI_SEEDS } from './targets';

/**
 * Properties of the one target parser (STYLE habit 2): whatever bytes arrive, it returns a
 * Target that everything downstream can trust, or a 400 ProxyError; never another exception.
 */
const budget = fuzzBudget({ numRuns: 200, seconds: 10 });
const connectTargets = hostileTarget(CONNECT_SEEDS.map((s) => fillPorts(s, 8080, 3128)));
const uriTargets = hostileTarget(URI_SEEDS.map((s) => fillPorts(s, 8080, 3128)), 'http://');

const NAME = /^[a-z0-9._-]+$/;
/** What may be written into an upstream request line: printable ASCII, nothing that ends it. */
const REQUEST_LINE_SAFE = /^[\x21-\x7e]*$/;

/** The invariants every Target satisfies; returns the broken ones (empty when all hold). */
function brokenInvariants(target: Target): string[] {
  const broken: string[] = [];
  const check = (ok: boolean, what: string): void => void (ok || broken.push(what));
  check(Number.isInteger(target.port) && target.port >= 1 && target.port <= 65535, 'port is an integer 1..65535');
  check(target.host.length > 0, 'host is non-empty');
  check(target.host === target.host.toLowerCase(), 'host is lower case');
  check(!target.host.endsWith('.'), 'host has no trailing dot');
  if (target.hostKind === 'name') {
    check(NAME.test(target.host), 'a name has only [a-z0-9._-]');
    check(target.host.length <= 253, 'a name is at most 253 characters');
    check(isIP(target.host) === 0, 'a name is not an IP literal');
  }
  if (target.hostKind === 'ipv4') check(isIP(target.host) === 4, 'ipv4 host is a valid dotted quad');
  if (target.hostKind === 'ipv6') check(isIP(target.host) === 6 && !target.host.includes('['), 'ipv6 host is valid, without brackets');
  if (target.kind === 'connect') {
    check(target.scheme === null && target.path === null && target.search === '', 'CONNECT has no scheme, path or query');
  } else {
    check(target.scheme === 'http', 'scheme is http');
    check(target.path !== null && target.path.startsWith('/'), 'path starts with /');
    check(target.path !== null && REQUEST_LINE_SAFE.test(target.path) && !/[?#]/.test(target.path), 'path is request-line safe');
    check(target.search === '' || (target.search.startsWith('?') && REQUEST_LINE_SAFE.test(target.search)), 'query is empty or ?printable');
  }
  return broken;
}

type Parsed = { ok: true; target: Target } | { ok: false; error: unknown };

function attempt(parse: (text: string) => Target, text: string): Parsed {
  try {
    return { ok: true, target: parse(text) };
  } catch (error) {
    return { ok: false, error };
  }
}

/** The property shared by both parsers: a sound Target, or exactly a 400 ProxyError. */
function soundOrBadRequest(parsed: Parsed): void {
  if (parsed.ok) {
    expect(brokenInvariants(parsed.target)).toEqual([]);
  } else {
    expect(parsed.error).toBeInstanceOf(ProxyError);
    expect((parsed.error as ProxyError).status).toBe(400);
  }
}

/** WHATWG's reading of the host, with one trailing dot dropped as tollgate does. */
function whatwgHost(url: URL): string {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return host.endsWith('.') ? host.slice(0, -1) : host;
}

function runProperty(name: string, arbitrary: fc.Arbitrary<string>, check: (text: string) => void): void {
  let runs = 0;
  const startedAt = Date.now();
  fc.assert(
    fc.property(arbitrary, (text) => {
      runs += 1;
      check(text);
    }),
    budget.params,
  );
  if (budget.long) reportThroughput(name, runs, startedAt);
}

describe('target parser (fuzz)', () => {
  test(
    'a CONNECT authority becomes a sound Target or a 400',
    () => runProperty('parseConnectTarget', connectTargets, (text) => soundOrBadRequest(attempt(parseConnectTarget, text))),
    budget.jestTimeoutMs,
  );

  test(
    'an absolute URI becomes a sound Target or a 400',
    () => runProperty('parseAbsoluteTarget', uriTargets, (text) => soundOrBadRequest(attempt(parseAbsoluteTarget, text))),
    budget.jestTimeoutMs,
  );

  test(
    'an accepted URI names the host and port the WHATWG URL parser reads',
    () =>
      runProperty('URI vs WHATWG', uriTargets, (text) => {
        const parsed = attempt(parseAbsoluteTarget, text);
        if (!parsed.ok) return;
        const url = new URL(text);
        expect({ host: parsed.target.host, port: parsed.target.port }).toEqual({
          host: whatwgHost(url),
          port: url.port === '' ? 80 : Number(url.port),
        });
      }),
    budget.jestTimeoutMs,
  );

  test(
    'a host:port accepted by CONNECT is read the same way inside an http:// URI',
    () =>
      runProperty('CONNECT vs URI', connectTargets, (text) => {
        const connect = attempt(parseConnectTarget, text);
        if (!connect.ok) return;
        const uri = attempt(parseAbsoluteTarget, `http://${text}/`);
        expect(uri.ok && { host: uri.target.host, hostKind: uri.target.hostKind, port: uri.target.port }).toEqual({
          host: connect.target.host,
          hostKind: connect.target.hostKind,
          port: connect.target.port,
        });
      }),
    budget.jestTimeoutMs,
  );
});
