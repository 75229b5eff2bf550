/**
 * The ClientHello message body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) and its server_name
 * extension (RFC 6066 §3), read with a bounds check on every length. client-hello.ts gathers the
 * message from its records; this file only looks inside it.
 */

const EXTENSION_SERVER_NAME = 0x0000;
/** encrypted_client_hello (ECH, draft-ietf-tls-esni-13 onwards). */
const EXTENSION_ECH = 0xfe0d;
/** encrypted_server_name of ESNI drafts -01..-06, still sent by some 2019-2020 Firefox builds. */
const EXTENSION_ESNI = 0xffce;
const NAME_TYPE_HOST_NAME = 0;
/** A DNS name is at most 255 octets on the wire (RFC 1035 §3.1), shorter as text. */
const MAX_HOST_NAME = 255;

export function hex(value: number, digits: number): string {
  return `0x${value.toString(16).padStart(digits, '0')}`;
}

/** A byte as the reason shows it: its value, and the character when it is printable ASCII. */
export function byteText(value: number): string {
  return value >= 0x20 && value < 0x7f ? `${hex(value, 2)} (${JSON.stringify(String.fromCharCode(value))})` : hex(value, 2);
}

/** A failed bounds or rule check inside the message; caught in parseClientHello only. */
class HelloError extends Error {}

/** Bounds-checked reads over bytes[at..end). */
class Fields {
  private at: number;

  constructor(private readonly bytes: Buffer, start: number, private readonly end: number) {
    this.at = start;
  }

  get left(): number {
    return this.end - this.at;
  }

  private need(count: number, what: string): number {
    if (count > this.left) throw new HelloError(`${what} needs ${count} bytes, ${this.left} left`);
    const start = this.at;
    this.at += count;
    return start;
  }

  u8(what: string): number {
    return this.bytes[this.need(1, what)];
  }

  u16(what: string): number {
    return this.bytes.readUInt16BE(this.need(2, what));
  }

  /** The next `count` bytes as their own bounded reader. */
  take(count: number, what: string): Fields {
    const start = this.need(count, what);
    return new Fields(this.bytes, start, start + count);
  }

  /** The remaining bytes as latin1 text; only called after each byte was checked. */
  text(): string {
    return this.bytes.toString('latin1', this.at, this.end);
  }

  byteAt(index: number): number {
    return this.bytes[this.at + index];
  }
}

export interface HelloFacts {
  sni: string | null;
  ech: boolean;
}

/** The ClientHello body (after its 4-byte header); a reason string when it breaks a rule. */
export function parseClientHello(body: Buffer): HelloFacts | string {
  try {
    const fields = new Fields(body, 0, body.length);
    const version = fields.u16('legacy_version');
    if (version < 0x0301 || version > 0x0303) throw new HelloError(`legacy_version ${hex(version, 4)} is not 0x0301..0x0303`);
    fields.take(32, 'random');
    const sessionId = fields.u8('session_id length');
    if (sessionId > 32) throw new HelloError(`session_id length ${sessionId} exceeds 32`);
    fields.take(sessionId, 'session_id');
    const suites = fields.u16('cipher_suites length');
    if (suites < 2 || suites % 2 !== 0) throw new HelloError(`cipher_suites length ${suites} is not even and at least 2`);
    fields.take(suites, 'cipher_suites');
    const compressions = fields.u8('compression_methods length');
    if (compressions < 1) throw new HelloError('compression_methods is empty');
    fields.take(compressions, 'compression_methods');
    // RFC 5246 §7.4.1.2: a pre-1.3 hello may end here, without extensions.
    if (fields.left === 0) return { sni: null, ech: false };
    const length = fields.u16('extensions length');
    if (length !== fields.left) throw new HelloError(`extensions length ${length} but ${fields.left} bytes follow`);
    return readExtensions(fields.take(length, 'extensions'));
  } catch (error) {
    if (error instanceof HelloError) return error.message;
    throw error;
  }
}

function readExtensions(extensions: Fields): HelloFacts {
  const seen = new Set<number>();
  const facts: HelloFacts = { sni: null, ech: false };
  while (extensions.left > 0) {
    const type = extensions.u16('extension type');
    const data = extensions.take(extensions.u16(`extension ${hex(type, 4)} length`), `extension ${hex(type, 4)} data`);
    // RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type".
    if (seen.has(type)) throw new HelloError(`extension ${hex(type, 4)} appears twice`);
    seen.add(type);
    if (type === EXTENSION_SERVER_NAME) facts.sni = readServerName(data);
    if (type === EXTENSION_ECH || type === EXTENSION_ESNI) facts.ech = true;
  }
  return facts;
}

/** RFC 6066 §3: ServerNameList<1..2^16-1> of { NameType name_type; HostName host_name }. */
function readServerName(data: Fields): string | null {
  // An empty extension body is what a server echoes, never what a client sends.
  if (data.left === 0) throw new HelloError('server_name extension has no server_name_list');
  const length = data.u16('server_name_list length');
  if (length !== data.left) throw new HelloError(`server_name_list length ${length} but ${data.left} bytes follow`);
  let name: string | null = null;
  while (data.left > 0) {
    const type = data.u8('server_name name_type');
    // Only host_name exists; another type's layout is unknown, so the rest cannot be read.
    if (type !== NAME_TYPE_HOST_NAME) throw new HelloError(`server_name name_type ${type} is not host_name (0)`);
    const size = data.u16('host_name length');
    if (size < 1 || size > MAX_HOST_NAME) throw new HelloError(`host_name length ${size} is not 1..${MAX_HOST_NAME}`);
    const host = data.take(size, 'host_name');
    // RFC 6066 §3: "MUST NOT contain more than one name of the same name_type".
    if (name !== null) throw new HelloError('server_name has two host_name entries');
    name = readHostName(host, size);
  }
  return name;
}

/** Letters, digits, '-', '.', and '_' (seen in real service names); lowercased. */
function readHostName(host: Fields, size: number): string {
  for (let i = 0; i < size; i += 1) {
    const c = host.byteAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f;
    if (!ok) throw new HelloError(`host_name byte ${i} is ${byteText(c)}, not a letter, digit, '-', '.' or '_'`);
  }
  return host.text().toLowerCase();
}
