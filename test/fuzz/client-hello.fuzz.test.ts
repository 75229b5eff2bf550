import fc from 'fast-check';
import { ClientHelloReader, MAX_CLIENT_HELLO_BYTES } from '../../src/proxy/client-hello';
import type { HelloVerdict } from '../../src/proxy/client-hello';
import {
  captureCurlHello, captureNodeHello, curlAvailable, extension, handshake, handshakeFromRecords, helloBody,
  records, u16, u8,
} from '../helpers/client-hellos';
import type { Extension } from '../helpers/client-hellos';
import { fuzzBudget, reportThroughput } from './budget';

/**
 * Properties of the ClientHello reader (src/proxy/client-hello.ts). Valid hellos, real and
 * hand-made, re-framed and split anywhere, read as what a second, simpler SNI extraction finds;
 * mutated ones never throw, never hold more than the bound, give a verdict that does not depend
 * on the chunking, and once given never change it.
 */
const budget = fuzzBudget({ numRuns: 150, seconds: 8 });

const SNI = /^[a-z0-9._-]{1,255}$/;
const KINDS = new Set(['need-more', 'hello', 'not-tls', 'malformed']);

interface Expected {
  sni: string | null;
  ech: boolean;
}

/**
 * The second implementation: join the handshake records, skip the fixed fields by their
 * lengths, return the first host_name. Lenient (it checks only what it must to not read past
 * the end), so it is the reader's equal on valid input and its judge whenever the reader
 * accepts a hello: both must then see the same name.
 */
function referenceSni(input: Buffer): (Expected & { bytes: number }) | null {
  try {
    const bodies: Buffer[] = [];
    let have = 0;
    let need = -1;
    let at = 0;
    for (;;) {
      if (input[at] !== 22 || at + 5 > input.length) return null;
      const end = at + 5 + input.readUInt16BE(at + 3);
      if (end > input.length) return null;
      bodies.push(input.subarray(at + 5, end));
      have += end - at - 5;
      at = end;
      if (need < 0 && have >= 4) need = 4 + Buffer.concat(bodies).readUIntBE(1, 3);
      if (need < 0 || have < need) continue;
      return { ...walkHello(Buffer.concat(bodies).subarray(4, need)), bytes: at };
    }
  } catch {
    return null;
  }
}

function walkHello(h: Buffer): Expected {
  let p = 2 + 32;
  p += 1 + h[p];
  p += 2 + h.readUInt16BE(p);
  p += 1 + h[p];
  const found: Expected = { sni: null, ech: false };
  if (p >= h.length) return found;
  const end = p + 2 + h.readUInt16BE(p);
  for (p += 2; p + 4 <= end; p += 4 + h.readUInt16BE(p + 2)) {
    const type = h.readUInt16BE(p);
    if (type === 0xfe0d || type === 0xffce) found.ech = true;
    if (type === 0 && h.readUInt16BE(p + 2) > 2) {
      const length = h.readUInt16BE(p + 7);
      found.sni = h.toString('latin1', p + 9, p + 9 + length).toLowerCase();
    }
  }
  return found;
}

interface Sample {
  /** The handshake message (header included). */
  message: Buffer;
  expected: Expected;
}

const realSamples: Sample[] = [];

beforeAll(async () => {
  const captures = [
    await captureNodeHello({ servername: 'example.test', ALPNProtocols: ['h2', 'http/1.1'] }),
    await captureNodeHello({ ALPNProtocols: ['http/1.1'] }),
    await captureNodeHello({ servername: 'Old.Example.Test', maxVersion: 'TLSv1.2' }),
  ];
  if (await curlAvailable()) captures.push(await captureCurlHello('curl.example.test'));
  else process.stdout.write('SKIPPED: curl is not installed here, no curl ClientHello in the fuzz corpus\n');
  for (const bytes of captures) {
    const found = handshakeFromRecords(bytes);
    const expected = referenceSni(bytes);
    if (found === null || expected === null) throw new Error('a captured ClientHello is incomplete');
    realSamples.push({ message: found.message, expected: { sni: expected.sni, ech: expected.ech } });
  }
  expect(realSamples.map((s) => s.expected.sni)).toEqual(['example.test', null, 'old.example.test', 'curl.example.test'].slice(0, realSamples.length));
});

