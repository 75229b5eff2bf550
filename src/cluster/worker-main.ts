import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { GroupCommit } from '../audit/group-commit';
import { AUTH_LIMITS } from '../auth/authenticator';
import { createLogger } from '../log';
import type { Logger } from '../log';
import { createMetrics } from '../metrics';
import { compileSources, formatProblem } from '../policy/load';
import type { SelfAddress } from '../policy/guard';
import { PolicyHolder } from '../policy/watch';
import { drainProxy } from '../proxy/drain';
import { createProxyServer } from '../proxy/server';
import { openUsers } from '../serve';
import { listen, proxyContext } from '../serve-front';
import { openInspection } from '../serve-inspect';
import { PrimaryAudit } from './primary-audit';
import { evenShare, WorkerShares } from './tunnel-lending';
import { boxLimits } from './limits';
import type { ProxyContext } from '../proxy/context';
import { fromPortable, isPrimaryMessage } from './protocol';
import { AUDIT_CHANNEL_FD, decodePrimaryFrame, FrameReader, WireError } from './wire';
import { SpoolAudit } from './spool-audit';
import { SpoolWriter } from './spool';
import type { PrimaryMessage, WorkerInit, WorkerMessage } from './protocol';

/**
 * A proxy worker process of `serve --workers N` (pool.ts forks it through cluster-entry.js). It
 * runs the proxy alone: its audit records go to the primary (primary-audit.ts), its policy is
 * reloaded when the primary says so, its metrics are summed by the primary's /metrics.
 */
/**
 * False only when the primary cannot be told (the channel is closed). process.send's own false
 * means a backlog, and the message is still queued: under load that is not a failure.
 */
function send(message: WorkerMessage): boolean {
  if (process.send === undefined || !process.connected) return false;
  try {
    // With a callback a failed send is reported there, not as an 'error' event that would crash us.
    process.send(message, undefined, undefined, () => undefined);
    return true;
  } catch {
    return false;
  }
}

/**
 * The audit channel to the primary (wire.ts): the socket pool.ts set up as this process's fd 4.
 * With a spool folder the worker gives its records ids and spools them (spool-audit.ts);
 * without, it waits for the primary's ids (primary-audit.ts). Its end fails every batch closed
 * (503); the IPC channel's end then drains the worker.
 */
function openAuditChannel(init: WorkerInit, log: Logger): PrimaryAudit | SpoolAudit {
  const socket = new net.Socket({ fd: AUDIT_CHANNEL_FD, readable: true, writable: true });
  const sendFrame = (frame: Buffer): boolean => {
    if (socket.destroyed || !socket.writable) return false;
    socket.write(frame);
    return true;
  };
  const { spool } = init;
  const target = spool === null ? new PrimaryAudit(sendFrame, init.writable) : new SpoolAudit(sendFrame, new SpoolWriter(spool.dir, spool.name), init.writable);
  const frames = new FrameReader((frame) => {
    const decoded = decodePrimaryFrame(frame);
    if (decoded.kind === 'answer' && target instanceof PrimaryAudit) target.answered(decoded.answer);
    else if (decoded.kind === 'block' && target instanceof SpoolAudit) target.block(decoded.block);
    else if (decoded.kind === 'sync' && target instanceof SpoolAudit) target.sync(decoded.token);
    else throw new WireError(`a ${decoded.kind} frame in the other audit mode`);
  });
  socket.on('data', (chunk: Buffer) => {
    try {
      frames.push(chunk);
    } catch (err) {
      // Both ends are this release: a bug. The primary replaces this process and completes what
      // it left open (error worker_exited), as for any worker that dies.
      log.fatal({ err }, 'audit channel: a frame from the primary does not parse; exiting');
      process.exit(1);
    }
  });
  socket.on('error', (err) => log.warn({ err }, 'audit channel error'));
  // The primary gone closes the IPC channel too, which drains this worker; a channel closed on
  // its own leaves a worker that can record nothing, so it exits and the primary replaces it.
  socket.on('close', () => {
    target.disconnected();
    if (process.connected) {
      log.error('audit channel closed while the primary is still there; exiting');
      process.exit(1);
    }
  });
  return target;
}

