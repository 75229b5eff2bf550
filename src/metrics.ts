import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { Action } from './policy/types';
import type { ProxyErrorCode } from './request/errors-types';
import type { RequestKind } from './request/target-types';

/** The upstream failures counted by `tollgate_upstream_errors_total{kind}`: a fixed label set. */
export const UPSTREAM_ERROR_KINDS = [
  'dns_failed', 'dns_timeout', 'connect_refused', 'connect_reset', 'connect_failed', 'connect_timeout',
  'upstream_error', 'upstream_timeout', 'upstream_certificate', 'upstream_tls',
] as const satisfies readonly ProxyErrorCode[];
export type UpstreamErrorKind = (typeof UPSTREAM_ERROR_KINDS)[number];

const REQUEST_KINDS: readonly RequestKind[] = ['connect', 'http', 'https'];
const DECISIONS: readonly Action[] = ['allow', 'deny'];

/**
 * An audit write is one synchronous SQLite commit (tens of microseconds; a lock or a slow disk
 * makes it milliseconds, and it blocks the event loop meanwhile), so the buckets start low.
 */
const AUDIT_WRITE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/**
 * What the proxy reports, and the registry /metrics renders. Every method is cheap and never
 * throws (a metric must not fail a request). One instance per process, passed in rather than a
 * module-level registry, so each test's proxy counts only its own requests.
 */
/** One process's metrics as prom-client's JSON: what workers send the primary to sum. */
export type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>;

export interface ProxyMetrics {
  readonly registry: Registry;
  /** The text /metrics serves: this process's registry, summed with the workers' when there are any. */
  render(): Promise<string>;
  /** A worker process died and another took its place (serve --workers). */
  workerRestarted(): void;
  /** --workers: /metrics sums these processes' metrics (fetched at each scrape) with this one's. */
  setPeers(fetch: () => Promise<MetricsJson[]>): void;
  /** One call per decided request (not per malformed one); wouldDeny only with decision allow. */
  requestDecided(kind: RequestKind, decision: Action, wouldDeny: boolean): void;
  /** Bytes relayed: up = client -> destination, down = destination -> client. */
  bytes(up: number, down: number): void;
  upstreamError(kind: UpstreamErrorKind): void;
  /** Duration of one audit write (open, record or complete), in seconds. */
  auditWrite(seconds: number): void;
  policyReload(ok: boolean): void;
  /** Read at every scrape: the number of open CONNECT tunnels. */
  setOpenTunnels(count: () => number): void;
  /** Read at every scrape: whether the audit log accepts writes (1) or not (0). */
  setAuditWritable(writable: () => boolean): void;
  /** A connection past --max-client-connections, answered 503. */
  clientConnectionRefused(): void;
  /** A connection refused for its PROXY protocol header (--proxy-protocol-from), by reason. */
  proxyHeaderRefused(reason: ProxyHeaderRefusal): void;
  /** Read at every scrape: open client connections, against the cap set at start. */
  setClientConnections(open: () => number, limit: number): void;
  /** A `--workers` worker past its share of a limit asked the others for a slot, and got one or not. */
  limitBorrowed(limit: LentLimit, granted: boolean): void;
  /** Read at every scrape: the audit volume's free space against --min-free-disk. */
  setAuditDisk(state: () => AuditDiskGauges): void;
  /** Records deleted by --retain. */
  recordsPruned(count: number): void;
  /** Read at every scrape: how far the SQLite index behind the admin API lags the audit log. */
  setAuditIndex(status: () => AuditIndexGauges): void;
  /** Read at every scrape: shipping to PostgreSQL (--audit-url); totals only ever grow. */
  setAuditShip(status: () => AuditShipGauges): void;
  /**
   * --inspect-ca: registers the CA's days-to-expiry gauge and the leaf counters (a proxy without
   * inspection shows none of them). `cachedLeaves` is read at every scrape where leaves are minted.
   */
  setInspectCa(notAfter: Date, cachedLeaves?: () => number): void;
  /** A leaf certificate was minted (a cache miss), taking this long in seconds. */
  inspectLeafMinted(seconds: number): void;
  /** A leaf context came from the cache (or from a mint another tunnel had started). */
  inspectLeafHit(): void;
}

