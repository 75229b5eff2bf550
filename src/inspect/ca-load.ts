import { createPrivateKey, webcrypto, X509Certificate as NodeCertificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { readSecretFile, SecretFileError } from '../secret-file';
import { InspectCaError } from './ca-error';
import { readNameConstraints } from './name-constraints';
import type { CaNameConstraints } from './name-constraints';
import { pemCertificates } from './pem';
import { x509 } from './x509';
import type { WebCryptoKey } from './x509';

export const CA_CERT_FILE = 'ca.pem';
export const CA_KEY_FILE = 'ca-key.pem';

/** The loaded CA: what the leaf issuer signs with, and what /metrics and the log show of it. */
export interface InspectCa {
  /** The signing CA certificate: the first one in ca.pem. */
  readonly cert: x509.X509Certificate;
  /** ca.pem's certificates as PEM (the CA, then any intermediates above it): served after each leaf. */
  readonly chainPem: string;
  /** Non-extractable: the key cannot leave WebCrypto again, not even to a log by mistake. */
  readonly signingKey: WebCryptoKey;
  readonly signingAlgorithm: { readonly name: string; readonly hash: string };
  readonly notAfter: Date;
  readonly constraints: CaNameConstraints | null;
  /**
   * SHA-256 of the CA certificate (DER) as `openssl x509 -noout -fingerprint -sha256` prints it
   * (upper-case hex pairs joined by colons): what an operator compares it with.
   */
  readonly fingerprint: string;
}

/**
 * The key types a CA may have: `ca init` makes P-256, and a team's own CA (often RSA) works too.
 * Each maps to the WebCrypto import parameters and the signature its leaves get.
 */
function algorithmsFor(key: KeyObject, file: string): { importAs: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams; sign: { name: string; hash: string } } {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType === 'ec' && curve === 'prime256v1') return { importAs: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } };
  if (key.asymmetricKeyType === 'ec' && curve === 'secp384r1') return { importAs: { name: 'ECDSA', namedCurve: 'P-384' }, sign: { name: 'ECDSA', hash: 'SHA-384' } };
  if (key.asymmetricKeyType === 'rsa') return { importAs: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } };
  throw new InspectCaError(`${file}: unsupported key type ${key.asymmetricKeyType ?? 'unknown'}${curve ? ` (${curve})` : ''}; use ECDSA P-256 (tollgate ca init), P-384 or RSA`);
}

function cannotRead(file: string, err: unknown, whenMissing: string): InspectCaError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new InspectCaError(`${file}: missing${whenMissing}`);
  return new InspectCaError(`${file}: cannot be read (${code ?? 'error'})`);
}

/** The key file, refused when group or others may read or write it (readSecretFile says how). */
function readKeyFile(file: string): KeyObject {
  let bytes: Buffer;
  try {
    bytes = readSecretFile(file, 'the CA key');
  } catch (err) {
    if (!(err instanceof SecretFileError)) throw err;
    throw err.code === 'ENOENT' ? new InspectCaError(`${file}: missing${createHint(file)}`) : new InspectCaError(err.message);
  }
  try {
    return createPrivateKey({ key: bytes, format: 'pem' });
  } catch (err) {
    // OpenSSL's reason only (its code), never the bytes: an encrypted key needs a passphrase we never take.
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new InspectCaError(`${file}: not an unencrypted PEM private key (${code})`);
  } finally {
    bytes.fill(0);
  }
}

function createHint(file: string): string {
  return `; create the CA with: tollgate ca init --out ${path.dirname(file)}`;
}

function readCertificates(file: string, whenMissing: string): string[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw cannotRead(file, err, whenMissing);
  }
  let pems: string[];
  try {
    pems = pemCertificates(text);
  } catch {
    throw new InspectCaError(`${file}: holds a damaged PEM certificate`);
  }
  if (pems.length === 0) throw new InspectCaError(`${file}: holds no PEM certificate`);
  return pems;
}

/** Refuse a certificate that cannot sign leaves now: not a CA, no keyCertSign, expired or not yet valid. */
function checkSigningCa(cert: x509.X509Certificate, node: NodeCertificate, file: string, now: Date): void {
  if (!node.ca) throw new InspectCaError(`${file}: not a CA certificate (basicConstraints CA:TRUE is missing)`);
  const usage = cert.getExtension(x509.KeyUsagesExtension);
  if (usage !== null && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw new InspectCaError(`${file}: the CA's keyUsage does not allow keyCertSign`);
  }
  if (cert.notAfter.getTime() <= now.getTime()) {
    throw new InspectCaError(`${file}: the CA expired on ${cert.notAfter.toISOString()}; create a new one (tollgate ca init) and roll it out`);
  }
  if (cert.notBefore.getTime() > now.getTime()) {
    throw new InspectCaError(`${file}: the CA is not valid before ${cert.notBefore.toISOString()} (check this machine's clock)`);
  }
}

/**
 * `serve --inspect-ca DIR`: DIR/ca.pem and DIR/ca-key.pem, checked whole before anything is
 * served. Throws InspectCaError naming the file and the fix.
 */
export async function loadInspectCa(dir: string, now: Date = new Date()): Promise<InspectCa> {
  const certFile = path.join(dir, CA_CERT_FILE);
  const keyFile = path.join(dir, CA_KEY_FILE);
  const pems = readCertificates(certFile, createHint(certFile));
  const key = readKeyFile(keyFile);
  const node = new NodeCertificate(pems[0]);
  const cert = new x509.X509Certificate(pems[0]);
  checkSigningCa(cert, node, certFile, now);
  if (!node.checkPrivateKey(key)) throw new InspectCaError(`${keyFile}: the key does not match the certificate in ${certFile}`);
  const { importAs, sign } = algorithmsFor(key, keyFile);
  const der = key.export({ type: 'pkcs8', format: 'der' });
  let signingKey: WebCryptoKey;
  try {
    signingKey = await webcrypto.subtle.importKey('pkcs8', der, importAs, false, ['sign']);
  } finally {
    der.fill(0);
  }
  return {
    cert,
    chainPem: pems.join(''),
    signingKey,
    signingAlgorithm: sign,
    notAfter: cert.notAfter,
    constraints: readNameConstraints(cert),
    fingerprint: node.fingerprint256,
  };
}

/** `--inspect-trust FILE`: a PEM bundle of CA certificates trusted for destinations, besides the system's. */
export function loadUpstreamTrust(file: string): string[] {
  return readCertificates(file, ' (--inspect-trust)');
}
