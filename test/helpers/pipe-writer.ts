import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { StdoutSink } from '../../src/audit/access-log/access-sink';

/**
 * A worker thread for test/access-log-sink.test.ts: writes numbered JSON lines to a pipe, either
 * through the access log's StdoutSink in batches, or one line per write as pino does (EAGAIN
 * waited out), so that the two share the pipe as they share serve's stdout.
 */
const data = workerData as { fd: number; writer: 'access' | 'pino'; lines: number; batch: number };

function line(n: number): string {
  const pad = 'x'.repeat(data.writer === 'access' ? 200 + ((n * 937) % 3500) : 150);
  return `${JSON.stringify({ msg: data.writer, n, pad })}\n`;
}

function pinoWrite(text: string): void {
  const bytes = Buffer.from(text);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      if (fs.writeSync(data.fd, bytes) !== bytes.length) throw new Error('a line under 4 KiB was split');
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 5);
    }
  }
}

const sink = new StdoutSink(data.fd);
for (let n = 0; n < data.lines; n += data.batch) {
  let text = '';
  for (let i = n; i < Math.min(data.lines, n + data.batch); i += 1) text += line(i);
  if (data.writer === 'access') sink.write(text);
  else pinoWrite(text);
}
parentPort?.postMessage('done');
