import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { ListenAddress, ServeConfig } from '../config';
import { parseRange } from '../policy/ip-range';
import type { PolicyProvenance, PolicySource } from '../policy/provenance';
import { readDescriptorLimit } from '../descriptors';
import type { Moved, SharesMessage, SlotShares, Want } from './tunnel-lending';

/**
 * The messages between the primary (pool.ts: the audit log, the admin app, shipping) and its
 * proxy workers (worker-main.ts), over the cluster's IPC channel as JSON. Audit records do not
 * take this channel: they have one of their own (wire.ts).
 */

/**
 * The config as it crosses to a worker: plain data only (structured cloning drops the methods of
 * the parsed ranges, so they cross as their CIDR text), and no secrets a worker has no use for.
 */
export type PortableConfig = Omit<ServeConfig, 'proxyProtocolFrom' | 'descriptorLimit'> & { proxyProtocolFrom: string[] };

export function toPortable(config: ServeConfig): PortableConfig {
  const { descriptorLimit: _, ...rest } = config;
  return { ...rest, adminToken: null, auditUrl: null, proxyProtocolFrom: config.proxyProtocolFrom.map((range) => range.cidr) };
}

/** The worker's own open-files limit (it may differ from the primary's, and JSON has no Infinity). */
export function fromPortable(config: PortableConfig): ServeConfig {
  return {
    ...config,
    descriptorLimit: readDescriptorLimit(),
    proxyProtocolFrom: config.proxyProtocolFrom.map((cidr) => {
      const parsed = parseRange(cidr);
      if (!parsed.ok) throw new Error(`--proxy-protocol-from: ${parsed.message}`);
      return parsed.range;
    }),
  };
}

/** A policy as its files and the version the primary worked out for them (git or content hash). */
export interface PolicyFiles {
  sources: PolicySource[];
  provenance: PolicyProvenance;
}

/** What a worker needs that it cannot resolve itself: the primary's choices for it. */
export interface WorkerInit {
  t: 'init';
  /** 1…N: the slot this process fills (a replacement takes the slot of the one it replaces). */
  slot: number;
  config: PortableConfig;
  /** The admin listener: the guard refuses connections to it, as to the proxy's own. */
  admin: ListenAddress;
  /** Its shares of the box's limits (the config's) as its slot holds them now (tunnel-lending.ts). */
  shares: SlotShares;
  /** Whether the audit log takes records now; changes follow as `writable` messages. */
  writable: boolean;
  /**
   * The spool folder and this process's name in it when the worker gives its records ids and
   * spools them (block-merge.ts);
   * null when it waits for the primary's ids (--audit-fsync, an in-memory --db: worker-batches.ts).
   */
  spool: { dir: string; name: string } | null;
  /** The primary's policy: workers never read the folder, so they hold what the primary checked. */
  policy: PolicyFiles;
}

export type PrimaryMessage =
  | WorkerInit
  /** The audit log's state changed (a failing store, a low disk): opens are refused without a round trip. */
  | { t: 'writable'; writable: boolean }
  /** The primary reloaded the policies or the users file (a change, or SIGHUP): take them. */
  | { t: 'reload'; policy: PolicyFiles }
  | { t: 'metrics'; seq: number }
  /** SIGTERM reached the primary: stop accepting, finish what is open, exit. */
  | { t: 'drain' }
  /** Another worker is past its share of a limit: give up what this one can spare. */
  | { t: 'lend'; id: number; want: Want }
  /** Slots moved to this worker: the answer to its borrow `id`, or (id 0) slots it did not ask for. */
  | { t: 'granted'; id: number; moved: Moved; source: string | null };

export type WorkerMessage =
  | { t: 'listening'; port: number; address: string; family: string }
  | { t: 'failed'; message: string }
  | { t: 'policy'; version: string; ok: boolean }
  | { t: 'metrics'; seq: number; metrics: Array<MetricObjectWithValues<MetricValue<string>>> }
  /** Past its share of a tunnel limit (tunnel-lending.ts): one more slot, from the other workers; or a source's slots given back. */
  | SharesMessage
  /** The answer to a `lend`: what this worker gave up. */
  | { t: 'lent'; id: number; moved: Moved };

export function isWorkerMessage(value: unknown): value is WorkerMessage {
  return typeof value === 'object' && value !== null && typeof (value as { t?: unknown }).t === 'string';
}

export function isPrimaryMessage(value: unknown): value is PrimaryMessage {
  return isWorkerMessage(value);
}
