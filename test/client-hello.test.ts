import { ClientHelloReader, describeVerdict, MAX_CLIENT_HELLO_BYTES } from '../src/proxy/client-hello';
import type { HelloVerdict } from '../src/proxy/client-hello';
import {
  captureCurlHello, captureNodeHello, clientHello, curlAvailable, extension, handshake, helloBody,
  records, reframe, serverNameData, u16, u8,
} from './helpers/client-hellos';

/** Pushes the chunks in order; every verdict given, and the reader. */
function feed(chunks: readonly Buffer[]): { verdicts: HelloVerdict[]; reader: ClientHelloReader } {
  const reader = new ClientHelloReader();
  return { verdicts: chunks.map((chunk) => reader.push(chunk)), reader };
}

function verdictOf(bytes: Buffer): HelloVerdict {
  return new ClientHelloReader().push(bytes);
}

function bytewise(bytes: Buffer): Buffer[] {
  return Array.from({ length: bytes.length }, (_, i) => bytes.subarray(i, i + 1));
}

/** The same verdict from one push, from every 2-piece split and from byte-by-byte pushes. */
function expectChunkingIndependent(bytes: Buffer): HelloVerdict {
  const whole = verdictOf(bytes);
  for (let cut = 0; cut <= bytes.length; cut += 1) {
    const { verdicts } = feed([bytes.subarray(0, cut), bytes.subarray(cut)]);
    expect(verdicts[1]).toEqual(whole);
  }
  const { verdicts } = feed(bytewise(bytes));
  expect(verdicts[verdicts.length - 1]).toEqual(whole);
  return whole;
}

interface Captures {
  withName: Buffer;
  withoutName: Buffer;
  tls12: Buffer;
  curl: Buffer | null;
}

let captured: Captures;

beforeAll(async () => {
  const withName = await captureNodeHello({ servername: 'example.test', ALPNProtocols: ['h2', 'http/1.1'] });
  const withoutName = await captureNodeHello({ ALPNProtocols: ['http/1.1'] });
  const tls12 = await captureNodeHello({ servername: 'old.example.test', maxVersion: 'TLSv1.2' });
  const curl = (await curlAvailable()) ? await captureCurlHello('example.test') : null;
  captured = { withName, withoutName, tls12, curl };
});

describe('real ClientHellos', () => {
  test('Node with servername: the SNI, spanning exactly what it sent', () => {
    expect(verdictOf(captured.withName)).toEqual({ kind: 'hello', sni: 'example.test', ech: false, bytes: captured.withName.length });
    expect(verdictOf(captured.tls12)).toEqual({ kind: 'hello', sni: 'old.example.test', ech: false, bytes: captured.tls12.length });
  });

  test('Node to an IP address sends no server_name: sni null', () => {
    expect(verdictOf(captured.withoutName)).toEqual({ kind: 'hello', sni: null, ech: false, bytes: captured.withoutName.length });
  });

  test('curl --connect-to names the URL host', () => {
    // Fails rather than skips without curl, as the tunnel tests do: .ci/run installs it.
    if (captured.curl === null) throw new Error('curl is missing: .ci/run installs it');
    expect(verdictOf(captured.curl)).toEqual({ kind: 'hello', sni: 'example.test', ech: false, bytes: captured.curl.length });
  });

  test('every 2-piece split and byte-by-byte give the same verdict; need-more until the last byte', () => {
    for (const bytes of [captured.withName, captured.withoutName, captured.tls12, captured.curl]) {
      if (bytes === null) continue;
      expect(expectChunkingIndependent(bytes).kind).toBe('hello');
      const { verdicts } = feed(bytewise(bytes));
      expect(verdicts.slice(0, -1).every((v) => v.kind === 'need-more')).toBe(true);
    }
  });

  test('re-framed into several records (1, 7, 100 bytes, the rest) it reads the same', () => {
    const bytes = reframe(captured.withName, [1, 7, 100, 16384]);
    expect(bytes.length).toBe(captured.withName.length + 3 * 5);
    expect(expectChunkingIndependent(bytes)).toEqual({ kind: 'hello', sni: 'example.test', ech: false, bytes: bytes.length });
    const tiny = reframe(captured.withName, [3]);
    expect(verdictOf(tiny)).toEqual({ kind: 'hello', sni: 'example.test', ech: false, bytes: tiny.length });
  });

  test('what follows the ClientHello (ChangeCipherSpec, early data) is left to the caller', () => {
    const after = Buffer.concat([Buffer.from([20, 3, 3, 0, 1, 1]), Buffer.from([23, 3, 3, 0, 4, 1, 2, 3, 4])]);
    const bytes = Buffer.concat([captured.withName, after]);
    expect(verdictOf(bytes)).toEqual({ kind: 'hello', sni: 'example.test', ech: false, bytes: captured.withName.length });
  });
});

