/**
 * The figures of bench/compare.ts: one value per metric, target and repetition, reported as
 * medians. A cell that could not be measured carries why instead.
 */

export const TARGETS = ['direct', 'tollgate', 'squid', 'tinyproxy'] as const;
export type TargetName = (typeof TARGETS)[number];

export const METRIC_KEYS = [
  'httpRate', 'httpCpu', 'connectRate', 'connectCpu', 'bulkRate', 'bulkCpu', 'idleKiB', 'latencyP50', 'latencyP99', 'latencyAddedP99',
] as const;
export type MetricKey = (typeof METRIC_KEYS)[number];

export interface Metric {
  key: MetricKey;
  label: string;
  unit: string;
  digits: number;
  /** Has a figure for `direct` (no proxy), so ratios to it make sense. */
  direct: boolean;
  /** Shown in the ratio table (a ratio of added latencies or CPU costs says little). */
  ratio: boolean;
}

export interface Cell {
  values: number[];
  /** Failed requests/exchanges over all repetitions (the value counts only successes). */
  errors: number;
  firstError: string | null;
  /** Why there is no value: not installed, not selected, or the load failed. */
  missing: string | null;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export class CompareResults {
  private readonly cells = new Map<string, Cell>();

  cell(metric: MetricKey, target: TargetName): Cell {
    const key = `${metric}/${target}`;
    let found = this.cells.get(key);
    if (!found) {
      found = { values: [], errors: 0, firstError: null, missing: null };
      this.cells.set(key, found);
    }
    return found;
  }

  add(metric: MetricKey, target: TargetName, value: number, errors = 0, firstError: string | null = null): void {
    const cell = this.cell(metric, target);
    cell.values.push(value);
    cell.errors += errors;
    cell.firstError ??= firstError;
  }

  /** No value this time, and why (kept only when no repetition produced a value either). */
  miss(metric: MetricKey, target: TargetName, why: string): void {
    const cell = this.cell(metric, target);
    cell.missing ??= why;
  }

  /** The median over repetitions, or null when there is none. */
  value(metric: MetricKey, target: TargetName): number | null {
    const { values } = this.cell(metric, target);
    return values.length === 0 ? null : median(values);
  }

  /** a ÷ b of the medians, or null. */
  ratio(metric: MetricKey, a: TargetName, b: TargetName): number | null {
    const top = this.value(metric, a);
    const bottom = this.value(metric, b);
    return top === null || bottom === null || bottom === 0 ? null : top / bottom;
  }
}
