import { readdirSync, readFileSync } from 'node:fs';

/** The process's file-descriptor budget as read at start. */
export interface DescriptorLimit {
  /** The soft RLIMIT_NOFILE: past it accept() and open() fail with EMFILE. */
  readonly soft: number;
  /** Descriptors already open when it was read (Node's own: stdio, epoll, signal pipes, ...). */
  readonly inUse: number;
  /** False when the limit could not be read and FALLBACK_DESCRIPTOR_LIMIT stands in for it. */
  readonly known: boolean;
}

/** What a system that cannot tell is assumed to allow: the usual soft default of Linux and macOS. */
export const FALLBACK_DESCRIPTOR_LIMIT = 1024;

/**
 * Kept out of the client connections' share: the audit writer and checkpoint threads (their event
 * loops and the SQLite database, -wal and -shm files; 16 descriptors from start to listening,
 * measured), the admin listener and its clients, DNS lookups, policy and users file reloads, and
 * up to REFUSALS_IN_FLIGHT refused connections waiting for their record.
 */
export const RESERVED_DESCRIPTORS = 96;

/** Each proxied connection may hold two: the client's socket and the destination's. */
export const DESCRIPTORS_PER_CONNECTION = 2;

/** The default cap never goes below this, however low the limit. */
const MIN_CLIENT_CONNECTIONS = 16;

/** `--max-client-connections auto`: what fits below the limit with the reserve kept. */
export function derivedClientConnections(limit: DescriptorLimit): number {
  const share = Math.floor((limit.soft - limit.inUse - RESERVED_DESCRIPTORS) / DESCRIPTORS_PER_CONNECTION);
  return Math.max(MIN_CLIENT_CONNECTIONS, share);
}

/** Descriptors a cap of `connections` may need at most, start and reserve included. */
export function descriptorsNeeded(limit: DescriptorLimit, connections: number): number {
  return limit.inUse + RESERVED_DESCRIPTORS + connections * DESCRIPTORS_PER_CONNECTION;
}

/**
 * Node has no getrlimit(): on Linux /proc says. "unlimited" is capped at what a count option
 * accepts anyway; anywhere /proc is missing the usual default is assumed.
 */
export function readDescriptorLimit(): DescriptorLimit {
  try {
    const limits = readFileSync('/proc/self/limits', 'latin1');
    const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1];
    if (soft === undefined) throw new Error('no "Max open files" line');
    return {
      soft: soft === 'unlimited' ? UNLIMITED : Number(soft),
      // The listing's own directory descriptor is counted too: one spare.
      inUse: readdirSync('/proc/self/fd').length,
      known: true,
    };
  } catch {
    return { soft: FALLBACK_DESCRIPTOR_LIMIT, inUse: FALLBACK_IN_USE, known: false };
  }
}

const UNLIMITED = 9_999_999;

/** Node 20 on Linux starts with about 20 open; rounded up where it cannot be counted. */
const FALLBACK_IN_USE = 32;
