import { createPrivateKey } from 'node:crypto';
import { webcrypto } from 'node:crypto';
import { nameConstraintsExtension } from './name-constraints';
import { EC_P256, generateP256, x509 } from './x509';

/** How far back a certificate's notBefore is set: a client whose clock runs a little behind still accepts it. */
export const CLOCK_SKEW_MS = 5 * 60_000;

export interface CaRequest {
  /** The subject's common name. */
  readonly name: string;
  readonly days: number;
  /** Domains the CA may vouch for (`parsePermitDomain`'s form); empty: no name constraints. */
  readonly permit: readonly string[];
  readonly now: Date;
}

export interface CreatedCa {
  readonly certPem: string;
  /** PKCS#8 PEM: held in memory only until `ca init` writes it to its 0600 file. */
  readonly keyPem: string;
}

/**
 * A self-signed ECDSA P-256 CA for TLS inspection: CA:TRUE with pathlen 0 (it signs leaves, never
 * another CA), keyCertSign + cRLSign only, and with `permit` a critical name constraint.
 */
export async function createCa(request: CaRequest): Promise<CreatedCa> {
  const keys = await generateP256();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (request.permit.length > 0) extensions.push(nameConstraintsExtension(request.permit));
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    // JSON form, not "CN=..." text: a name with a comma or an equals sign stays one value.
    name: [{ CN: [request.name] }],
    keys,
    notBefore: new Date(request.now.getTime() - CLOCK_SKEW_MS),
    notAfter: new Date(request.now.getTime() + request.days * 86_400_000),
    signingAlgorithm: EC_P256,
    extensions,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  pkcs8.fill(0);
  return { certPem: cert.toString('pem') + '\n', keyPem };
}
