/**
 * The figures of bench/compare.ts: one value per metric, target and repetition, reported as
 * medians. A cell that could not be measured carries why instead.
 */

export const TARGETS = ['direct', 'tollgate', 'squid', 'tinyproxy'] as const;
export type BaseTarget = (typeof TARGETS)[number];

/** tollgate is one column per worker count: `tollgate` (--workers 1), `tollgate×2`, ... */
export type TollgateColumn = 'tollgate' | `tollgate×${number}`;
/** A column of the tables: a target, with tollgate split by worker count. */
export type TargetName = Exclude<BaseTarget, 'tollgate'> | TollgateColumn;

export function tollgateColumn(workers: number): TollgateColumn {
  return workers === 1 ? 'tollgate' : `tollgate×${workers}`;
}

export function isTollgate(column: TargetName): column is TollgateColumn {
  return column === 'tollgate' || column.startsWith('tollgate×');
}

/** The worker count of a tollgate column. */
export function workersOf(column: TollgateColumn): number {
  return column === 'tollgate' ? 1 : Number(column.slice('tollgate×'.length));
}

/** The columns of `targets` in table order, tollgate once per worker count. */
export function columnsFor(targets: readonly BaseTarget[], workers: readonly number[]): TargetName[] {
  return targets.flatMap((target): TargetName[] => (target === 'tollgate' ? workers.map(tollgateColumn) : [target]));
}

/**
 * One timed load on one tollgate column, as its processes saw it: from /readyz (records each
 * worker opened or finished) and /proc (CPU of each worker pid, its threads included).
 */
export interface WorkerRun {
  column: TollgateColumn;
  load: 'http' | 'connect';
  repetition: number;
  /** Requests or tunnels the load generator completed. */
  operations: number;
  /** CPU seconds of the whole process tree: primary, workers and their threads. */
  treeCpu: number;
  /** One per worker slot; with --workers 1 the single process, whose records /readyz does not list. */
  workers: Array<{ slot: number; pid: number; records: number | null; cpu: number }>;
  /** Tree minus workers: the primary (audit writer, index, admin). Null with --workers 1 (one process). */
  primaryCpu: number | null;
}

export const METRIC_KEYS = [
  'httpRate', 'httpCpu', 'connectRate', 'connectCpu', 'bulkRate', 'bulkCpu', 'idleKiB', 'latencyP50', 'latencyP99', 'latencyAddedP99', 'latencyCpu',
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
  readonly workerRuns: WorkerRun[] = [];

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
