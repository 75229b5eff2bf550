import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
import type { ActivePolicy } from './active-policy';
import { compileGuard } from './guard';
import type { SelfAddress } from './guard';
import { compileSources, formatProblem, loadPolicy } from './load';
import type { LoadResult, Policy } from './load';
import type { PolicyProvenance, PolicySource } from './provenance';

/** Editors write a file in several steps; wait for them to settle before loading. */
const RELOAD_DEBOUNCE_MS = 250;

export interface ReloadResult {
  readonly ok: boolean;
  readonly at: string;
  readonly version: string;
  readonly problems: string[];
}

/** Compiles both guards of a policy; `self` are tollgate's own listeners. */
export function activatePolicy(policy: Policy, self: SelfAddress[]): ActivePolicy {
  return {
    policy,
    guard: compileGuard(policy.network, self),
    parentGuard: compileGuard(policy.network, self, undefined, 'parent'),
  };
}

/**
 * Holds the policy in force and swaps it whole: a load is all or nothing, and an invalid
 * edit keeps the last good policy (SPEC §2). Requests read `active` once, at their start.
 */
export class PolicyHolder {
  private current: ActivePolicy;
  private last: ReloadResult;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly loadedListeners: Array<(policy: Policy) => void> = [];

  constructor(
    readonly dir: string,
    initial: Policy,
    private readonly self: () => SelfAddress[],
    private readonly log: Logger,
    /** Told of every reload's outcome (metrics). */
    private readonly onReload: (ok: boolean) => void = () => undefined,
    /** The files `initial` was compiled from (loadPolicy's `sources`), for sources(). */
    private currentSources: readonly PolicySource[] = [],
  ) {
    this.current = activatePolicy(initial, self());
    this.last = { ok: true, at: new Date().toISOString(), version: initial.version, problems: [] };
  }

  readonly active = (): ActivePolicy => this.current;

  get lastReload(): ReloadResult {
    return this.last;
  }

  /** Called with each policy a reload puts in force, after the swap (not for a failed reload). */
  onLoaded(listener: (policy: Policy) => void): void {
    this.loadedListeners.push(listener);
  }

  /** Recompile the guard, e.g. once the real listening ports are known. */
  refreshGuard(): void {
    this.current = activatePolicy(this.current.policy, this.self());
  }

  /** The policy in force as its files and version: what `serve --workers` sends its workers. */
  sources(): { sources: readonly PolicySource[]; provenance: PolicyProvenance } {
    const { version, contentHash } = this.current.policy;
    return { sources: this.currentSources, provenance: { version, contentHash } };
  }

  /** Reload from the folder (a change, SIGHUP). */
  reload(): ReloadResult {
    return this.apply(loadPolicy(this.dir));
  }

  /** Put in force a policy compiled from another process's files (a `serve --workers` worker). */
  adopt(sources: PolicySource[], provenance: PolicyProvenance): ReloadResult {
    return this.apply(compileSources(sources, provenance));
  }

  private apply(result: LoadResult): ReloadResult {
    const at = new Date().toISOString();
    if (!result.ok) {
      const problems = result.problems.map(formatProblem);
      this.last = { ok: false, at, version: this.current.policy.version, problems };
      this.log.error({ problems, kept_version: this.current.policy.version }, 'policy reload failed; keeping the last good policy');
      this.onReload(false);
      return this.last;
    }
    const { policy } = result;
    this.current = activatePolicy(policy, this.self());
    this.currentSources = result.sources;
    this.last = { ok: true, at, version: policy.version, problems: [] };
    this.log.info({ policy_version: policy.version, content_hash: policy.contentHash, files: policy.files }, 'policy loaded');
    if (result.warnings.length > 0) this.log.warn({ warnings: result.warnings.map(formatProblem) }, 'policy warnings (see tollgate policy check)');
    for (const listener of this.loadedListeners) listener(policy);
    this.onReload(true);
    return this.last;
  }

  /** Reload when a file in the folder changes (debounced). */
  watch(): void {
    this.watcher = watch(this.dir, () => this.scheduleReload());
    this.watcher.on('error', (err) => this.log.warn({ err }, 'policy folder watch failed'));
  }

  private scheduleReload(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reload();
    }, RELOAD_DEBOUNCE_MS);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.watcher?.close();
  }
}
