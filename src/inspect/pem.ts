import { X509Certificate } from 'node:crypto';

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g;

/**
 * The certificates of a PEM bundle, in order, each checked to parse (node:crypto). Anything between
 * them (comments, `openssl x509 -text` output) is ignored, as OpenSSL does.
 */
export function pemCertificates(text: string): string[] {
  return (text.match(CERTIFICATE_BLOCK) ?? []).map((block) => {
    // Throws on a damaged block: the caller names the file.
    new X509Certificate(block);
    return `${block}\n`;
  });
}