/** Why a PROXY protocol header was refused (proxy/proxy-protocol-accept.ts). */
export const PROXY_HEADER_REFUSALS = ['missing', 'unexpected', 'malformed', 'timeout'] as const;
export type ProxyHeaderRefusal = (typeof PROXY_HEADER_REFUSALS)[number];
/** The per-box limits whose shares `--workers` workers lend each other (cluster/tunnel-lending.ts). */
export type LentLimit = 'max_tunnels' | 'max_tunnels_per_source' | 'max_client_connections';

/** What the ship gauges and counters show (fleet/ship-status.ts ShipStatus). */
export interface AuditShipGauges {
  backlogEntries: number;
  oldestSeconds: number;
  shippedEntries: number;
  failures: number;
}

/** What the index gauges show (index-protocol.ts IndexStatus). */
export interface AuditIndexGauges {
  lagSeconds: number;
  entriesBehind: number;
  damagedRegions: number;
}

/** What the disk gauges show: free bytes (null: not measured), the watermark, and whether below it. */
export interface AuditDiskGauges {
  freeBytes: number | null;
  minFreeBytes: number;
  low: boolean;
}

function positive(n: number): boolean {
  return Number.isFinite(n) && n > 0;
}

/** A fresh registry (never prom-client's global one): tests build many apps in one process. */
export function createMetrics(): ProxyMetrics {
  const registry = new Registry();
  // Unprefixed (process_*, nodejs_*): the names the usual Node.js dashboards expect.
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const requests = new Counter({
    name: 'tollgate_requests_total', help: 'Requests decided, by kind and decision', labelNames: ['kind', 'decision'] as const, registers,
  });
  const wouldDeny = new Counter({ name: 'tollgate_would_deny_total', help: 'Policy denials let through by report mode', registers });
  const bytes = new Counter({
    name: 'tollgate_bytes_total', help: 'Bytes relayed: up = client to destination, down = destination to client', labelNames: ['direction'] as const, registers,
  });
  const upstreamErrors = new Counter({
    name: 'tollgate_upstream_errors_total', help: 'Failures reaching or talking to destinations, by kind', labelNames: ['kind'] as const, registers,
  });
  const auditWrites = new Histogram({
    name: 'tollgate_audit_write_seconds', help: 'How long a batch of audit opens and completions takes to commit, as the proxy waits for it (on the writer thread: from posting the batch to its answer); one batch counts once', buckets: AUDIT_WRITE_BUCKETS, registers,
  });
  const reloads = new Counter({
    name: 'tollgate_policy_reloads_total', help: 'Policy reloads, by result', labelNames: ['result'] as const, registers,
  });
  let openTunnels: () => number = () => 0;
  new Gauge({
    name: 'tollgate_open_tunnels', help: 'Open CONNECT tunnels', registers,
    collect() { this.set(openTunnels()); },
  });
  let auditWritable: (() => boolean) | null = null;
  // Registered only once wired: an unwired gauge would read 0, "the audit log is down".
  const registerAuditWritable = (): void => {
    new Gauge({
      name: 'tollgate_audit_writable', help: '1 while the audit log accepts writes, else 0 (requests get 503)', registers,
      collect() { this.set(auditWritable?.() === true ? 1 : 0); },
    });
  };
  const connections = clientConnectionMetrics(registers);
  const restarts = new Counter({ name: 'tollgate_worker_restarts_total', help: 'Proxy worker processes that died and were replaced (serve --workers)', registers });
  const pruned = new Counter({ name: 'tollgate_audit_pruned_records_total', help: 'Audit records deleted by --retain', registers });
  let auditDisk: (() => AuditDiskGauges) | null = null;
  const registerAuditDisk = (): void => {
    const read = (): AuditDiskGauges => auditDisk?.() ?? { freeBytes: null, minFreeBytes: 0, low: false };
    new Gauge({
      name: 'tollgate_audit_disk_free_bytes', help: 'Free space on the volume of the audit file (for unprivileged users)', registers,
      collect() {
        const free = read().freeBytes;
        // Not measured (watermark off, volume unreadable): no sample rather than a false 0.
        if (free === null) this.reset();
        else this.set(free);
      },
    });
    new Gauge({ name: 'tollgate_audit_disk_min_free_bytes', help: '--min-free-disk in bytes (0 = off)', registers, collect() { this.set(read().minFreeBytes); } });
    new Gauge({
      name: 'tollgate_audit_disk_low', help: '1 while free space is below --min-free-disk (requests get 503), else 0', registers,
      collect() { this.set(read().low ? 1 : 0); },
    });
  };
  // Zero-valued series from the start, so rate() and alerts see every label set before its first event.
  for (const kind of REQUEST_KINDS) for (const decision of DECISIONS) requests.inc({ kind, decision }, 0);
  for (const direction of ['up', 'down']) bytes.inc({ direction }, 0);
  for (const kind of UPSTREAM_ERROR_KINDS) upstreamErrors.inc({ kind }, 0);
  for (const result of ['ok', 'error']) reloads.inc({ result }, 0);

  let peers: (() => Promise<MetricsJson[]>) | null = null;
  return {
    registry,
    render: async () => {
      if (peers === null) return registry.metrics();
      // Counters, histograms and most gauges add up; prom-client's default process metrics
      // carry their own rule (a version is taken once, not summed).
      const all = [await registry.getMetricsAsJSON(), ...(await peers())];
      return AggregatorRegistry.aggregate(all).metrics();
    },
    workerRestarted: () => restarts.inc(),
    setPeers: (fetch) => {
      peers = fetch;
    },
    requestDecided: (kind, decision, denied) => {
      requests.inc({ kind, decision });
      if (denied) wouldDeny.inc();
    },
    bytes: (up, down) => {
      if (positive(up)) bytes.inc({ direction: 'up' }, up);
      if (positive(down)) bytes.inc({ direction: 'down' }, down);
    },
    upstreamError: (kind) => upstreamErrors.inc({ kind }),
    auditWrite: (seconds) => {
      if (Number.isFinite(seconds) && seconds >= 0) auditWrites.observe(seconds);
    },
    policyReload: (ok) => reloads.inc({ result: ok ? 'ok' : 'error' }),
    setOpenTunnels: (count) => { openTunnels = count; },
    setAuditDisk: (state) => {
      if (auditDisk === null) registerAuditDisk();
      auditDisk = state;
    },
    recordsPruned: (count) => {
      if (positive(count)) pruned.inc(count);
    },
    setAuditWritable: (writable) => {
      if (auditWritable === null) registerAuditWritable();
      auditWritable = writable;
    },
    ...connections,
    ...auditIndexMetrics(registers),
    ...auditShipMetrics(registers),
    ...inspectMetrics(registers),
  };
}

