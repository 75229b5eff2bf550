import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { WorkerOptions } from 'node:worker_threads';

/** Where a worker thread's module is, for worker-entry.js. */
export interface WorkerModule {
  /** The module's file: .js from dist/, .ts under ts-jest. */
  entry: string;
  /** TypeScript's path when `entry` is a .ts file (worker-entry.js compiles it), else null. */
  typescript: string | null;
}

/** The bootstrap file, beside this one in src/ and in dist/ (tsconfig.build.json: allowJs). */
const WORKER_ENTRY = path.join(__dirname, 'worker-entry.js');

/**
 * `name` (a module path without its extension) as this file was loaded: compiled JavaScript
 * from dist/, or TypeScript under ts-jest.
 */
export function workerModule(name: string): WorkerModule {
  const extension = path.extname(__filename);
  return { entry: `${name}${extension}`, typescript: extension === '.ts' ? require.resolve('typescript') : null };
}

/** Starts a worker thread on `data.entry` through worker-entry.js. */
export function startWorker(data: WorkerModule, options: Omit<WorkerOptions, 'eval' | 'workerData'> = {}): Worker {
  return new Worker(WORKER_ENTRY, { ...options, workerData: data });
}
