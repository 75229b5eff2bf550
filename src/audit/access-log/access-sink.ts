import fs from 'node:fs';

/** Which file the access log was, and how long, when a position was stored (position file). */
export interface FileMark {
  dev: number;
  ino: number;
  size: number;
}

/** Where access lines go: a file (reopened on SIGUSR1) or the process's stdout. */
export interface AccessSink {
  /**
   * Opens the sink. `recorded` is the mark stored with the position: bytes of that same file past
   * it were written after the position was last stored (a crash in between), so they are cut off
   * and written again. Returns a sentence when something needs saying (a shorter file), else null.
   */
  open(recorded: FileMark | null): string | null;
  /** Writes whole lines, one write() when the kernel takes them at once. */
  write(text: string): void;
  /** fdatasync: the lines survive a power cut (--audit-fsync). */
  sync(): void;
  /** The file's identity and size now, to store with the position; null for stdout. */
  mark(): FileMark | null;
  /** logrotate renamed the file: open the path again (created if missing). */
  reopen(): void;
  close(): void;
}

/** How long stdout may refuse a write (EAGAIN: a non-blocking pipe that is full) before it throws. */
const STDOUT_BLOCKED_MS = 5000;

function writeAll(fd: number, bytes: Buffer, blockedMs: number): void {
  let at = 0;
  const deadline = performance.now() + blockedMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (at < bytes.length) {
    try {
      at += fs.writeSync(fd, bytes, at, bytes.length - at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || performance.now() > deadline) throw err;
      // This is the access log's own thread: a short block here holds up no request.
      Atomics.wait(pause, 0, 0, 10);
    }
  }
}

/**
 * The access log as a file, opened O_APPEND (the writes land at its end whatever else happened to
 * it, logrotate's copytruncate included). Lines are only ever cut at the start, never mid-run.
 */
export class FileSink implements AccessSink {
  private fd = -1;

  constructor(readonly file: string) {}

  open(recorded: FileMark | null): string | null {
    this.fd = fs.openSync(this.file, 'a+', 0o640);
    const stat = fs.fstatSync(this.fd);
    if (recorded !== null && recorded.dev === stat.dev && recorded.ino === stat.ino) {
      if (stat.size > recorded.size) fs.ftruncateSync(this.fd, recorded.size);
      if (stat.size >= recorded.size) return null;
      return `access log ${this.file} is shorter than when its position was stored (${stat.size} < ${recorded.size} bytes): lines lost outside tollgate (a power cut without --audit-fsync, or a truncation)`;
    }
    // Not the file the position was stored with (rotated while stopped, or no position yet): never
    // append after a line that a crash left half-written.
    this.cutTornLine(stat.size);
    return null;
  }

  write(text: string): void {
    writeAll(this.fd, Buffer.from(text, 'utf8'), 0);
  }

  sync(): void {
    fs.fdatasyncSync(this.fd);
  }

  mark(): FileMark {
    const stat = fs.fstatSync(this.fd);
    return { dev: stat.dev, ino: stat.ino, size: stat.size };
  }

  reopen(): void {
    const fresh = fs.openSync(this.file, 'a+', 0o640);
    this.close();
    this.fd = fresh;
    this.cutTornLine(fs.fstatSync(fresh).size);
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** Cuts the file back to the end of its last whole line. */
  private cutTornLine(size: number): void {
    const chunk = Buffer.alloc(64 * 1024);
    for (let end = size; end > 0;) {
      const start = Math.max(0, end - chunk.length);
      const read = fs.readSync(this.fd, chunk, 0, end - start, start);
      const newline = chunk.subarray(0, read).lastIndexOf(0x0a);
      if (newline >= 0) {
        if (start + newline + 1 < size) fs.ftruncateSync(this.fd, start + newline + 1);
        return;
      }
      end = start;
    }
    if (size > 0) fs.ftruncateSync(this.fd, 0);
  }
}

/**
 * The process's stdout (fd 1), written from the access log's thread directly: the proxy's thread
 * never carries a line. serve's own log lines (pino) share it; every access line has
 * `"msg":"access"` to tell them apart. Nothing can be cut off here: a restart resumes after the
 * stored position, and lines of a batch in flight at a crash can be written twice.
 */
export class StdoutSink implements AccessSink {
  open(): null {
    return null;
  }

  write(text: string): void {
    writeAll(1, Buffer.from(text, 'utf8'), STDOUT_BLOCKED_MS);
  }

  sync(): void {
    // A pipe or terminal: nothing to sync.
  }

  mark(): null {
    return null;
  }

  reopen(): void {
    // Nothing to reopen.
  }

  close(): void {
    // fd 1 belongs to the process.
  }
}