describe('hand-made ClientHellos that are valid', () => {
  const hello = (names: string[]): HelloVerdict => verdictOf(clientHello({ extensions: [extension(0, serverNameData(names))] }));

  test('the name is lowercased and kept as sent (trailing dot, underscore)', () => {
    expect(hello(['WWW.Example.TEST'])).toMatchObject({ kind: 'hello', sni: 'www.example.test' });
    expect(hello(['example.test.'])).toMatchObject({ kind: 'hello', sni: 'example.test.' });
    expect(hello(['_acme._tcp.example.test'])).toMatchObject({ kind: 'hello', sni: '_acme._tcp.example.test' });
    expect(hello(['xn--mnchen-3ya.example'])).toMatchObject({ kind: 'hello', sni: 'xn--mnchen-3ya.example' });
    expect(hello(['a'.repeat(255)])).toMatchObject({ kind: 'hello', sni: 'a'.repeat(255) });
  });

  test('an empty server_name_list, no server_name, or no extensions at all: sni null', () => {
    expect(hello([])).toMatchObject({ kind: 'hello', sni: null });
    expect(verdictOf(clientHello({ extensions: [extension(43, Buffer.from([2, 3, 4]))] }))).toMatchObject({ kind: 'hello', sni: null });
    expect(verdictOf(clientHello({ extensions: [] }))).toMatchObject({ kind: 'hello', sni: null });
    expect(verdictOf(clientHello({ extensions: null }))).toMatchObject({ kind: 'hello', sni: null, ech: false });
  });

  test('encrypted_client_hello (and draft ESNI) set ech; the outer SNI is still read', () => {
    const ech = clientHello({ extensions: [extension(0, serverNameData(['public.example'])), extension(0xfe0d, Buffer.alloc(200, 1))] });
    expect(verdictOf(ech)).toEqual({ kind: 'hello', sni: 'public.example', ech: true, bytes: ech.length });
    expect(verdictOf(clientHello({ extensions: [extension(0xffce, Buffer.alloc(40, 1))] }))).toMatchObject({ sni: null, ech: true });
  });

  test('a ClientHello over 16 KiB (post-quantum shares, padding) spans two records and is read', () => {
    const bytes = clientHello({ extensions: [extension(0, serverNameData(['big.example'])), extension(21, Buffer.alloc(20_000))] });
    expect(bytes.length).toBeGreaterThan(20_000);
    expect(expectChunkingIndependentQuick(bytes)).toEqual({ kind: 'hello', sni: 'big.example', ech: false, bytes: bytes.length });
  });

  test('GREASE and record versions 0x0301..0x0303', () => {
    const grease = helloBody({ extensions: [extension(0x0a0a, Buffer.alloc(0)), extension(0, serverNameData(['g.example'])), extension(0x1a1a, Buffer.from([0]))] });
    for (const version of [0x0301, 0x0302, 0x0303]) {
      expect(verdictOf(records(handshake(grease), [16384], version))).toMatchObject({ kind: 'hello', sni: 'g.example' });
    }
  });
});

/** The split check at a sample of cut points, for inputs where every cut would be slow. */
function expectChunkingIndependentQuick(bytes: Buffer): HelloVerdict {
  const whole = verdictOf(bytes);
  for (let cut = 0; cut <= bytes.length; cut += 97) {
    expect(feed([bytes.subarray(0, cut), bytes.subarray(cut)]).verdicts[1]).toEqual(whole);
  }
  expect(feed(bytewise(bytes)).verdicts[bytes.length - 1]).toEqual(whole);
  return whole;
}

describe('not TLS', () => {
  test.each([
    ['plain HTTP', 'GET / HTTP/1.1\r\nHost: example.test\r\n\r\n', '0x47 ("G")'],
    ['an SSH banner', 'SSH-2.0-OpenSSH_9.6\r\n', '0x53 ("S")'],
    ['an SSLv2-style hello', '\x80\x2e\x01\x00\x02', '0x80'],
  ])('%s is decided on its first byte', (_name, text, shown) => {
    const bytes = Buffer.from(text, 'latin1');
    const { verdicts, reader } = feed([bytes.subarray(0, 1), bytes.subarray(1)]);
    expect(verdicts[0]).toEqual({ kind: 'not-tls', reason: `first byte ${shown} is not a TLS handshake record (22)` });
    expect(verdicts[1]).toBe(verdicts[0]);
    expect(reader.heldBytes).toBe(0);
  });
});

const name = (n: string): Extension0 => extension(0, serverNameData([n]));
type Extension0 = ReturnType<typeof extension>;

