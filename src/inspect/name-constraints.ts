import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, NameConstraints, id_ce_nameConstraints } from '@peculiar/asn1-x509';
import { looksLikeIp, parseLiteral, parseRange, rangeContains } from '../policy/ip-range';
import type { IpRange } from '../policy/ip-range';
import { normaliseHost } from '../request/target';
import { x509 } from './x509';

/**
 * X.509 name constraints (RFC 5280 §4.2.1.10) on the inspection CA: `ca init --permit DOMAIN`
 * writes them, and the leaf issuer reads them back so it refuses to mint what every client would
 * refuse anyway — a clear error at the proxy instead of a handshake failure at the workload.
 */
export interface CaNameConstraints {
  readonly permittedDns: readonly string[];
  readonly excludedDns: readonly string[];
  readonly permittedIp: readonly IpRange[];
  readonly excludedIp: readonly IpRange[];
}

/**
 * Every IPv4 and IPv6 address excluded. RFC 5280 constrains only the name forms a constraint
 * names: permitted dNSName subtrees alone leave a leaf with an iPAddress SAN unconstrained, so a
 * CA meant to vouch "only for these domains" must also exclude all addresses.
 */
const ALL_ADDRESSES = ['0.0.0.0/0', '::/0'];

/** What ends or hides a host in a URL: the URL parser would read only the part before it as the name. */
const NOT_IN_A_NAME = /[\u0000-\u0020\u007f/?#@\\]/;

/**
 * One `--permit` value as the constraint will hold it: lower case, punycode, read by the proxy's
 * own host parser (normaliseHost). `example.com` covers the name and every name under it (RFC
 * 5280); `.example.com` only the names under it (the OpenSSL and Go reading). Wildcards and
 * addresses are refused with the fix.
 */
export function parsePermitDomain(text: string): string {
  const trimmed = text.trim().toLowerCase();
  const subdomainsOnly = trimmed.startsWith('.');
  const bare = subdomainsOnly ? trimmed.slice(1) : trimmed;
  if (bare.startsWith('*')) {
    throw new Error(`--permit "${text}": no wildcards; "${bare.replace(/^[*.]+/, '')}" already covers every name under it`);
  }
  const parsed = NOT_IN_A_NAME.test(bare) ? null : hostOrNull(bare);
  // looksLikeIp: an IPv6 address or a CIDR is no host to the parser, but plainly meant as an address.
  if ((parsed !== null && parsed.hostKind !== 'name') || looksLikeIp(bare)) {
    throw new Error(`--permit "${text}": names a DNS domain, not an address (a CA with --permit vouches for no address)`);
  }
  if (parsed === null) throw new Error(`--permit "${text}": not a DNS domain name`);
  return subdomainsOnly ? `.${parsed.host}` : parsed.host;
}

function hostOrNull(text: string): ReturnType<typeof normaliseHost> | null {
  try {
    return normaliseHost(text);
  } catch {
    return null;
  }
}

/** The extension `ca init --permit` adds: the domains permitted, every address excluded; critical. */
export function nameConstraintsExtension(permitted: readonly string[]): x509.Extension {
  const subtree = (base: GeneralName): GeneralSubtree => new GeneralSubtree({ base });
  const value = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees(permitted.map((dNSName) => subtree(new GeneralName({ dNSName })))),
    excludedSubtrees: new GeneralSubtrees(ALL_ADDRESSES.map((iPAddress) => subtree(new GeneralName({ iPAddress })))),
  });
  // Critical (RFC 5280 §4.2.1.10 says MUST): a client that cannot enforce it must reject the CA.
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(value));
}

function namesOf(subtrees: GeneralSubtrees | undefined): { dns: string[]; ip: IpRange[] } {
  const dns: string[] = [];
  const ip: IpRange[] = [];
  for (const { base } of subtrees ?? []) {
    if (base.dNSName !== undefined) dns.push(base.dNSName.toLowerCase());
    if (base.iPAddress !== undefined) {
      const parsed = parseRange(base.iPAddress);
      if (parsed.ok) ip.push(parsed.range);
    }
  }
  return { dns, ip };
}

/** The CA's name constraints, or null when it has none (it may vouch for any name). */
export function readNameConstraints(cert: x509.X509Certificate): CaNameConstraints | null {
  const extension = cert.getExtension(id_ce_nameConstraints);
  if (extension === null) return null;
  const parsed = AsnConvert.parse(extension.value, NameConstraints);
  const permitted = namesOf(parsed.permittedSubtrees);
  const excluded = namesOf(parsed.excludedSubtrees);
  return { permittedDns: permitted.dns, excludedDns: excluded.dns, permittedIp: permitted.ip, excludedIp: excluded.ip };
}

/** RFC 5280: a name satisfies `example.com` by adding labels on the left; `.example.com` needs one. */
function dnsWithin(host: string, constraint: string): boolean {
  if (constraint === '') return true;
  if (constraint.startsWith('.')) return host.endsWith(constraint);
  return host === constraint || host.endsWith(`.${constraint}`);
}

/** Whether a leaf for `host` (a normalised name or an IP literal) would satisfy the constraints. */
export function permitsHost(constraints: CaNameConstraints | null, host: string): boolean {
  if (constraints === null) return true;
  const address = parseLiteral(host);
  if (address !== null) {
    if (constraints.excludedIp.some((range) => rangeContains(range, address))) return false;
    return constraints.permittedIp.length === 0 || constraints.permittedIp.some((range) => rangeContains(range, address));
  }
  const name = host.toLowerCase();
  if (constraints.excludedDns.some((c) => dnsWithin(name, c))) return false;
  return constraints.permittedDns.length === 0 || constraints.permittedDns.some((c) => dnsWithin(name, c));
}

/** What the constraints allow, for an error message: `example.com, .corp.example`. */
export function describeConstraints(constraints: CaNameConstraints): string {
  const permitted = [...constraints.permittedDns, ...constraints.permittedIp.map((range) => range.cidr)];
  return permitted.length === 0 ? 'no permitted names listed' : permitted.join(', ');
}
