import { byteText, hex, parseClientHello } from './client-hello-message';

/**
 * A strict, incremental reader of the first bytes a client sends through a CONNECT tunnel: the
 * TLS ClientHello, and in it the server_name (SNI) the tunnel is checked against (issue 17).
 * Pure: bytes in, a verdict out, no handshake and no TLS library (none parses a ClientHello from
 * raw bytes without acting as a server). The record layer is RFC 5246 §6.2 / RFC 8446 §5.1, the
 * message RFC 8446 §4.1.2 (RFC 5246 §7.4.1.2 for pre-1.3 clients), server_name RFC 6066 §3.
 *
 * The verdict depends only on the bytes, never on how they were cut into chunks: every check
 * fires at a fixed position of the stream, so a hello split across TCP segments or records reads
 * exactly as it does in one piece. Input is held only until the verdict, and never more than
 * MAX_CLIENT_HELLO_BYTES of it.
 */

/**
 * The most input (record headers included) held while waiting for one ClientHello. Browsers
 * today send ~1.8 KB with an X25519MLKEM768 key share (1,216-byte ML-KEM public key), a few KB
 * more with resumption tickets or several post-quantum shares; one record carries 16 KiB and a
 * hello may span records, and its own length fields allow ~130 KB. 64 KiB (four full records) is
 * many times what any client sends yet keeps a tunnel still waiting for its hello to a known,
 * small cost; a hello that needs more is refused as malformed.
 */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

export type HelloVerdict =
  /** Feed more bytes. */
  | { readonly kind: 'need-more' }
  /**
   * A complete ClientHello. `sni` is the host_name lowercased, null without a server_name
   * extension (or with an empty list); `ech` is true when the hello carries
   * encrypted_client_hello (or the draft ESNI extension), i.e. the real name is hidden.
   * `bytes` is how much of the input it spans, record headers included: what follows
   * (ChangeCipherSpec, early data) is the client's too and is forwarded untouched.
   */
  | { readonly kind: 'hello'; readonly sni: string | null; readonly ech: boolean; readonly bytes: number }
  /** The first byte is not a TLS handshake record (plain HTTP, SSH, an SSLv2-style hello). */
  | { readonly kind: 'not-tls'; readonly reason: string }
  /** Starts like TLS but breaks the rules, or needs more than MAX_CLIENT_HELLO_BYTES. */
  | { readonly kind: 'malformed'; readonly reason: string };

const RECORD_HEADER_BYTES = 5;
/** RFC 8446 §5.1: a TLSPlaintext fragment "MUST NOT exceed 2^14 bytes". */
const MAX_RECORD_BODY = 2 ** 14;
const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_HEADER_BYTES = 4;
const HANDSHAKE_CLIENT_HELLO = 1;
const INITIAL_MESSAGE_CAPACITY = 2048;

const NEED_MORE: HelloVerdict = { kind: 'need-more' };

function malformed(reason: string): HelloVerdict {
  return { kind: 'malformed', reason };
}

/**
 * One per tunnel: push each chunk the client sends as it comes, until the verdict is not
 * need-more. That verdict is final (later pushes return it and read nothing); the reader then
 * holds no buffer. The caller keeps the chunks itself, to forward them if the tunnel is allowed.
 */
export class ClientHelloReader {
  private verdict: HelloVerdict = NEED_MORE;
  /** Input taken so far, record headers included. */
  private consumed = 0;
  private records = 0;
  private header: Buffer | null = Buffer.alloc(RECORD_HEADER_BYTES);
  private headerFill = 0;
  /** Body bytes of the current record still to come; 0 between records. */
  private recordLeft = 0;
  /** The handshake message as gathered from the record bodies, header included. */
  private message: Buffer | null = Buffer.alloc(HANDSHAKE_HEADER_BYTES);
  private messageFill = 0;
  /** The whole message's length once its header is read, else -1. */
  private messageLength = -1;

  /** Bytes of buffer this reader holds now: 0 once a verdict is given. */
  get heldBytes(): number {
    return (this.header?.length ?? 0) + (this.message?.length ?? 0);
  }

  push(chunk: Buffer): HelloVerdict {
    if (this.verdict.kind !== 'need-more') return this.verdict;
    const end = Math.min(chunk.length, MAX_CLIENT_HELLO_BYTES - this.consumed);
    let at = 0;
    while (at < end && this.verdict.kind === 'need-more') {
      at += this.recordLeft === 0 ? this.takeHeaderByte(chunk[at]) : this.takeBody(chunk, at, end);
    }
    if (this.verdict.kind === 'need-more' && this.consumed >= MAX_CLIENT_HELLO_BYTES) {
      this.finish(malformed(`no complete ClientHello within ${MAX_CLIENT_HELLO_BYTES} bytes`));
    }
    return this.verdict;
  }