/**
 * A mint is one ECDSA signature and a TLS context: a few milliseconds (bench/leaf-mint.ts); a
 * starved event loop or thread pool shows as the upper buckets.
 */
const LEAF_MINT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** TLS inspection (inspect/ca.ts): registered only with --inspect-ca, in the primary and every worker. */
function inspectMetrics(registers: Registry[]): Pick<ProxyMetrics, 'setInspectCa' | 'inspectLeafMinted' | 'inspectLeafHit'> {
  let recorders: { minted(seconds: number): void; hit(): void } | null = null;
  return {
    setInspectCa: (notAfter, cachedLeaves) => {
      if (recorders !== null) return;
      // Every process reports the same CA: with workers the primary takes the smallest, not the sum.
      new Gauge({
        name: 'tollgate_inspect_ca_expiry_days', help: 'Days until the inspection CA (--inspect-ca) expires; leaves can no longer be minted after', aggregator: 'min', registers,
        collect() { this.set((notAfter.getTime() - Date.now()) / 86_400_000); },
      });
      // Only where leaves are minted (not in the primary of serve --workers): an unlabelled gauge always has a sample.
      if (cachedLeaves !== undefined) {
        new Gauge({
          name: 'tollgate_inspect_leaf_cache_entries', help: 'Leaf certificate contexts held in the cache (at most 1,000 per process)', registers,
          collect() { this.set(cachedLeaves()); },
        });
      }
      const mints = new Counter({ name: 'tollgate_inspect_leaf_mints_total', help: 'Leaf certificates minted for inspected hosts (leaf cache misses)', registers });
      const hits = new Counter({ name: 'tollgate_inspect_leaf_cache_hits_total', help: 'Inspected tunnels served a cached leaf (or one another tunnel was minting)', registers });
      const mintSeconds = new Histogram({ name: 'tollgate_inspect_leaf_mint_seconds', help: 'How long minting a leaf certificate and its TLS context takes', buckets: LEAF_MINT_BUCKETS, registers });
      recorders = {
        minted: (seconds) => {
          mints.inc();
          if (Number.isFinite(seconds) && seconds >= 0) mintSeconds.observe(seconds);
        },
        hit: () => hits.inc(),
      };
    },
    inspectLeafMinted: (seconds) => recorders?.minted(seconds),
    inspectLeafHit: () => recorders?.hit(),
  };
}

