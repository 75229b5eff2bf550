import fc from 'fast-check';
import { CONNECT_SEEDS, hostileTarget, mutated, URI_SEEDS } from './targets';

/** One generated request, before the ports and the run tag are filled in. */
export interface FuzzRequest {
  method: string;
  target: string;
  version: string;
  headers: Array<[string, string]>;
  /** Line ending after each generated header line (the run tag line always ends in CRLF). */
  eol: string;
  body: string;
  /** Raw bytes inserted at a position of the finished message after the run tag, or null. */
  splice: { at: number; bytes: Uint8Array } | null;
  /** Half-close (FIN) right after writing, as some clients do. */
  halfClose: boolean;
}

/** The header that tags what reaches the origin with the fuzz run that sent it. */
export const RUN_HEADER = 'X-Fuzz-Run';

/** A complete request hidden in a body: if it ever reaches the origin as a request, it was smuggled. */
export const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: origin.test\r\n\r\n';

const METHODS = ['GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT'];

const method = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...METHODS) },
  { weight: 1, arbitrary: mutated(METHODS) },
);

const version = fc.oneof(
  { weight: 12, arbitrary: fc.constant('HTTP/1.1') },
  { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/0.9', 'HTTP/2.0', 'HTTP/1.9', 'HTTP/1', 'http/1.1', '') },
);

const FRAMING: Array<[string, string[]]> = [
  ['Content-Length', ['0', '5', '44', '-1', '5, 5', ' 5', '+5', '0x5', '99999999999999999999']],
  ['Transfer-Encoding', ['chunked', 'Chunked', 'gzip, chunked', 'chunked, gzip', 'identity', 'gzip', 'chunked, chunked', ' chunked']],
  ['Connection', ['close', 'keep-alive', 'upgrade', 'close, content-length', 'Transfer-Encoding', 'host']],
  ['Host', ['paste.test', 'origin.test', '', 'a b', 'origin.test:1']],
  ['Upgrade', ['websocket', 'h2c']],
  ['Expect', ['100-continue', 'nonsense']],
  ['Proxy-Authorization', ['Basic dXNlcjpwYXNz', 'Bearer x']],
  ['Proxy-Connection', ['keep-alive']],
];

/** Mostly well-formed, so that most requests get past Node's parser to the proxy's own code. */
const rarely = <T>(usual: fc.Arbitrary<T>, odd: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof({ weight: 9, arbitrary: usual }, { weight: 1, arbitrary: odd });

const framingHeader = fc
  .constantFrom(...FRAMING)
  .chain(([name, values]) => fc.tuple(rarely(fc.constant(name), mutated([name])), fc.constantFrom(...values)));

const randomHeader = fc.tuple(
  rarely(fc.constantFrom('X-A', 'Accept', 'Cookie', 'Content-Type', 'Via'), mutated(['X-Name', 'Content-Length', 'Transfer-Encoding'])),
  rarely(fc.constantFrom('1', 'text/plain', '', 'a=b; c=d'), fc.oneof(mutated(['value', 'chunked', '5']), fc.string({ unit: 'binary-ascii', maxLength: 20 }))),
);

/** Around the header-count limit (100) and far past Node's silent cut-off (~1000). */
const fillerCount = fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(98, 99, 100, 150, 1100) });

const headers = fc
  .tuple(fc.array(fc.oneof(framingHeader, randomHeader), { maxLength: 6 }), fillerCount)
  .map(([picked, filler]) => {
    const fill = Array.from({ length: filler }, (_, i): [string, string] => [`X-Filler-${i}`, 'y']);
    // Fillers first: a framing header after Node's cut-off is the smuggling case.
    return [...fill, ...picked];
  });

const body = fc.oneof(
  { weight: 6, arbitrary: fc.constant('') },
  { weight: 2, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 32 }) },
  { weight: 1, arbitrary: fc.constantFrom('5\r\nhello\r\n0\r\n\r\n', 'zz\r\nhello\r\n0\r\n\r\n', '5\nhello\r\n0\r\n\r\n', SMUGGLED, `${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`) },
);

