import type { SecureContext } from 'node:tls';

/**
 * What TLS inspection needs from outside the proxy (SPEC §6 "TLS inspection"): a source of leaf
 * certificates for the hosts it terminates, and what it trusts when it dials the destination.
 * `serve --inspect-ca DIR` builds one (src/inspect/ca.ts); without it no tunnel is inspected.
 */
export interface Inspection {
  /**
   * A server-side context holding a leaf for `host` (a normalised policy host: name in punycode
   * or an IP literal) signed by the team's CA, minted on first use and cached. Concurrent calls
   * for one host share one mint. Rejects with LeafRefusedError (ca.ts; `code`
   * `inspect_host_not_permitted` outside the CA's --permit names, `inspect_invalid_host`) for a host
   * it must not vouch for, and with InspectCaError once the CA has expired.
   */
  contextFor(host: string): Promise<SecureContext>;
  /**
   * CA certificates (PEM) trusted for destinations besides the system's: `--inspect-trust FILE`.
   * Empty: the system CAs alone.
   */
  readonly upstreamTrust: readonly string[];
}
