import { createPrivateKey, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { normaliseHost } from '../request/target';
import { CLOCK_SKEW_MS } from './ca-create';
import type { InspectCa } from './ca-load';
import { generateP256, x509 } from './x509';
import type { WebCryptoKey } from './x509';

/**
 * A leaf lives 24 hours: long enough that a busy host is minted about once a day, short enough
 * that a leaf copied out of memory is soon useless. It is backdated by CLOCK_SKEW_MS, and never
 * outlives its CA.
 */
export const LEAF_VALIDITY_MS = 24 * 3_600_000;

/** A leaf's key pair: the public half goes into the certificate, the private half (PEM) into the TLS context. */
export interface LeafKey {
  readonly publicKey: WebCryptoKey;
  /** PKCS#8 PEM, held in memory only (never written, never logged). */
  readonly privatePem: string;
}

export interface MintedLeaf {
  readonly certPem: string;
  readonly notAfter: Date;
}

/** A fresh P-256 leaf key. */
export async function newLeafKey(): Promise<LeafKey> {
  const keys = await generateP256();
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  try {
    const privatePem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
    return { publicKey: keys.publicKey, privatePem };
  } finally {
    pkcs8.fill(0);
  }
}

/** A host as the SAN holds it: a DNS name, or an address (IPv6 in full, so the library's parser reads it). */
export type LeafName = { readonly type: 'dns' | 'ip'; readonly value: string };

/**
 * The SAN for a normalised policy host (punycode name or IP literal, IPv6 with or without
 * brackets), or null when it is neither: a leaf is never minted for a wildcard or a stray string.
 * The proxy's own host parser (normaliseHost) judges it, and a host it would spell differently
 * (127.1, a Unicode name, text after the host) is refused rather than read as another host.
 */
export function leafNameOf(host: string): LeafName | null {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) === 6) return { type: 'ip', value: ipaddr.IPv6.parse(bare).toNormalizedString() };
  const spelled = bare.toLowerCase().replace(/\.$/, '');
  let parsed: ReturnType<typeof normaliseHost>;
  try {
    parsed = normaliseHost(spelled);
  } catch {
    return null;
  }
  if (parsed.host !== spelled) return null;
  switch (parsed.hostKind) {
    case 'name': return { type: 'dns', value: parsed.host };
    case 'ipv4': return { type: 'ip', value: parsed.host };
    // Only a bracketed spelling parses as IPv6, and it is never what normaliseHost returns: refused.
    case 'ipv6': return null;
  }
}

/**
 * An ECDSA P-256 leaf for one host signed by the CA: SAN = the host, serverAuth only, not a CA.
 * The subject carries the name as CN when it fits (64 characters, RFC 5280's bound); otherwise the
 * subject is empty and the SAN critical, as RFC 5280 §4.2.1.6 requires.
 */
export async function mintLeaf(ca: InspectCa, name: LeafName, key: LeafKey, now: Date): Promise<MintedLeaf> {
  const notAfter = new Date(Math.min(now.getTime() + LEAF_VALIDITY_MS, ca.notAfter.getTime()));
  const withCn = name.value.length <= 64;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension([{ type: name.type, value: name.value }], !withCn),
  ];
  const caKeyId = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  if (caKeyId !== undefined) extensions.push(new x509.AuthorityKeyIdentifierExtension(caKeyId));
  const cert = await x509.X509CertificateGenerator.create({
    subject: withCn ? [{ CN: [name.value] }] : [],
    issuer: ca.cert.subjectName,
    publicKey: key.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: ca.signingAlgorithm,
    notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
    notAfter,
    extensions,
  });
  return { certPem: cert.toString('pem') + '\n', notAfter };
}
