import type { Socket } from 'node:net';
import { normalizeHostName } from '../policy/host-match';
import type { TlsMode } from '../policy/types';
import type { Target } from '../request/target-types';
import { ClientHelloReader, describeVerdict } from './client-hello';
import type { HelloVerdict } from './client-hello';

/** The rule name recorded for a tunnel refused by its ClientHello (SPEC §6). */
export const SNI_RULE = '(sni)';

/**
 * How long a checked tunnel waits for the client's first bytes once it has its 200. A TLS client
 * sends its ClientHello at once; past this, `require` refuses and `sni-must-match` relays
 * (nothing was sent, so nothing can name another host: the server may be one that speaks first).
 */
export const HELLO_WAIT_MS = 5_000;

/** What the first bytes of a checked tunnel decided. */
export type FirstBytes =
  /** Relay: `held` is every byte read so far, forwarded first and untouched; `helloBytes` of it are the ClientHello (0: not TLS). */
  | { kind: 'pass'; sni: string | null; held: Buffer; helloBytes: number }
  /** Close the tunnel (report mode: relay `held`): the record says deny, rule (sni), and why. */
  | { kind: 'refuse'; sni: string | null; reason: string; held: Buffer }
  /** The client left before its first bytes were decided. */
  | { kind: 'gone' };

/**
 * A ClientHello sent in more pieces than this is refused: each piece is a Buffer held until the
 * verdict, and a client trickling single bytes would otherwise hold tens of thousands of them.
 */
export const MAX_HELLO_READS = 256;

/**
 * Reads the client's first bytes through a tunnel under `tls: sni-must-match | require` (SPEC
 * §6): at most one ClientHello is held (client-hello.ts bounds it to 64 KiB, in at most
 * MAX_HELLO_READS pieces), and for at most HELLO_WAIT_MS. Silence is refused in both modes: a
 * client that waited could send its ClientHello after a pass, unchecked. The client is paused
 * again once it is decided, so splice() reads what follows.
 */
export function readFirstBytes(client: Socket, head: Buffer, mode: Exclude<TlsMode, 'any'>, target: Target, waitMs = HELLO_WAIT_MS): Promise<FirstBytes> {
  return new Promise((resolve) => {
    const reader = new ClientHelloReader();
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (outcome: FirstBytes): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onGone);
      client.off('close', onGone);
      client.off('error', onGone);
      client.pause();
      resolve(outcome);
    };
    const decideOn = (verdict: HelloVerdict): void => {
      if (verdict.kind !== 'need-more') return finish(judge(verdict, mode, target, Buffer.concat(chunks)));
      if (chunks.length >= MAX_HELLO_READS) {
        finish({ kind: 'refuse', sni: null, reason: `TLS ClientHello sent in more than ${MAX_HELLO_READS} pieces`, held: Buffer.concat(chunks) });
      }
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      decideOn(reader.push(chunk));
    };
    const onGone = (): void => finish({ kind: 'gone' });
    const timer = setTimeout(() => {
      const what = chunks.length === 0 ? 'nothing sent' : 'an incomplete ClientHello';
      finish({
        kind: 'refuse', sni: null, held: Buffer.concat(chunks),
        reason: `no complete TLS ClientHello within ${waitMs} ms (${what}; tls: ${mode}: a protocol whose server speaks first needs tls: any on its rule)`,
      });
    }, waitMs);
    client.on('end', onGone);
    client.on('close', onGone);
    client.on('error', onGone);
    if (head.length > 0) onData(head);
    if (!settled) {
      client.on('data', onData);
      client.resume();
    }
  });
}

