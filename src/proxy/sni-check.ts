import type { Socket } from 'node:net';
import { normalizeHostName } from '../policy/host-match';
import type { TlsMode } from '../policy/types';
import type { Target } from '../request/target-types';
import { ClientHelloReader, describeVerdict } from './client-hello';
import type { HelloVerdict } from './client-hello';

/**
 * How long a checked tunnel waits for the client's first bytes once it has its 200. A TLS client
 * sends its ClientHello at once; past this, `require` refuses and `sni-must-match` relays
 * (nothing was sent, so nothing can name another host: the server may be one that speaks first).
 */
export const HELLO_WAIT_MS = 5_000;

/** What the first bytes of a checked tunnel decided. */
export type FirstBytes =
  /** Relay: `held` is every byte read so far, forwarded first and untouched. */
  | { kind: 'pass'; sni: string | null; held: Buffer }
  /** Close the tunnel: the record says deny, rule (sni), and why. */
  | { kind: 'refuse'; sni: string | null; reason: string }
  /** The client left before its first bytes were decided. */
  | { kind: 'gone' };

/**
 * Reads the client's first bytes through a tunnel under `tls: sni-must-match | require` (SPEC
 * §6): at most one ClientHello is held (client-hello.ts bounds it), and at most HELLO_WAIT_MS.
 * The client is paused again once it is decided, so splice() reads what follows.
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
      if (verdict.kind === 'need-more') return;
      finish(judge(verdict, mode, target, Buffer.concat(chunks)));
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      decideOn(reader.push(chunk));
    };
    const onGone = (): void => finish({ kind: 'gone' });
    const timer = setTimeout(() => {
      // Nothing at all: a server-first protocol may follow. Part of a ClientHello: a stall.
      if (chunks.length === 0 && mode === 'sni-must-match') finish({ kind: 'pass', sni: null, held: Buffer.alloc(0) });
      else finish({ kind: 'refuse', sni: null, reason: `no complete TLS ClientHello within ${waitMs} ms (tls: ${mode})` });
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
  if (verdict.kind === 'not-tls') {
    // An SSLv2-format hello (high bit set in its first byte) still starts TLS 1.0-1.2 on some
    // servers, and it has no room for an SNI: it would pass any name check. Refused.
    if ((held[0] ?? 0) >= 0x80) return { kind: 'refuse', sni: null, reason: `an SSLv2-format ClientHello carries no SNI and cannot be checked (tls: ${mode})` };
    if (mode === 'require') return { kind: 'refuse', sni: null, reason: `not a TLS ClientHello (tls: require): ${describeVerdict(verdict)}` };
    return { kind: 'pass', sni: null, held };
  }
  if (verdict.kind === 'malformed') return { kind: 'refuse', sni: null, reason: `malformed TLS ClientHello: ${describeVerdict(verdict)}` };
  const sni = verdict.sni === null ? null : normalizeHostName(verdict.sni);
  // An address has no name to compare: the policy allowed that address, whatever the client calls it.
  if (target.hostKind !== 'name') return { kind: 'pass', sni, held };
  if (sni === null) {
    return { kind: 'refuse', sni, reason: `TLS ClientHello names no server (no SNI), so it cannot be checked against the CONNECT host "${target.host}" (tls: ${mode})` };
  }
  if (sni !== normalizeHostName(target.host)) {
    const ech = verdict.ech ? ' (its outer name: the ClientHello is encrypted, ECH)' : '';
    return { kind: 'refuse', sni, reason: `TLS SNI "${sni}"${ech} is not the CONNECT host "${target.host}"` };
  }
  return { kind: 'pass', sni, held };
}