/** Extensions other than server_name and the encrypted ones, each type once. */
const otherExtensions = fc.uniqueArray(
  fc.tuple(fc.integer({ min: 1, max: 0xfdff }), fc.uint8Array({ maxLength: 120 })),
  { maxLength: 6, selector: ([type]) => type },
).map((list) => list.map(([type, data]) => extension(type, Buffer.from(data))));

const builtSample: fc.Arbitrary<Sample> = fc.record({
  name: fc.option(fc.mixedCase(fc.domain()), { nil: null }),
  ech: fc.boolean(),
  others: otherExtensions,
  // A padding or key-share sized extension now and then, so hellos span several records.
  big: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 40_000 }) }),
  sessionId: fc.uint8Array({ maxLength: 32 }),
  at: fc.nat(),
}).map(({ name, ech, others, big, sessionId, at }) => {
  const extensions: Extension[] = [...others];
  const insert = (e: Extension): void => void extensions.splice(at % (extensions.length + 1), 0, e);
  if (name !== null) insert(extension(0, Buffer.concat([u16(name.length + 3), u8(0), u16(name.length), Buffer.from(name, 'latin1')])));
  if (ech) insert(extension(0xfe0d, Buffer.alloc(90, 5)));
  if (big > 0) insert(extension(0xfe00, Buffer.alloc(big, 1)));
  const message = handshake(helloBody({ extensions, sessionId: Buffer.from(sessionId) }));
  return { message, expected: { sni: name === null ? null : name.toLowerCase(), ech } };
});

const sample: fc.Arbitrary<Sample> = fc.oneof(
  fc.integer({ min: 0, max: 3 }).map((i) => realSamples[i % realSamples.length]),
  builtSample,
);

const recordSizes = fc.oneof(
  fc.constant([16384]),
  fc.array(fc.integer({ min: 1, max: 16384 }), { minLength: 1, maxLength: 5 }),
  fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 5 }),
);

const cuts = fc.array(fc.nat(), { maxLength: 6 });

/** The input cut at the given points (taken modulo its length, sorted). */
function chunksOf(input: Buffer, points: readonly number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (input.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of [...at, input.length]) {
    chunks.push(input.subarray(from, cut));
    from = cut;
  }
  return chunks;
}

type Mutation = ['flip' | 'set' | 'cut' | 'insert' | 'u16' | 'truncate', number, number];

const mutation: fc.Arbitrary<Mutation> = fc.tuple(
  fc.constantFrom('flip', 'set', 'cut', 'insert', 'u16', 'truncate'),
  // Length fields crowd the first ~80 bytes (record, handshake, session_id, cipher_suites).
  fc.oneof(fc.nat(90), fc.nat()),
  fc.oneof(fc.integer({ min: -4, max: 4 }), fc.nat(0xffff)),
) as fc.Arbitrary<Mutation>;

function mutate(input: Buffer, edits: readonly Mutation[]): Buffer {
  let bytes = Buffer.from(input);
  for (const [how, position, value] of edits) {
    const i = position % (bytes.length + 1);
    if (how === 'flip' && i < bytes.length) bytes[i] ^= 1 << (Math.abs(value) % 8);
    if (how === 'set' && i < bytes.length) bytes[i] = value & 0xff;
    if (how === 'cut') bytes = Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + 1)]);
    if (how === 'insert') bytes = Buffer.concat([bytes.subarray(0, i), u8(value), bytes.subarray(i)]);
    if (how === 'u16' && i + 2 <= bytes.length) bytes.writeUInt16BE((bytes.readUInt16BE(i) + value) & 0xffff, i);
    if (how === 'truncate') bytes = bytes.subarray(0, i);
  }
  return bytes;
}

const trailing = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));

/** Pushes every chunk, checking the bound and finality at each step; the last verdict. */
function readChecked(chunks: readonly Buffer[]): HelloVerdict {
  const reader = new ClientHelloReader();
  let final: HelloVerdict | null = null;
  let verdict: HelloVerdict = { kind: 'need-more' };
  for (const chunk of chunks) {
    verdict = reader.push(chunk);
    if (!KINDS.has(verdict.kind)) throw new Error(`unknown verdict ${JSON.stringify(verdict)}`);
    if (reader.heldBytes > MAX_CLIENT_HELLO_BYTES) throw new Error(`holds ${reader.heldBytes} bytes`);
    if (final !== null && verdict !== final) throw new Error('a final verdict changed');
    if (verdict.kind !== 'need-more') {
      final = verdict;
      if (reader.heldBytes !== 0) throw new Error(`holds ${reader.heldBytes} bytes after the verdict`);
    }
  }
  return verdict;
}

