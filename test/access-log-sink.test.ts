import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { startWorker } from '../src/audit/start-worker';

/**
 * The access log on stdout when stdout is a non-blocking pipe whose reader stalls (EAGAIN) for
 * longer than the 5 s the sink once gave up after, shared with another writer as pino shares it:
 * every line arrives once, whole, in order, and no line of either writer is cut by the other's.
 */

function writer(fd: number, kind: 'access' | 'pino', lines: number, batch: number): { worker: Worker; done: Promise<void> } {
  const data = { entry: path.join(__dirname, 'helpers', 'pipe-writer.ts'), typescript: require.resolve('typescript'), fd, writer: kind, lines, batch };
  const worker = startWorker(data);
  const done = new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
    worker.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${kind} writer exited with ${code}`))));
  });
  return { worker, done };
}

describe('the access log on a stalled stdout pipe', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-sink-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a reader that stalls 6 s: all lines arrive once and whole, never mixed with pino\'s', async () => {
    const fifo = path.join(dir, 'stdout');
    execFileSync('mkfifo', [fifo]);
    // O_RDWR opens a FIFO without waiting for the other end; O_NONBLOCK as a pipe to a slow
    // reader (a container runtime's log driver) gives EAGAIN once its 64 KiB buffer is full.
    const out = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    const input = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const access = writer(out, 'access', 400, 40);
    const pino = writer(out, 'pino', 400, 1);
    const failed: unknown[] = [];
    void access.done.catch((err) => failed.push(err));
    void pino.done.catch((err) => failed.push(err));
    try {
      await new Promise((resolve) => setTimeout(resolve, 6000));
      let text = '';
      const chunk = Buffer.alloc(65536);
      let finished = false;
      void Promise.allSettled([access.done, pino.done]).then(() => (finished = true));
      for (let idle = 0; idle < 50;) {
        let read = 0;
        try {
          read = fs.readSync(input, chunk, 0, chunk.length, null);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        }
        if (read > 0) {
          text += chunk.subarray(0, read).toString('utf8');
          idle = 0;
        } else {
          if (finished) idle += 1;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
      expect(failed).toEqual([]);
      const seen: Record<string, number[]> = { access: [], pino: [] };
      const lines = text.split('\n');
      expect(lines.pop()).toBe('');
      for (const line of lines) {
        const value = JSON.parse(line) as { msg: 'access' | 'pino'; n: number };
        seen[value.msg].push(value.n);
      }
      const all = Array.from({ length: 400 }, (_, i) => i);
      expect(seen.access).toEqual(all);
      expect(seen.pino).toEqual(all);
    } finally {
      await access.worker.terminate();
      await pino.worker.terminate();
      fs.closeSync(out);
      fs.closeSync(input);
    }
  });
});
