import cluster from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Worker } from 'node:cluster';
import path from 'node:path';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { BatchTarget } from '../audit/group-commit';
import { workerModule } from '../audit/start-worker';
import type { ListenAddress, ServeConfig } from '../config';
import type { Logger } from '../log';
import type { MetricsJson } from '../metrics';
import { boxLimits } from './limits';
import { isWorkerMessage, toPortable } from './protocol';
import { AUDIT_CHANNEL_FD } from './wire';
import { WorkerBatches } from './worker-batches';
import type { WorkerRecords } from './worker-batches';
import { BlockMerge } from './block-merge';
import { newSpoolName } from './spool';
import { LendingDesk } from './lending-desk';
import type { LendingMember } from './lending-desk';
import type { BatchMember } from './worker-batches';
import type { PolicyFiles, PrimaryMessage, WorkerMessage } from './protocol';

/** A worker that exits sooner than this after its start is crashing: the next start waits. */
const QUICK_EXIT_MS = 5_000;
const RESPAWN_MAX_DELAY_MS = 30_000;
/** How long a scrape waits for each worker's metrics before leaving it out. */
const METRICS_WAIT_MS = 2_000;
/** After --drain-timeout, how long workers have to send their last completions and exit. */
const EXIT_GRACE_MS = 10_000;
/** How often the log's state is checked for a change to tell the workers. */
const WRITABLE_CHECK_MS = 250;

type WorkerState = 'starting' | 'listening' | 'draining' | 'exited';

/** One worker process: a slot (1…N) is filled by one process at a time, replaced when it dies. */
interface Member extends BatchMember, LendingMember {
  readonly worker: Worker;
  readonly startedAt: number;
  state: WorkerState;
  policyVersion: string | null;
  /** Its registry as last reported (summed while it does not answer, kept as retired when it dies). */
  lastMetrics: MetricsJson | null;
}

export interface PoolOptions {
  config: ServeConfig;
  log: Logger;
  /** The box's one audit log (gated on free disk): every worker's batches are committed here. */
  target: BatchTarget;
  admin: ListenAddress;
  /** The policy the primary holds, sent to every worker at its start and with each reload. */
  policy: () => PolicyFiles;
  /** Told when a worker takes the place of one that died (the restarts metric). */
  onRestart?: () => void;
}

/**
 * `serve --workers N`: N proxy processes (node:cluster) share the proxy port; this process, the
 * primary, keeps what there must be one of per box: the audit log and its index, shipping, the
 * access log, retention, the admin app and its sessions, the policy watch.
 *
 * Why one writer: the index, shipping, the access log, the chain and `audit verify` each follow
 * one log in id order. Workers give their records ids from blocks reserved here, spool each batch
 * (before a byte is forwarded) and send it on without waiting; the primary appends them in id order
 * (block-merge.ts). Where the store takes records as objects (--audit-fsync, an in-memory --db) a
 * worker waits for the ids instead (worker-batches.ts). Why, and what it costs:
 * docs/architecture.md "Records without a round trip", docs/performance.md "Workers".
 */
export class WorkerPool {
  private readonly members = new Map<number, Member>();
  private readonly quickExits = new Map<number, number>();
  private metricsSeq = 0;
  private readonly metricsWaiting = new Map<number, (json: MetricsJson) => void>();
  private draining = false;
  private lastWritable = true;
  private readonly writableTimer: NodeJS.Timeout;
  private restarts = 0;
  private reloadPending: NodeJS.Immediate | null = null;
  private retired: MetricsJson[] = [];

  /** The workers' records: merged in id order from their spools, or committed for them on a round trip. */
  private readonly batches: WorkerRecords;
  /** Every slot's shares of the tunnel limits, and the lending between them (lending-desk.ts). */
  private readonly lending: LendingDesk<Member>;
  /**
   * How connections reach the workers. By default each worker accepts from the shared socket
   * itself, as the kernel wakes it: nothing per connection in the primary. Node's own
   * `NODE_CLUSTER_SCHED_POLICY=rr` selects the cluster's round robin instead: the primary accepts
   * every connection and hands it to the next worker, which spreads even sequential connections
   * evenly at about a third more CPU per new tunnel (docs/operations.md "Using every core"). The
   * limits hold per box either way: the tunnel limits' shares move to the worker that needs them
   * (tunnel-lending.ts).
   */
  readonly scheduling: 'round-robin' | 'kernel' = process.env.NODE_CLUSTER_SCHED_POLICY === 'rr' ? 'round-robin' : 'kernel';