describe('ClientHello reader (fuzz)', () => {
  test('valid hellos, re-framed and split anywhere, read as the reference reads them', () => {
    const started = Date.now();
    let runs = 0;
    fc.assert(
      fc.property(sample, recordSizes, cuts, trailing, (hello, sizes, points, rest) => {
        runs += 1;
        const framed = records(hello.message, sizes);
        const input = Buffer.concat([framed, rest]);
        expect(referenceSni(input)).toEqual({ ...hello.expected, bytes: framed.length });
        if (framed.length > MAX_CLIENT_HELLO_BYTES) {
          // Framed in tiny records a big hello needs more input than the reader holds.
          expect(readChecked(chunksOf(input, points))).toEqual({ kind: 'malformed', reason: `no complete ClientHello within ${MAX_CLIENT_HELLO_BYTES} bytes` });
          return;
        }
        expect(readChecked(chunksOf(input, points))).toEqual({ kind: 'hello', ...hello.expected, bytes: framed.length });
        expect(new ClientHelloReader().push(framed.subarray(0, framed.length - 1))).toEqual({ kind: 'need-more' });
      }),
      budget.params,
    );
    if (budget.long) reportThroughput('client-hello valid', runs, started);
  }, budget.jestTimeoutMs);

  test('mutated hellos never throw, stay in bounds, and give one final verdict whatever the chunking', () => {
    const started = Date.now();
    let runs = 0;
    fc.assert(
      fc.property(sample, recordSizes, fc.array(mutation, { minLength: 1, maxLength: 4 }), cuts, trailing, (hello, sizes, edits, points, rest) => {
        runs += 1;
        const input = Buffer.concat([mutate(records(hello.message, sizes), edits), rest]);
        const whole = readChecked([input]);
        expect(readChecked(chunksOf(input, points))).toEqual(whole);
        if (input.length >= MAX_CLIENT_HELLO_BYTES) expect(whole.kind).not.toBe('need-more');
        if (whole.kind !== 'hello') return;
        expect(whole.bytes).toBeLessThanOrEqual(Math.min(input.length, MAX_CLIENT_HELLO_BYTES));
        if (whole.sni !== null) expect(whole.sni).toMatch(SNI);
        // Whatever the strict reader accepts, the simple one reads the same way.
        expect(referenceSni(input)).toEqual({ sni: whole.sni, ech: whole.ech, bytes: whole.bytes });
      }),
      budget.params,
    );
    if (budget.long) reportThroughput('client-hello mutated', runs, started);
  }, budget.jestTimeoutMs);

  test('a server_name_list or host_name length that lies is always malformed', () => {
    fc.assert(
      fc.property(fc.domain(), fc.constantFrom('list', 'name'), fc.integer({ min: -300, max: 300 }).filter((d) => d !== 0), cuts, (name, field, delta, points) => {
        const listLength = name.length + 3 + (field === 'list' ? delta : 0);
        const nameLength = name.length + (field === 'name' ? delta : 0);
        const data = Buffer.concat([u16(listLength), u8(0), u16(nameLength), Buffer.from(name, 'latin1')]);
        const input = records(handshake(helloBody({ extensions: [extension(0, data)] })));
        expect(readChecked(chunksOf(input, points)).kind).toBe('malformed');
      }),
      budget.params,
    );
  }, budget.jestTimeoutMs);

  test('random bytes behind a TLS record header never throw and stay in bounds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), fc.uint8Array({ maxLength: 400 }), cuts, (minor, tail, points) => {
        const input = Buffer.concat([Buffer.from([22, 3, minor]), Buffer.from(tail)]);
        expect(readChecked(chunksOf(input, points))).toEqual(readChecked([input]));
      }),
      budget.params,
    );
  }, budget.jestTimeoutMs);
});
