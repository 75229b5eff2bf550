import type { ProxyErrorCode } from './errors-types';

export type { ProxyErrorCode } from './errors-types';

/**
 * The one error type of the proxy (after proxy-chain's RequestError), so that every failure is
 * answered and recorded the same way: thrown
 * anywhere on a request's path, turned into a response and audit fields in one place
 * (respond.ts). Statuses are standard ones only.
 */
export class ProxyError extends Error {
  constructor(
    readonly status: number,
    readonly code: ProxyErrorCode,
    readonly reason: string,
    /** For 429: seconds the client should wait (Retry-After). */
    readonly retryAfterSeconds?: number,
  ) {
    super(reason);
    this.name = 'ProxyError';
  }
}