  constructor(private readonly opts: PoolOptions) {
    const numbered = opts.target.numbered;
    this.batches = numbered === undefined ? new WorkerBatches(opts.target, opts.log) : new BlockMerge(numbered, opts.target, opts.log);
    this.lending = new LendingDesk(boxLimits(opts.config), opts.config.workers, (slot) => this.members.get(slot), (member, message) => this.send(member, message));
    cluster.schedulingPolicy = this.scheduling === 'kernel' ? cluster.SCHED_NONE : cluster.SCHED_RR;
    opts.log.info({ scheduling: this.scheduling }, this.scheduling === 'kernel'
      ? 'workers accept connections themselves (NODE_CLUSTER_SCHED_POLICY=rr for the round robin)'
      : 'the primary hands connections to the workers in turn (NODE_CLUSTER_SCHED_POLICY=rr)');
    cluster.setupPrimary({
      exec: path.join(__dirname, 'cluster-entry.js'),
      args: [],
      serialization: 'json',
      // fd 3 is the cluster's own channel; fd 4 (AUDIT_CHANNEL_FD) the audit records' (wire.ts).
      stdio: [0, 1, 2, 'ipc', 'pipe'],
    });
    this.lastWritable = opts.target.writable();
    this.writableTimer = setInterval(() => this.tellWritable(), WRITABLE_CHECK_MS);
    this.writableTimer.unref();
  }