const seedOrMutant = (seeds: readonly string[], prefix: string): fc.Arbitrary<string> =>
  fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...seeds) }, { weight: 1, arbitrary: hostileTarget(seeds, prefix) });

export const fuzzRequest: fc.Arbitrary<FuzzRequest> = fc
  .record({
    method,
    // Two thirds pristine seeds (they reach the policy, the guard and the origin), a third mutated.
    connectTarget: seedOrMutant(CONNECT_SEEDS, ''),
    uriTarget: seedOrMutant(URI_SEEDS, 'http://'),
    crossTarget: rarely(fc.constant(false), fc.constant(true)),
    version,
    headers,
    eol: fc.oneof({ weight: 15, arbitrary: fc.constant('\r\n') }, { weight: 1, arbitrary: fc.constantFrom('\n', '\r', '\r\r\n') }),
    body,
    // Most bodies are framed by a correct Content-Length; the others are left to the headers.
    frameBody: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    splice: rarely(fc.constant(null), fc.record({ at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) })),
    halfClose: fc.boolean(),
  })
  .map((r) => {
    // Usually the target matches the method; sometimes deliberately the other form.
    const connect = (r.method === 'CONNECT') !== r.crossTarget;
    const withLength: Array<[string, string]> =
      r.frameBody && r.body !== '' ? [...r.headers, ['Content-Length', String(Buffer.byteLength(r.body))]] : r.headers;
    return {
      method: r.method,
      target: connect ? r.connectTarget : r.uriTarget,
      version: r.version,
      headers: withLength,
      eol: r.eol,
      body: r.body,
      splice: r.splice,
      halfClose: r.halfClose,
    };
  });

/** The bytes on the wire; `{O}` is the HTTP origin's port for URIs, the TCP sink's for CONNECT. */
export function serialise(request: FuzzRequest, run: number, ports: { origin: number; sink: number; proxy: number }): Buffer {
  const target = fillTarget(request, ports);
  const lines = request.headers.map(([name, value]) => `${name}: ${value}${request.eol}`).join('');
  const line = request.version === '' ? `${request.method} ${target}` : `${request.method} ${target} ${request.version}`;
  const tagged = Buffer.from(`${line}\r\n${RUN_HEADER}: ${run}\r\n`, 'utf8');
  const message = Buffer.concat([tagged, Buffer.from(`${lines}\r\n${request.body}`, 'utf8')]);
  if (!request.splice) return message;
  // After the tag line, so what reaches the origin can still be traced to its run.
  const at = tagged.length + (request.splice.at % (message.length - tagged.length + 1));
  return Buffer.concat([message.subarray(0, at), request.splice.bytes, message.subarray(at)]);
}

export function fillTarget(request: FuzzRequest, ports: { origin: number; sink: number; proxy: number }): string {
  const upstream = request.method === 'CONNECT' ? ports.sink : ports.origin;
  return request.target.replaceAll('{O}', String(upstream)).replaceAll('{P}', String(ports.proxy));
}

/**
 * True when the bytes hold one complete request and no more: a single head terminator, at the
 * end or followed by a body that one exact Content-Length frames, and no Transfer-Encoding.
 */
export function isSingleRequest(request: FuzzRequest, bytes: Buffer): boolean {
  const text = bytes.toString('latin1');
  if (text.split('\r\n\r\n').length !== 2 || request.splice !== null || request.eol !== '\r\n') return false;
  const named = (wanted: string): string[] =>
    request.headers.filter(([name]) => name.toLowerCase() === wanted).map(([, value]) => value.trim());
  if (named('transfer-encoding').length > 0) return false;
  const lengths = named('content-length');
  if (request.body === '') return text.endsWith('\r\n\r\n') && lengths.every((value) => value === '0');
  return lengths.length === 1 && lengths[0] === String(Buffer.byteLength(request.body));
}
