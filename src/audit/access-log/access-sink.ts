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

/**
 * POSIX: a write of at most PIPE_BUF bytes to a pipe lands whole, never mixed with another
 * writer's bytes (Linux: 4096). pino writes its lines to the same fd from the proxy's thread.
 */
export const PIPE_BUF = 4096;

/**
 * Writes all of `bytes`, waiting out EAGAIN (a non-blocking pipe that is full: the reader is slow)
 * for as long as it lasts. Giving up part-way would leave half a line that the next write runs on
 * from, and the retry would write the whole batch again after it. This is the access log's own
 * thread: blocking here holds up no request, and the log on disk keeps what is not written yet.
 */
function writeAll(fd: number, bytes: Buffer): void {
  let at = 0;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  let waitMs = 1;
  while (at < bytes.length) {
    try {
      at += fs.writeSync(fd, bytes, at, bytes.length - at);
      waitMs = 1;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, waitMs);
      waitMs = Math.min(100, waitMs * 2);
    }
  }
}

/**
 * Writes whole lines in writes of at most PIPE_BUF bytes where it can, so that on a pipe shared
 * with pino no line is split by another writer's. A line longer than PIPE_BUF is written alone,
 * and may be split (docs/operations.md, "Access log for a SIEM").
 */
function writeLines(fd: number, bytes: Buffer): void {
  let start = 0;
  while (start < bytes.length) {
    let end = start;
    while (end < bytes.length) {
      const newline = bytes.indexOf(0x0a, end);
      const lineEnd = newline < 0 ? bytes.length : newline + 1;
      if (lineEnd - start > PIPE_BUF && end > start) break;
      end = lineEnd;
    }
    writeAll(fd, bytes.subarray(start, end));
    start = end;
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
    // O_APPEND: one write per batch lands whole at the file's end.
    writeAll(this.fd, Buffer.from(text, 'utf8'));
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
  /** `fd`: the process's stdout; tests give a pipe of their own. */
  constructor(private readonly fd = 1) {}

  open(): null {
    return null;
  }

  write(text: string): void {
    writeLines(this.fd, Buffer.from(text, 'utf8'));
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