  /** Forks every worker; resolves with the proxy's address once all of them listen. */
  start(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      let listening = 0;
      let address: AddressInfo | null = null;
      for (let slot = 1; slot <= this.opts.config.workers; slot += 1) {
        this.fork(slot, {
          listening: (at) => {
            address ??= at;
            listening += 1;
            if (listening === this.opts.config.workers) resolve(address);
          },
          failed: (why) => {
            this.stopAll();
            reject(new Error(why));
          },
        });
      }
    });
  }

  /**
   * The admin API's read barrier: what the workers answered is in the log before the index is
   * read (spooled records reach it in id order, later than they were answered: block-merge.ts).
   */
  flush(): Promise<void> {
    return this.batches.flush();
  }

  /** A policy or users file reload in this process: every worker loads them again. */
  reload(): void {
    // A SIGHUP reloads the policies (whose listener calls this) and the users file (which calls
    // it again): one broadcast for both.
    this.reloadPending ??= setImmediate(() => {
      this.reloadPending = null;
      this.broadcast({ t: 'reload', policy: this.opts.policy() });
    });
  }

  /**
   * What /metrics sums with the primary's own: each live worker's registry (its last answer when
   * it is slow to give one), and the counters of workers that died, so that no total ever goes
   * down (Prometheus would read that as a reset).
   */
  async workerMetrics(): Promise<MetricsJson[]> {
    const asked = [...this.members.values()].filter((m) => m.state === 'listening' || m.state === 'draining');
    const answers = await Promise.all(
      asked.map(async (member) => {
        member.lastMetrics = (await this.askMetrics(member)) ?? member.lastMetrics;
        return member.lastMetrics;
      }),
    );
    return [...answers.filter((json): json is MetricsJson => json !== null), ...this.retired];
  }

  /** A dead worker's counters and histograms stay in the sums; its gauges go with it. */
  private retire(member: Member): void {
    if (member.lastMetrics === null) return;
    this.retired.push(member.lastMetrics.filter((metric) => ['counter', 'histogram'].includes(String(metric.type))));
    member.lastMetrics = null;
    // Bounded however often workers die: folded into one set now and then.
    if (this.retired.length > 8) {
      const folded = this.retired;
      this.retired = [];
      void AggregatorRegistry.aggregate(folded).getMetricsAsJSON().then((json) => this.retired.push(json as MetricsJson));
    }
  }

  /** /readyz: ready while at least one worker listens; the detail lists each. */
  readiness(): { ok: boolean; detail: Record<string, unknown> } {
    const workers = [...this.members.values()]
      .sort((a, b) => a.slot - b.slot)
      .map((m) => ({ slot: m.slot, pid: m.worker.process.pid ?? null, state: m.state, policy_version: m.policyVersion, records: m.records }));
    return { ok: workers.some((w) => w.state === 'listening'), detail: { workers, worker_restarts: this.restarts, scheduling: this.scheduling } };
  }

  /**
   * SIGTERM: every worker stops accepting and drains for up to drainMs, sends its last
   * completions and exits. One still there past the grace is killed; its open records are then
   * completed by the shutdown like any other (RecordEnd.shutdown).
   */
  async drain(drainMs: number): Promise<void> {
    this.draining = true;
    clearInterval(this.writableTimer);
    const exits = [...this.members.values()].map((member) => this.exited(member));
    for (const member of this.members.values()) {
      member.state = 'draining';
      this.send(member, { t: 'drain' });
    }
    const timer = setTimeout(() => this.stopAll(), drainMs + EXIT_GRACE_MS);
    await Promise.all(exits);
    clearTimeout(timer);
    await this.settleAll();
  }

  private fork(slot: number, start?: { listening: (at: AddressInfo) => void; failed: (why: string) => void }): void {
    const worker = cluster.fork({
      TOLLGATE_CLUSTER_ENTRY: JSON.stringify(workerModule(path.join(__dirname, 'worker-main'))),
      // A worker relays untrusted traffic and has no use for these: not in its environment.
      TOLLGATE_ADMIN_TOKEN: undefined,
      TOLLGATE_AUDIT_URL: undefined,
      TOLLGATE_AUDIT_URL_FILE: undefined,
    });
    const channel = worker.process.stdio[AUDIT_CHANNEL_FD];
    if (!(channel instanceof net.Socket)) throw new Error('a worker was forked without its audit channel');
    // Its spool's own name: a replacement, or a reused pid, never writes into a dead process's files.
    const spoolName = newSpoolName(slot);
    const spoolDir = this.opts.target.numbered?.spool;
    const spool = spoolDir === undefined ? null : { dir: spoolDir, name: spoolName };
    const member: Member = { slot, worker, channel, startedAt: Date.now(), state: 'starting', policyVersion: null, records: 0, open: new Set(), committing: new Set(), settled: false, endedBySettle: new Set(), lastMetrics: null, lending: new Map(), initSent: false, gone: () => member.state === 'exited' };
    this.members.set(slot, member);
    const { config } = this.opts;
    worker.on('online', () => {
      // Its slot's shares as the ledger has them now; every move after this is told to it.
      member.initSent = true;
      this.send(member, { t: 'init', slot, config: toPortable(config), admin: this.opts.admin, shares: this.lending.ledger.sharesOf(slot), writable: this.opts.target.writable(), spool, policy: this.opts.policy() });
    });
    worker.on('message', (message: unknown) => {
      if (!isWorkerMessage(message)) return;
      if (message.t === 'listening') {
        member.state = this.draining ? 'draining' : 'listening';
        // What was said while it started may have come before it could act on it.
        if (this.draining) this.send(member, { t: 'drain' });
        else if (member.policyVersion !== this.opts.policy().provenance.version) this.send(member, { t: 'reload', policy: this.opts.policy() });
        start?.listening({ port: message.port, address: message.address, family: message.family });
      } else if (message.t === 'failed') {
        this.opts.log.error({ worker: slot, err: message.message }, 'worker could not start');
        start?.failed(message.message);
      } else this.received(member, message);
    });
    this.batches.attach(member, () => worker.process.kill('SIGKILL'), spoolName);
    // The IPC channel's errors (a worker gone mid-send) are the exit's to handle.
    worker.on('error', (err) => this.opts.log.warn({ worker: slot, err }, 'worker channel error'));
    worker.on('exit', (code, signal) => {
      const wasListening = member.state === 'listening';
      member.state = 'exited';
      this.lending.gone(member);
      this.afterExit(member, code, signal, wasListening, start).catch((err: unknown) => {
        this.opts.log.error({ worker: slot, err }, 'handling a worker\'s exit failed');
      });
    });
  }

  private received(member: Member, message: WorkerMessage): void {
    if (message.t === 'policy') {
      member.policyVersion = message.version;
    } else if (message.t === 'metrics') {
      this.metricsWaiting.get(message.seq)?.(message.metrics);
    } else if (message.t === 'borrow' || message.t === 'return') {
      this.lending.received(member, message);
    } else if (message.t === 'lent') {
      this.lending.lent(member, message.id, message.moved);
    }
  }

  /**
   * A worker is gone. Its acknowledged records are in the log; those it left open are completed
   * now (error worker_exited) once its last batches are in, and another process takes its slot.
   */
  private async afterExit(
    member: Member,
    code: number | null,
    signal: string | null,
    wasListening: boolean,
    start: { failed: (why: string) => void } | undefined,
  ): Promise<void> {
    await this.settle(member);
    if (this.draining) return;
    const ran = Date.now() - member.startedAt;
    this.opts.log.error({ worker: member.slot, pid: member.worker.process.pid, code, signal, ran_ms: ran }, 'worker exited; another takes its place');
    if (!wasListening && start !== undefined) {
      start.failed(`worker ${member.slot} exited before listening (code ${code}, signal ${signal})`);
      return;
    }
    this.restarts += 1;
    this.opts.onRestart?.();
    const quick = ran < QUICK_EXIT_MS ? (this.quickExits.get(member.slot) ?? 0) + 1 : 0;
    this.quickExits.set(member.slot, quick);
    const delay = quick === 0 ? 0 : Math.min(RESPAWN_MAX_DELAY_MS, 500 * 2 ** quick);
    setTimeout(() => {
      if (!this.draining && this.members.get(member.slot) === member) this.fork(member.slot);
    }, delay).unref();
  }

  /** Its batches settled and what it left open completed; its counters kept for /metrics. */
  private async settle(member: Member): Promise<void> {
    await this.batches.settle(member);
    this.retire(member);
  }

  private async settleAll(): Promise<void> {
    await Promise.all([...this.members.values()].map((member) => this.settle(member)));
  }

  private exited(member: Member): Promise<void> {
    if (member.worker.isDead()) return Promise.resolve();
    return new Promise((resolve) => member.worker.once('exit', () => resolve()));
  }

  private askMetrics(member: Member): Promise<MetricsJson | null> {
    const seq = ++this.metricsSeq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(null), METRICS_WAIT_MS);
      const done = (json: MetricsJson | null): void => {
        clearTimeout(timer);
        this.metricsWaiting.delete(seq);
        resolve(json);
      };
      this.metricsWaiting.set(seq, done);
      if (!this.send(member, { t: 'metrics', seq })) done(null);
    });
  }

  private tellWritable(): void {
    const writable = this.opts.target.writable();
    if (writable === this.lastWritable) return;
    this.lastWritable = writable;
    this.broadcast({ t: 'writable', writable });
  }

  private broadcast(message: PrimaryMessage): void {
    for (const member of this.members.values()) if (member.state !== 'exited') this.send(member, message);
  }

  /**
   * False when the worker cannot be told (gone, or its channel closed). worker.send's own false
   * means a backlog, and the message is still queued.
   */
  private send(member: Member, message: PrimaryMessage): boolean {
    if (!member.worker.isConnected()) return false;
    try {
      member.worker.send(message, (err: Error | null) => {
        if (err !== null) this.opts.log.debug({ worker: member.slot, err }, 'message to a worker not delivered');
      });
      return true;
    } catch {
      return false;
    }
  }

  /** Kills every worker (a failed start, or a drain past its grace); none is replaced after this. */
  private stopAll(): void {
    this.draining = true;
    for (const member of this.members.values()) if (!member.worker.isDead()) member.worker.process.kill('SIGKILL');
  }
}
