import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';

/** The CLI (`node CLI args…`) run to its end, timed as a whole; a non-zero exit throws. */
export function timeCli(cli: string, args: string[]): { ms: number; stdout: string } {
  const started = performance.now();
  const run = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const ms = performance.now() - started;
  if (run.status !== 0) throw new Error(`${args.slice(0, 2).join(' ')} exited ${run.status}: ${run.stderr}`);
  return { ms, stdout: run.stdout };
}

export const medianOf = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
export const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
