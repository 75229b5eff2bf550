// @peculiar/x509 declares its classes with tsyringe decorators, which read the Reflect metadata
// API at load time: without this polyfill first, requiring it throws (TOOLCHAIN.md).
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// Node's own WebCrypto signs and generates keys (OpenSSL underneath); set once, for every module
// that imports x509 from here rather than from the package.
x509.cryptoProvider.set(webcrypto);

export { x509 };

/** The key type of the CA `ca init` makes and of every leaf: ECDSA P-256 signing with SHA-256. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export type WebCryptoKey = webcrypto.CryptoKey;
export type WebCryptoKeyPair = webcrypto.CryptoKeyPair;

/** A fresh P-256 key pair, extractable so its private half can become the PEM a TLS context takes. */
export async function generateP256(): Promise<WebCryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
}
