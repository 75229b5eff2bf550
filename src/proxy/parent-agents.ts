import { HttpProxyAgent } from 'http-proxy-agent';
import type { Policy } from '../policy/load';
import type { ParentProxy } from '../policy/types';
import { formatHostPort } from './dial';
import { formatAuthority } from '../request/target';

/** `user:password@` for a proxy URL, or nothing. */
function userinfo({ credentials }: ParentProxy): string {
  return credentials ? `${encodeURIComponent(credentials.user)}:${encodeURIComponent(credentials.password)}@` : '';
}

/** A parent as configured: where it is and who tollgate is to it. Never logged (credentials). */
function parentKey(parent: ParentProxy): string {
  return `http://${userinfo(parent)}${formatAuthority(parent)}`;
}

/** The parents a policy sends requests through: settings.upstream and every rule's `via`. */
function referencedKeys(policy: Policy): Set<string> {
  const parents = [policy.settings.upstream, ...policy.rules.map((rule) => rule.via)];
  return new Set(parents.filter((p): p is ParentProxy => p !== null && p !== undefined).map(parentKey));
}

interface PooledAgent {
  readonly parentKey: string;
  readonly agent: HttpProxyAgent<string>;
}

/**
 * Pooled agents for plain HTTP through parent proxies, one per parent (with its credentials)
 * and checked address. A reload retires the agents of parents the new policy no longer names,
 * so neither the agents nor their keep-alive connections outlive the policy that used them.
 */
export class ParentAgents {
  private readonly pool = new Map<string, PooledAgent>();

  get size(): number {
    return this.pool.size;
  }

  /**
   * http-proxy-agent sends absolute-URI requests to the parent with its credentials. It is
   * given the parent's checked address, never its name, so it cannot resolve somewhere else.
   */
  agentFor(parent: ParentProxy, address: string): HttpProxyAgent<string> {
    const url = `http://${userinfo(parent)}${formatHostPort(address, parent.port)}`;
    let pooled = this.pool.get(url);
    if (!pooled) {
      pooled = { parentKey: parentKey(parent), agent: new HttpProxyAgent(url, { keepAlive: true }) };
      this.pool.set(url, pooled);
    }
    return pooled.agent;
  }

  /**
   * After a reload: retire every agent whose parent `policy` no longer names. A request that
   * decided on the old policy and asks for an agent after this gets a fresh one, retired by the
   * next reload or at shutdown. Returns how many agents were retired.
   */
  retainFor(policy: Policy): number {
    const keep = referencedKeys(policy);
    let retired = 0;
    for (const [url, pooled] of this.pool) {
      if (keep.has(pooled.parentKey)) continue;
      this.pool.delete(url);
      retire(pooled.agent);
      retired += 1;
    }
    return retired;
  }

  /** Shutdown, after the drain: every connection to a parent is closed, in use or not. */
  destroyAll(): void {
    for (const { agent } of this.pool.values()) agent.destroy();
    this.pool.clear();
  }
}

/**
 * Close an agent's idle connections now and each busy one once its response is complete:
 * agent.destroy() would also cut requests still in flight. With maxFreeSockets 0, Node's agent
 * destroys a socket instead of pooling it when the socket is released.
 */
function retire(agent: HttpProxyAgent<string>): void {
  agent.maxFreeSockets = 0;
  for (const sockets of Object.values(agent.freeSockets)) {
    for (const socket of [...(sockets ?? [])]) socket.destroy();
  }
}
