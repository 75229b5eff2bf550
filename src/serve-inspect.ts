import { ConfigError } from './config-error';
import type { ServeConfig } from './config';
import { InspectCaError, LeafIssuer, loadInspectCa, loadUpstreamTrust } from './inspect/ca';
import type { InspectCa } from './inspect/ca';
import { describeConstraints } from './inspect/name-constraints';
import type { Logger } from './log';
import type { ProxyMetrics } from './metrics';

/** Below this many days to expiry the start says so: time to roll out a new CA. */
const EXPIRY_WARNING_DAYS = 30;

/**
 * `--inspect-ca` at start, before the audit store opens: the CA and the trust bundle checked whole
 * (a ConfigError, so serve exits non-zero, naming the file), the metrics registered, one log line.
 * `proxy` builds the leaf issuer the proxy uses; `primary` (serve --workers) only checks and
 * reports, as each worker loads the CA itself.
 */
export async function openInspection(config: ServeConfig, log: Logger, metrics: ProxyMetrics, role: 'proxy' | 'primary'): Promise<LeafIssuer | null> {
  if (config.inspectCa === null) return null;
  let ca: InspectCa;
  let trust: string[];
  try {
    ca = await loadInspectCa(config.inspectCa);
    trust = config.inspectTrust === null ? [] : loadUpstreamTrust(config.inspectTrust);
  } catch (err) {
    if (err instanceof InspectCaError) throw new ConfigError(`--inspect-ca: ${err.message}`);
    throw err;
  }
  const issuer = role === 'proxy'
    ? await LeafIssuer.create(ca, trust, { observer: { minted: (s) => metrics.inspectLeafMinted(s), hit: () => metrics.inspectLeafHit() } })
    : null;
  metrics.setInspectCa(ca.notAfter, issuer === null ? undefined : () => issuer.stats().cached);
  if (role === 'primary' || config.workers === 1) logCa(config, ca, trust.length, log);
  return issuer;
}

function logCa(config: ServeConfig, ca: InspectCa, trusted: number, log: Logger): void {
  const daysLeft = (ca.notAfter.getTime() - Date.now()) / 86_400_000;
  const fields = {
    inspect_ca: config.inspectCa, ca_subject: ca.cert.subject, ca_sha256: ca.fingerprint, ca_not_after: ca.notAfter.toISOString(),
    ca_permits: ca.constraints === null ? null : describeConstraints(ca.constraints), inspect_trust: config.inspectTrust, inspect_trust_certificates: trusted,
  };
  log.info(fields, 'TLS inspection CA loaded');
  if (daysLeft < EXPIRY_WARNING_DAYS) log.warn({ ...fields, days_left: Math.floor(daysLeft) }, 'the TLS inspection CA expires soon: create a new one and roll it out');
}
