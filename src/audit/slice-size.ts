/** How a walk down the id space sizes its slices: what one should cost, and the bounds in ids. */
export interface SliceSizing {
  targetMs: number;
  min: number;
  max: number;
  /** Factor a cheap slice grows by (default 2). */
  grow?: number;
}

/**
 * The next slice's size from what this one cost: larger when it took under half the target,
 * half when it took over twice the target, else the same. Shared by the SQLite and PostgreSQL
 * walks, each with its own target and bounds.
 */
export function nextSliceSize(size: number, ms: number, sizing: SliceSizing): number {
  if (ms < sizing.targetMs / 2) return Math.min(sizing.max, size * (sizing.grow ?? 2));
  if (ms > sizing.targetMs * 2) return Math.max(sizing.min, Math.floor(size / 2));
  return size;
}