async function run(init: WorkerInit, log: Logger): Promise<(message: PrimaryMessage) => void> {
  const config = fromPortable(init.config);
  // The primary's policy, compiled here: never the folder, which may have changed since.
  const loaded = compileSources(init.policy.sources, init.policy.provenance);
  if (!loaded.ok) throw new Error(`the primary's policy does not compile here: ${loaded.problems.map(formatProblem).join('; ')}`);
  // Each worker allows its share of the box's failed logins per window (at least one), so a
  // guesser spread over the workers gets the box's limit at most; one whose connections all reach
  // one worker is held to that worker's share (docs/operations.md, "Using every core").
  const users = openUsers(config, log, undefined, Math.max(1, Math.ceil(AUTH_LIMITS.failuresPerWindow / config.workers)));
  const metrics = createMetrics();
  // The CA from its folder, as the primary checked it at start: its key never crosses the channel.
  const inspect = await openInspection(config, log, metrics, 'proxy');
  const primary = openAuditChannel(init, log);
  const audit = new GroupCommit(primary, (seconds) => metrics.auditWrite(seconds));
  const self: SelfAddress[] = [];
  // Reloads are counted once, by the primary's own holder (its metric is the box's).
  const holder = new PolicyHolder(config.policiesDir, loaded.policy, () => self, log, undefined, loaded.sources);
  // Its shares of the tunnel limits, lent and borrowed through the primary (tunnel-lending.ts),
  // counted from the proxy's own registry once the context exists.
  const counts = {
    overall: (): number => ctx.tunnels.size,
    from: (source: string): number => ctx.tunnels.countFrom(source),
    clients: (): number => ctx.gauges.clientSockets,
  };
  const shares = new WorkerShares(boxLimits(config), config.workers, init.slot, init.shares, counts, send);
  const ctx: ProxyContext = { ...proxyContext(config, holder, audit, log, metrics, users?.authenticator ?? null, inspect), tunnelShares: shares };
  ctx.tunnels.onSourceIdle((source) => shares.sourceIdle(source));
  shares.releaseIdle();
  holder.onLoaded((policy) => ctx.parentAgents.retainFor(policy));
  metrics.setOpenTunnels(() => ctx.tunnels.size);
  // The box's /metrics sums every worker's: each reports its even part of an explicit cap.
  metrics.setClientConnections(() => ctx.gauges.clientSockets, config.maxClientConnectionsAuto ? config.maxClientConnections : evenShare(config.maxClientConnections, config.workers, init.slot));
  const server = createProxyServer(ctx);
  let address: AddressInfo;
  try {
    address = await listen(server, config.listen);
  } catch (err) {
    throw new Error(`cannot listen: ${err instanceof Error ? err.message : String(err)}`);
  }
  self.push({ host: address.address, port: address.port }, { host: init.admin.host, port: init.admin.port });
  holder.refreshGuard();

  let draining: Promise<void> | null = null;
  const drain = (why: string, drainMs = config.drainTimeoutMs): Promise<void> => {
    draining ??= (async () => {
      log.info({ open_tunnels: ctx.tunnels.size, why }, 'worker draining');
      await drainProxy(server, ctx, drainMs);
      await ctx.upstreamPool.destroy();
      ctx.parentAgents.destroyAll();
      // The last completions reach the primary (and its log) before this process goes.
      await audit.drain();
      if (primary instanceof SpoolAudit) primary.sendSpooled();
      process.exit(0);
    })().catch((err: unknown) => {
      log.error({ err }, 'worker drain failed');
      process.exit(1);
    });
    return draining;
  };
  const handle = (message: PrimaryMessage): void => {
    if (message.t === 'writable') primary.setWritable(message.writable);
    else if (message.t === 'reload') {
      const result = holder.adopt(message.policy.sources, message.policy.provenance);
      users?.holder.reload();
      send({ t: 'policy', version: holder.active().policy.version, ok: result.ok });
    } else if (message.t === 'metrics') {
      void metrics.registry.getMetricsAsJSON().then((json) => send({ t: 'metrics', seq: message.seq, metrics: json }));
    } else if (message.t === 'drain') void drain('the primary is stopping');
    else if (message.t === 'lend') send({ t: 'lent', id: message.id, moved: shares.lend(message.want) });
    else if (message.t === 'granted') shares.granted(message.id, message.moved, message.source);
  };
  // Without the primary nothing can be recorded, so nothing more is relayed: every connection is
  // closed now (their records stay open in the log; the next start completes them, SPEC §4).
  process.on('disconnect', () => {
    primary.disconnected();
    shares.disconnected();
    void drain('the primary is gone', 0);
  });
  // Signals to the whole process group (Ctrl-C, a service manager's stop) drain as the primary
  // does; a reload comes from the primary, and SIGUSR1 must not start Node's inspector.
  process.once('SIGTERM', () => void drain('SIGTERM'));
  process.once('SIGINT', () => void drain('SIGINT'));
  process.on('SIGHUP', () => undefined);
  process.on('SIGUSR1', () => undefined);
  send({ t: 'policy', version: holder.active().policy.version, ok: true });
  send({ t: 'listening', port: address.port, address: address.address, family: address.family });
  return handle;
}

/**
 * One listener from the first moment: messages that come while the worker starts (a reload, a
 * drain) wait for it to be ready instead of being lost. The primary says again on `listening`
 * what it must not have missed (pool.ts), so the queue only bridges the start.
 */
function main(): void {
  const base = createLogger();
  let handler: ((message: PrimaryMessage) => void) | null = null;
  let started = false;
  const early: PrimaryMessage[] = [];
  process.on('message', (message: unknown) => {
    if (!isPrimaryMessage(message)) return;
    if (handler !== null) return handler(message);
    if (message.t !== 'init') return void early.push(message);
    if (started) return;
    started = true;
    const log = base.child({ worker: message.slot });
    run(message, log).then(
      (ready) => {
        handler = ready;
        for (const waiting of early.splice(0)) ready(waiting);
      },
      (err: unknown) => {
        const why = err instanceof Error ? err.message : String(err);
        log.fatal({ err: why }, 'worker could not start');
        send({ t: 'failed', message: why });
        // A moment for the message to leave before the channel closes with the process.
        setTimeout(() => process.exit(1), 100);
      },
    );
  });
}

main();
