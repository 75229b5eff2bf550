import { isIP } from 'node:net';
import fc from 'fast-check';
import { parseProxyHeader, V1_MAX_BYTES, V2_MAX_BYTES, V2_SIGNATURE } from '../../src/proxy/proxy-protocol';
import type { ProxyHeaderParse } from '../../src/proxy/proxy-protocol';
import { fuzzBudget, reportThroughput } from './budget';

/**
 * Properties of the PROXY protocol reader (src/proxy/proxy-protocol.ts). Whatever bytes a peer
 * sends, it answers without throwing; a verdict other than "incomplete" never changes when more
 * bytes arrive (so deciding on a partial header is safe), and a valid header split anywhere
 * reads as incomplete until its last byte, then as exactly that header.
 */
const budget = fuzzBudget({ numRuns: 300, seconds: 8 });

interface Valid {
  bytes: Buffer;
  /** The client the header names, or null for LOCAL. */
  ip: string | null;
  port: number;
}

/** IPv6 as Node and the parser print it: RFC 5952, IPv4-mapped as IPv4. */
function expectedIpv6(text: string): string {
  const host = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (!mapped) return host;
  const [hi, lo] = [parseInt(mapped[1], 16), parseInt(mapped[2], 16)];
  return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff].join('.');
}

const port = fc.integer({ min: 0, max: 65535 });

const v1Header: fc.Arbitrary<Valid> = fc.oneof(
  fc.tuple(fc.ipV4(), fc.ipV4(), port, port).map(([src, dst, sp, dp]) => ({
    bytes: Buffer.from(`PROXY TCP4 ${src} ${dst} ${sp} ${dp}\r\n`, 'latin1'), ip: src, port: sp,
  })),
  fc.tuple(fc.ipV6(), fc.ipV6(), port, port).map(([src, dst, sp, dp]) => ({
    bytes: Buffer.from(`PROXY TCP6 ${src} ${dst} ${sp} ${dp}\r\n`, 'latin1'), ip: expectedIpv6(src), port: sp,
  })),
);

const tlvs = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));

const v2Header: fc.Arbitrary<Valid> = fc.oneof(
  fc.tuple(fc.uint8Array({ minLength: 8, maxLength: 8 }), port, port, tlvs).map(([addrs, sp, dp, tlv]) => {
    const body = Buffer.concat([Buffer.from(addrs), u16(sp), u16(dp), tlv]);
    return { bytes: Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11]), u16(body.length), body]), ip: [...addrs.slice(0, 4)].join('.'), port: sp };
  }),
  fc.tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), port, port, tlvs).map(([addrs, sp, dp, tlv]) => {
    const body = Buffer.concat([Buffer.from(addrs), u16(sp), u16(dp), tlv]);
    const groups = Array.from({ length: 8 }, (_, i) => ((addrs[2 * i] << 8) | addrs[2 * i + 1]).toString(16)).join(':');
    return { bytes: Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x21]), u16(body.length), body]), ip: expectedIpv6(groups), port: sp };
  }),
  tlvs.map((tlv) => ({ bytes: Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00]), u16(tlv.length), tlv]), ip: null, port: 0 })),
);

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

const anyHeader = fc.oneof(v1Header, v2Header);
const tail = fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a));

/** Valid headers with bytes changed, cut or inserted: the inputs most likely to reach odd paths. */
const mutated: fc.Arbitrary<Buffer> = fc.tuple(anyHeader, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'cut', 'insert')), { minLength: 1, maxLength: 4 }))
  .map(([valid, edits]) => {
    let bytes = Buffer.from(valid.bytes);
    for (const [at, value, how] of edits) {
      const i = at % (bytes.length + 1);
      if (how === 'set' && i < bytes.length) bytes[i] = value;
      if (how === 'cut') bytes = Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + 1)]);
      if (how === 'insert') bytes = Buffer.concat([bytes.subarray(0, i), Buffer.from([value]), bytes.subarray(i)]);
    }
    return bytes;
  });

const hostile = fc.oneof(mutated, fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.concat([V2_SIGNATURE, Buffer.from(a)])));

/** What any verdict must satisfy, whatever the input. */
function brokenInvariants(bytes: Buffer, parsed: ProxyHeaderParse): string[] {
  const broken: string[] = [];
  if (parsed.state !== 'header') return broken;
  const max = bytes[0] === 0x50 ? V1_MAX_BYTES : V2_MAX_BYTES;
  if (!(parsed.length > 0 && parsed.length <= bytes.length && parsed.length <= max)) broken.push(`length ${parsed.length} within the input and ${max}`);
  if (parsed.source !== null) {
    if (isIP(parsed.source.ip) === 0) broken.push(`source ${parsed.source.ip} is an IP`);
    if (parsed.source.ip.startsWith('::ffff:')) broken.push('IPv4-mapped sources read as IPv4');
    if (!(Number.isInteger(parsed.source.port) && parsed.source.port >= 0 && parsed.source.port <= 65535)) broken.push('port 0..65535');
  }
  return broken;
}

describe('PROXY protocol reader (fuzz)', () => {
  test('a valid header split anywhere is incomplete until its last byte, then exactly that header', () => {
    const started = Date.now();
    let runs = 0;
    fc.assert(
      fc.property(anyHeader, tail, (valid, rest) => {
        runs += 1;
        for (let cut = 0; cut < valid.bytes.length; cut += 1) {
          expect(parseProxyHeader(valid.bytes.subarray(0, cut)).state).toBe('incomplete');
        }
        const parsed = parseProxyHeader(Buffer.concat([valid.bytes, rest]));
        expect(parsed).toEqual({
          state: 'header', length: valid.bytes.length,
          source: valid.ip === null ? null : { kind: 'proxied', ip: valid.ip, port: valid.port },
        });
      }),
      budget.params,
    );
    if (budget.long) reportThroughput('proxy-protocol split', runs, started);
  }, budget.jestTimeoutMs);

  test('hostile bytes never throw, verdicts keep their invariants, and more bytes never change a verdict', () => {
    const started = Date.now();
    let runs = 0;
    fc.assert(
      fc.property(hostile, tail, (bytes, more) => {
        runs += 1;
        const parsed = parseProxyHeader(bytes);
        expect(brokenInvariants(bytes, parsed)).toEqual([]);
        const later = parseProxyHeader(Buffer.concat([bytes, more]));
        expect(brokenInvariants(Buffer.concat([bytes, more]), later)).toEqual([]);
        // Decided on partial input, a verdict must be final: the proxy acts on it at once.
        if (parsed.state === 'header' || parsed.state === 'absent') expect(later).toEqual(parsed);
        if (parsed.state === 'invalid') expect(later.state).toBe('invalid');
      }),
      budget.params,
    );
    if (budget.long) reportThroughput('proxy-protocol hostile', runs, started);
  }, budget.jestTimeoutMs);
});
