import fs from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { DetailedPeerCertificate, SecureContext } from 'node:tls';
import { createCa } from '../../src/inspect/ca-create';
import type { CaRequest, CreatedCa } from '../../src/inspect/ca-create';

/** A CA written as `ca init` writes it (ca.pem 0644, ca-key.pem 0600) in a fresh temp folder. */
export interface CaFolder extends CreatedCa {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
  remove(): void;
}

export async function writeCaFolder(request: Partial<CaRequest> = {}, prefix = 'tollgate-ca-'): Promise<CaFolder> {
  const ca = await createCa({ name: 'test inspection CA', days: 30, permit: [], now: new Date(), ...request });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const certFile = path.join(dir, 'ca.pem');
  const keyFile = path.join(dir, 'ca-key.pem');
  fs.writeFileSync(certFile, ca.certPem, { mode: 0o644 });
  fs.writeFileSync(keyFile, ca.keyPem, { mode: 0o600 });
  return { ...ca, dir, certFile, keyFile, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export type HandshakeResult =
  | { ok: true; peer: DetailedPeerCertificate; chainLength: number; body: string }
  | { ok: false; code: string; message: string };

/**
 * A real TLS handshake on loopback: a server socket given `context` (as the proxy will terminate a
 * tunnel: a TLSSocket over an accepted connection) and a client trusting only `caPem`, checking the
 * certificate against `host` (for a name it is also the SNI; RFC 6066 sends none for an address).
 */
export async function handshake(context: SecureContext, host: string, caPem: string | string[]): Promise<HandshakeResult> {
  const server = createServer((raw) => {
    raw.on('error', () => undefined);
    const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
    secure.on('error', () => raw.destroy());
    secure.on('secure', () => secure.end('hello over inspected TLS'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const isAddress = /^[0-9.]+$|:/.test(host);
  try {
    return await new Promise<HandshakeResult>((resolve) => {
      const client = tls.connect({
        host: '127.0.0.1', port, ca: caPem, ...(isAddress ? {} : { servername: host }),
        checkServerIdentity: (_name, cert) => tls.checkServerIdentity(host, cert),
      });
      let body = '';
      let peer: DetailedPeerCertificate | null = null;
      client.on('secureConnect', () => (peer = client.getPeerCertificate(true)));
      client.on('data', (chunk: Buffer) => (body += chunk.toString()));
      client.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, code: err.code ?? 'error', message: err.message }));
      client.on('end', () => {
        const leaf = peer;
        if (leaf === null) return resolve({ ok: false, code: 'no_peer_certificate', message: 'ended before the handshake' });
        let chainLength = 1;
        for (let at = leaf; at.issuerCertificate !== undefined && at.issuerCertificate !== at; at = at.issuerCertificate) chainLength += 1;
        resolve({ ok: true, peer: leaf, chainLength, body });
        client.destroy();
      });
    });
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}