/** A server_name extension whose list holds these raw entries. */
function rawServerName(entries: Buffer): Extension0 {
  return extension(0, Buffer.concat([u16(entries.length), entries]));
}

/** A hello whose one extension says 4 bytes of data and carries 3. */
function extensionLengthLie(): Buffer {
  const body = helloBody({ extensions: [extension(43, Buffer.from([2, 3, 4]))] });
  body.writeUInt16BE(4, body.length - 5);
  return records(handshake(body));
}

describe('malformed', () => {
  const valid = handshake(helloBody());
  const cases: Array<[string, Buffer, RegExp]> = [
    ['a second record of another content type', Buffer.concat([records(valid.subarray(0, 20)), Buffer.from([21, 3, 3, 0, 2, 2, 40])]), /record 2 has content type 21/],
    ['record version 0x0300', records(valid, [16384], 0x0300), /record 1 version 0x0300/],
    ['record version 0x0304', records(valid, [16384], 0x0304), /record 1 version 0x0304/],
    ['an empty record', Buffer.from([22, 3, 1, 0, 0]), /record 1 is empty/],
    ['a record over 2^14', Buffer.concat([Buffer.from([22, 3, 1, 0x40, 0x01]), valid]), /length 16385 exceeds 2\^14/],
    ['a ServerHello', records(handshake(helloBody(), 2)), /handshake type 2 is not client_hello/],
    ['garbage after a record header', Buffer.from([22, 3, 1, 0, 8, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]), /handshake type 222/],
    ['a handshake length past the bound', Buffer.from([22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]), /ClientHello of 16777219 bytes is larger/],
    ['a handshake length shorter than its fields', records(handshake(helloBody(), 1, 30)), /bytes follow the ClientHello inside its record/],
    ['a body cut short (random)', records(handshake(helloBody().subarray(0, 20))), /random needs 32 bytes, 18 left/],
    ['bytes after the ClientHello inside its record', records(Buffer.concat([valid, Buffer.from([20])])), /1 bytes follow the ClientHello/],
    ['legacy_version 0x0200', clientHello({ version: 0x0200 }), /legacy_version 0x0200/],
    ['a 33-byte session_id', clientHello({ sessionId: Buffer.alloc(33) }), /session_id length 33 exceeds 32/],
    ['an odd cipher_suites length', clientHello({ suites: Buffer.from([0x13, 0x01, 0x13]) }), /cipher_suites length 3/],
    ['no cipher suites', clientHello({ suites: Buffer.alloc(0) }), /cipher_suites length 0/],
    ['no compression method', clientHello({ compression: Buffer.alloc(0) }), /compression_methods is empty/],
    ['an extensions length one too long', clientHello({ extensionsLengthDelta: 1 }), /extensions length \d+ but \d+ bytes follow/],
    ['an extensions length one too short', clientHello({ extensionsLengthDelta: -1 }), /extensions length \d+ but \d+ bytes follow/],
    ['an extension length past the list', extensionLengthLie(), /extension 0x002b data needs 4 bytes, 3 left/],
    ['a duplicate extension', clientHello({ extensions: [extension(43, Buffer.from([2, 3, 4])), extension(43, Buffer.from([2, 3, 4]))] }), /extension 0x002b appears twice/],
    ['two server_name extensions', clientHello({ extensions: [name('a.example'), name('b.example')] }), /extension 0x0000 appears twice/],
    ['two host_name entries', clientHello({ extensions: [extension(0, serverNameData(['a.example', 'b.example']))] }), /two host_name entries/],
    ['name_type 1', clientHello({ extensions: [rawServerName(Buffer.concat([u8(1), u16(3), Buffer.from('abc')]))] }), /name_type 1 is not host_name/],
    ['an empty server_name extension', clientHello({ extensions: [extension(0, Buffer.alloc(0))] }), /no server_name_list/],
    ['a server_name_list length that lies', clientHello({ extensions: [extension(0, Buffer.concat([u16(20), u8(0), u16(3), Buffer.from('abc')]))] }), /server_name_list length 20 but 6/],
    ['a host_name length past its list', clientHello({ extensions: [rawServerName(Buffer.concat([u8(0), u16(9), Buffer.from('abc')]))] }), /host_name needs 9 bytes, 3 left/],
    ['an empty host_name', clientHello({ extensions: [name('')] }), /host_name length 0/],
    ['a 256-byte host_name', clientHello({ extensions: [name('a'.repeat(256))] }), /host_name length 256/],
    ['a NUL in the host_name', clientHello({ extensions: [name('evil.example\0.good.example')] }), /host_name byte 12 is 0x00,/],
    ['a space in the host_name', clientHello({ extensions: [name('a b')] }), /host_name byte 1 is 0x20 \(" "\)/],
    ['a slash in the host_name', clientHello({ extensions: [name('a.example/x')] }), /0x2f/],
    ['a UTF-8 host_name', clientHello({ extensions: [extension(0, serverNameData([Buffer.from('münchen.example').toString('latin1')]))] }), /host_name byte 1 is 0xc3/],
  ];

  test.each(cases)('%s', (_name, bytes, reason) => {
    const verdict = expectChunkingIndependent(bytes);
    expect(verdict.kind).toBe('malformed');
    expect(verdict.kind === 'malformed' && verdict.reason).toMatch(reason);
    expect(describeVerdict(verdict)).toMatch(/^malformed ClientHello: /);
  });

  test('a ClientHello cut short is need-more, not a verdict: the caller times it out', () => {
    const bytes = captured.withName.subarray(0, captured.withName.length - 1);
    const { verdicts, reader } = feed([bytes]);
    expect(verdicts[0]).toEqual({ kind: 'need-more' });
    expect(reader.heldBytes).toBeLessThanOrEqual(captured.withName.length + 5);
  });
});

