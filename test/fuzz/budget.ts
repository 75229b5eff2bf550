import type fc from 'fast-check';

/**
 * How long a fuzz property runs. Under `npm test` a short budget; `npm run fuzz` sets
 * FUZZ_SECONDS (and optionally FUZZ_RUNS) for a long one. FUZZ_SEED (+ FUZZ_PATH) replays the
 * counterexample fast-check printed on a failure.
 */
export interface FuzzBudget {
  params: fc.Parameters<unknown>;
  /** The jest timeout for the test running the property: the budget plus room to shut down. */
  jestTimeoutMs: number;
  /** True when run by `npm run fuzz` (prints throughput). */
  long: boolean;
}

function envNumber(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(text)}`);
  return value;
}

export function fuzzBudget(short: { numRuns: number; seconds: number }): FuzzBudget {
  const seconds = envNumber('FUZZ_SECONDS');
  const runs = envNumber('FUZZ_RUNS');
  const long = seconds !== undefined || runs !== undefined;
  const limitSeconds = seconds ?? short.seconds;
  const seed = envNumber('FUZZ_SEED');
  const params: fc.Parameters<unknown> = {
    numRuns: runs ?? (long ? 1_000_000_000 : short.numRuns),
    // Bounds the runs and the shrinking of a counterexample alike; an interrupted run that
    // found nothing passes (markInterruptAsFailure stays false).
    interruptAfterTimeLimit: limitSeconds * 1000,
    ...(seed !== undefined ? { seed, path: process.env.FUZZ_PATH } : {}),
  };
  return { params, jestTimeoutMs: limitSeconds * 1000 + 30_000, long };
}

/** One line of throughput for `npm run fuzz`. */
export function reportThroughput(name: string, runs: number, startedAt: number): void {
  const seconds = (Date.now() - startedAt) / 1000;
  process.stdout.write(`fuzz ${name}: ${runs} runs in ${seconds.toFixed(1)} s = ${(runs / seconds).toFixed(1)} runs/s\n`);
}
