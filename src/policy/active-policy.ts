import type { Guard } from './guard';
import type { Policy } from './load';

/** The policy and the guards compiled from it, swapped together on reload. */
export interface ActivePolicy {
  readonly policy: Policy;
  /** Checks the destinations clients ask for. */
  readonly guard: Guard;
  /** Checks tollgate's own connections to parent proxies (also exempts `parent_ranges`). */
  readonly parentGuard: Guard;
}