describe('memory bound', () => {
  test('a hello that declares more than the bound is refused on its length, holding nothing after', () => {
    const reader = new ClientHelloReader();
    expect(reader.push(Buffer.from([22, 3, 1, 0x40, 0x00, 1, 0x01, 0x00]))).toEqual({ kind: 'need-more' });
    const verdict = reader.push(Buffer.from([0x00]));
    expect(verdict).toEqual({ kind: 'malformed', reason: `ClientHello of 65540 bytes is larger than the ${MAX_CLIENT_HELLO_BYTES} bytes read` });
    expect(reader.heldBytes).toBe(0);
  });

  test('the largest hello that fits is read; tiny records that push it past the bound are refused at the bound', () => {
    const padding = MAX_CLIENT_HELLO_BYTES - 4 * 5 - 4 - helloBody({ extensions: [] }).length - 4;
    const message = handshake(helloBody({ extensions: [extension(21, Buffer.alloc(padding))] }));
    const fits = records(message);
    expect(fits.length).toBe(MAX_CLIENT_HELLO_BYTES);
    expect(verdictOf(fits)).toEqual({ kind: 'hello', sni: null, ech: false, bytes: MAX_CLIENT_HELLO_BYTES });

    const tiny = records(message, [1]);
    const reader = new ClientHelloReader();
    let verdict: HelloVerdict = { kind: 'need-more' };
    let most = 0;
    for (let at = 0; at < tiny.length && verdict.kind === 'need-more'; at += 4096) {
      verdict = reader.push(tiny.subarray(at, at + 4096));
      most = Math.max(most, reader.heldBytes);
    }
    expect(verdict).toEqual({ kind: 'malformed', reason: `no complete ClientHello within ${MAX_CLIENT_HELLO_BYTES} bytes` });
    expect(most).toBeLessThanOrEqual(MAX_CLIENT_HELLO_BYTES);
    expect(reader.heldBytes).toBe(0);
    expect(verdictOf(tiny)).toEqual(verdict);
  });

  test('one huge chunk is not copied past the bound', () => {
    const reader = new ClientHelloReader();
    const message = handshake(helloBody({ extensions: [extension(21, Buffer.alloc(40_000))] }));
    const verdict = reader.push(Buffer.concat([records(message, [4]), Buffer.alloc(1_000_000)]));
    expect(verdict).toEqual({ kind: 'malformed', reason: `no complete ClientHello within ${MAX_CLIENT_HELLO_BYTES} bytes` });
    expect(reader.heldBytes).toBe(0);
  });

  test('after a hello the buffers are released and later pushes return the same verdict', () => {
    const reader = new ClientHelloReader();
    const verdict = reader.push(captured.withName);
    expect(reader.heldBytes).toBe(0);
    expect(reader.push(Buffer.from('more'))).toBe(verdict);
    expect(reader.heldBytes).toBe(0);
  });
});

test('describeVerdict says it in a few words', () => {
  expect(describeVerdict({ kind: 'need-more' })).toBe('ClientHello not complete yet');
  expect(describeVerdict({ kind: 'hello', sni: 'a.example', ech: false, bytes: 1 })).toBe('TLS ClientHello for a.example');
  expect(describeVerdict({ kind: 'hello', sni: null, ech: true, bytes: 1 })).toBe('TLS ClientHello without SNI (encrypted ClientHello)');
  expect(describeVerdict(verdictOf(Buffer.from('GET /')))).toBe('not TLS: first byte 0x47 ("G") is not a TLS handshake record (22)');
});