  /** One byte of a record header, checked as soon as it is there. */
  private takeHeaderByte(value: number): number {
    const header = this.header as Buffer;
    header[this.headerFill] = value;
    this.headerFill += 1;
    this.consumed += 1;
    if (this.headerFill === 1 && value !== CONTENT_HANDSHAKE) {
      this.finish(this.records === 0
        ? { kind: 'not-tls', reason: `first byte ${byteText(value)} is not a TLS handshake record (22)` }
        : malformed(`record ${this.records + 1} has content type ${value} before the ClientHello is complete`));
    } else if (this.headerFill === 3) {
      // RFC 8446 §5.1 / Appendix D: 0x0301 in a first ClientHello for compatibility, up to 0x0303.
      const version = header.readUInt16BE(1);
      if (version < 0x0301 || version > 0x0303) this.finish(malformed(`record ${this.records + 1} version ${hex(version, 4)} is not 0x0301..0x0303`));
    } else if (this.headerFill === RECORD_HEADER_BYTES) {
      const length = header.readUInt16BE(3);
      this.records += 1;
      this.headerFill = 0;
      // RFC 8446 §5.1: no zero-length handshake fragments; 2^14 is record_overflow.
      if (length === 0) this.finish(malformed(`record ${this.records} is empty`));
      else if (length > MAX_RECORD_BODY) this.finish(malformed(`record ${this.records} length ${length} exceeds 2^14`));
      else this.recordLeft = length;
    }
    return 1;
  }

  /** Record body bytes from chunk[at..end), up to the record's end; returns how many were taken. */
  private takeBody(chunk: Buffer, at: number, end: number): number {
    const available = Math.min(end - at, this.recordLeft);
    let used = 0;
    while (used < available && this.verdict.kind === 'need-more') {
      const wanted = (this.messageLength < 0 ? HANDSHAKE_HEADER_BYTES : this.messageLength) - this.messageFill;
      const count = Math.min(available - used, wanted);
      this.append(chunk.subarray(at + used, at + used + count));
      used += count;
      this.recordLeft -= count;
      this.consumed += count;
      if (this.messageLength < 0) this.readHandshakeHeader();
      if (this.messageLength >= 0 && this.messageFill === this.messageLength) this.complete();
    }
    return used;
  }

  private readHandshakeHeader(): void {
    const message = this.message as Buffer;
    if (this.messageFill >= 1 && message[0] !== HANDSHAKE_CLIENT_HELLO) {
      this.finish(malformed(`handshake type ${message[0]} is not client_hello (1)`));
      return;
    }
    if (this.messageFill < HANDSHAKE_HEADER_BYTES) return;
    const total = HANDSHAKE_HEADER_BYTES + message.readUIntBE(1, 3);
    const leastInput = total + RECORD_HEADER_BYTES * Math.ceil(total / MAX_RECORD_BODY);
    if (leastInput > MAX_CLIENT_HELLO_BYTES) {
      this.finish(malformed(`ClientHello of ${total} bytes is larger than the ${MAX_CLIENT_HELLO_BYTES} bytes read`));
      return;
    }
    this.messageLength = total;
  }

  /** Grows the message buffer by doubling, never past the message's declared length. */
  private append(bytes: Buffer): void {
    let message = this.message as Buffer;
    const needed = this.messageFill + bytes.length;
    if (needed > message.length) {
      const limit = this.messageLength < 0 ? HANDSHAKE_HEADER_BYTES : this.messageLength;
      const capacity = Math.min(Math.max(needed, message.length * 2, INITIAL_MESSAGE_CAPACITY), limit);
      const grown = Buffer.alloc(capacity);
      message.copy(grown, 0, 0, this.messageFill);
      this.message = message = grown;
    }
    bytes.copy(message, this.messageFill);
    this.messageFill = needed;
  }

  private complete(): void {
    // RFC 8446 §5.1: a ClientHello can precede a key change, so it "MUST" end at a record
    // boundary (a server answers anything else with unexpected_message).
    if (this.recordLeft > 0) {
      this.finish(malformed(`${this.recordLeft} bytes follow the ClientHello inside its record`));
      return;
    }
    const message = this.message as Buffer;
    const parsed = parseClientHello(message.subarray(HANDSHAKE_HEADER_BYTES, this.messageLength));
    this.finish(typeof parsed === 'string' ? malformed(parsed) : { kind: 'hello', ...parsed, bytes: this.consumed });
  }

  private finish(verdict: HelloVerdict): void {
    this.verdict = verdict;
    this.header = null;
    this.message = null;
  }
}

/** A short reason for logs and the audit record. */
export function describeVerdict(verdict: HelloVerdict): string {
  switch (verdict.kind) {
    case 'need-more': return 'ClientHello not complete yet';
    case 'hello': {
      const name = verdict.sni === null ? 'TLS ClientHello without SNI' : `TLS ClientHello for ${verdict.sni}`;
      return verdict.ech ? `${name} (encrypted ClientHello)` : name;
    }
    case 'not-tls': return `not TLS: ${verdict.reason}`;
    case 'malformed': return `malformed ClientHello: ${verdict.reason}`;
  }
}