/** The audit index (index-thread.ts): registered when a store with an index is served. */
function auditIndexMetrics(registers: Registry[]): Pick<ProxyMetrics, 'setAuditIndex'> {
  let read: (() => AuditIndexGauges) | null = null;
  const register = (): void => {
    const gauge = (name: string, help: string, value: (g: AuditIndexGauges) => number): void =>
      void new Gauge({ name, help, registers, collect() { if (read !== null) this.set(value(read())); } });
    gauge('tollgate_audit_index_lag_seconds', 'Age of the oldest audit log entry not yet in the index the admin API reads (0 when caught up)', (g) => g.lagSeconds);
    gauge('tollgate_audit_index_entries_behind', 'Audit log entries not yet in the index', (g) => g.entriesBehind);
    gauge('tollgate_audit_log_damaged_regions', 'Torn or damaged audit log regions skipped since start (never read as records)', (g) => g.damagedRegions);
  };
  return {
    setAuditIndex: (status) => {
      if (read === null) register();
      read = status;
    },
  };
}

/** Shipping to PostgreSQL (fleet/ship-thread.ts): registered only with --audit-url. */
function auditShipMetrics(registers: Registry[]): Pick<ProxyMetrics, 'setAuditShip'> {
  let read: (() => AuditShipGauges) | null = null;
  const register = (): void => {
    const gauge = (name: string, help: string, value: (g: AuditShipGauges) => number): void =>
      void new Gauge({ name, help, registers, collect() { if (read !== null) this.set(value(read())); } });
    gauge('tollgate_audit_ship_backlog_records', 'Audit log entries (opens, completions) not yet shipped to PostgreSQL', (g) => g.backlogEntries);
    gauge('tollgate_audit_ship_backlog_oldest_seconds', 'Age of the oldest audit log entry not yet shipped to PostgreSQL (0 when none)', (g) => g.oldestSeconds);
    // The thread keeps running totals; a counter here moves by what they grew since the last scrape.
    const counter = (name: string, help: string, value: (g: AuditShipGauges) => number): void => {
      let seen = 0;
      void new Counter({
        name, help, registers,
        collect() {
          const total = read === null ? seen : value(read());
          if (total > seen) this.inc(total - seen);
          seen = Math.max(seen, total);
        },
      });
    };
    counter('tollgate_audit_shipped_records_total', 'Audit log entries shipped to PostgreSQL', (g) => g.shippedEntries);
    counter('tollgate_audit_ship_failures_total', 'Ship attempts to PostgreSQL that failed (each is retried)', (g) => g.failures);
  };
  return {
    setAuditShip: (status) => {
      if (read === null) register();
      read = status;
    },
  };
}

/** The client connection cap (connection-limit.ts): how close to it, and how often past it. */
function clientConnectionMetrics(registers: Registry[]): Pick<ProxyMetrics, 'clientConnectionRefused' | 'setClientConnections' | 'proxyHeaderRefused' | 'limitBorrowed'> {
  const borrows = new Counter({
    name: 'tollgate_limit_borrows_total',
    help: 'With --workers: a worker past its share of a per-box limit asked the other workers for a slot, by limit and outcome',
    labelNames: ['limit', 'outcome'] as const,
    registers,
  });
  const refused = new Counter({
    name: 'tollgate_client_connections_refused_total', help: 'Client connections answered 503 because --max-client-connections was reached', registers,
  });
  const headers = new Counter({
    name: 'tollgate_proxy_protocol_refused_total', help: 'Connections refused for their PROXY protocol header (--proxy-protocol-from), by reason', labelNames: ['reason'] as const, registers,
  });
  // Every reason shows from the start (0), so a dashboard need not guess the label values.
  for (const reason of PROXY_HEADER_REFUSALS) headers.inc({ reason }, 0);
  let open: () => number = () => 0;
  new Gauge({
    name: 'tollgate_client_connections', help: 'Open client connections (tunnels included) counted against --max-client-connections', registers,
    collect() { this.set(open()); },
  });
  const limit = new Gauge({ name: 'tollgate_client_connections_limit', help: 'The --max-client-connections in force', registers });
  return {
    clientConnectionRefused: () => refused.inc(),
    limitBorrowed: (limit, granted) => borrows.inc({ limit, outcome: granted ? 'granted' : 'refused' }),
    proxyHeaderRefused: (reason) => headers.inc({ reason }),
    setClientConnections: (count, max) => {
      open = count;
      limit.set(max);
    },
  };
}