/** The verdict on a complete read: pass, or refuse with a reason that names both names. */
export function judge(verdict: Exclude<HelloVerdict, { kind: 'need-more' }>, mode: Exclude<TlsMode, 'any'>, target: Target, held: Buffer): FirstBytes {
  const refuse = (sni: string | null, reason: string): FirstBytes => ({ kind: 'refuse', sni, reason, held });
  if (verdict.kind === 'not-tls') {
    // An SSLv2-format hello (high bit set in its first byte) still starts TLS 1.0-1.2 on some
    // servers, and it has no room for an SNI: it would pass any name check. Refused.
    if ((held[0] ?? 0) >= 0x80) return refuse(null, `an SSLv2-format ClientHello carries no SNI and cannot be checked (tls: ${mode})`);
    // Another TLS record first (an alert, say): servers skip some, and the ClientHello after it would go unread.
    if ((held[0] ?? 0) >= 20 && (held[0] ?? 0) <= 24 && held[1] === 3) return refuse(null, `a TLS record of content type ${held[0]} came before the ClientHello (tls: ${mode})`);
    if (mode === 'require') return refuse(null, `not a TLS ClientHello (tls: require): ${describeVerdict(verdict)}`);
    if (mode === 'inspect') return refuse(null, `not_tls: not a TLS ClientHello, so the tunnel cannot be inspected (tls: inspect): ${describeVerdict(verdict)}`);
    return { kind: 'pass', sni: null, held, helloBytes: 0 };
  }
  if (verdict.kind === 'malformed') return refuse(null, `malformed TLS ClientHello: ${describeVerdict(verdict)}`);
  const sni = verdict.sni === null ? null : normalizeHostName(verdict.sni);
  // Only a ChangeCipherSpec or early data may follow a ClientHello before the server answers: a
  // second handshake record there is a second ClientHello, which servers may take instead.
  if (held.length > verdict.bytes && held[verdict.bytes] === 22) return refuse(sni, `a second TLS handshake record follows the ClientHello before the server answered (tls: ${mode})`);
  // With ECH the name the server uses is encrypted: require refuses it; sni-must-match compares the outer name (docs/policies.md).
  if (verdict.ech && mode === 'require') return refuse(sni, 'the ClientHello is encrypted (ECH), so the name the server uses cannot be checked (tls: require)');
  // An address has no name to compare: the policy allowed that address, whatever the client calls it.
  if (target.hostKind !== 'name') return { kind: 'pass', sni, held, helloBytes: verdict.bytes };
  if (verdict.sni === null) {
    return refuse(sni, `TLS ClientHello names no server (no SNI), so it cannot be checked against the CONNECT host "${target.host}" (tls: ${mode})`);
  }
  if (!sniNamesHost(verdict.sni, target.host)) {
    const ech = verdict.ech ? ' (its outer name: the ClientHello is encrypted, ECH)' : '';
    return refuse(sni, `TLS SNI "${sni}"${ech} is not the CONNECT host "${target.host}"`);
  }
  return { kind: 'pass', sni, held, helloBytes: verdict.bytes };
}

/**
 * Whether a ClientHello's SNI names the CONNECT host (a name, not an address), compared as the
 * policy compares names. `policy replay` asks the same of a recorded SNI (decide-shape.ts).
 */
export function sniNamesHost(sni: string, host: string): boolean {
  return normalizeHostName(sni) === normalizeHostName(host);
}

/**
 * After a pass, the client's next TLS records until its first application data: a server that
 * answers with a HelloRetryRequest gets a second ClientHello, which must name the same server
 * (some servers switch to the second name). Fed every client chunk before it is relayed.
 */
export class SecondHelloWatch {
  private header = Buffer.alloc(0);
  private bodyLeft = 0;
  private hello: ClientHelloReader | null = null;
  private done = false;

  constructor(private readonly sni: string) {}

  /** True once there is nothing more to watch (the listener can go). */
  get finished(): boolean {
    return this.done;
  }

  /** null: carry on; a string: the reason to cut the tunnel. */
  push(chunk: Buffer): string | null {
    let at = 0;
    while (!this.done && at < chunk.length) {
      if (this.hello !== null) {
        const verdict = this.hello.push(chunk.subarray(at));
        return verdict.kind === 'need-more' ? null : this.settle(verdict);
      }
      if (this.bodyLeft > 0) {
        const skip = Math.min(this.bodyLeft, chunk.length - at);
        this.bodyLeft -= skip;
        at += skip;
        continue;
      }
      const need = 5 - this.header.length;
      this.header = Buffer.concat([this.header, chunk.subarray(at, at + need)]);
      at += Math.min(need, chunk.length - at);
      if (this.header.length < 5) return null;
      const type = this.header[0];
      if (type === 22) {
        // The next handshake message: read it whole (this record and any that continue it).
        this.hello = new ClientHelloReader();
        const verdict = this.hello.push(this.header);
        this.header = Buffer.alloc(0);
        if (verdict.kind !== 'need-more') return this.settle(verdict);
        continue;
      }
      // Anything but a ChangeCipherSpec ends the handshake's plaintext part: stop watching.
      if (type !== 20) {
        this.done = true;
        return null;
      }
      this.bodyLeft = this.header.readUInt16BE(3);
      this.header = Buffer.alloc(0);
    }
    return null;
  }

  private settle(verdict: HelloVerdict): string | null {
    this.done = true;
    if (verdict.kind !== 'hello') return `a second TLS ClientHello was refused: ${describeVerdict(verdict)}`;
    const second = verdict.sni === null ? null : normalizeHostName(verdict.sni);
    return second === this.sni ? null : `a second TLS ClientHello names "${second ?? '(no SNI)'}", not "${this.sni}"`;
  }
}
