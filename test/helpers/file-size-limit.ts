import { execFileSync } from 'node:child_process';

/**
 * Sets another process's soft RLIMIT_FSIZE (util-linux `prlimit`): past `bytes`, its writes to
 * any file fail with EFBIG (Node ignores SIGXFSZ), a real write failure where a test cannot fill
 * a disk. The hard limit stays unlimited, so `liftFileSizeLimit` can undo it without privileges.
 */
export function limitFileSize(pid: number, bytes: number): void {
  execFileSync('prlimit', ['--pid', String(pid), `--fsize=${bytes}:unlimited`]);
}

export function liftFileSizeLimit(pid: number): void {
  execFileSync('prlimit', ['--pid', String(pid), '--fsize=unlimited:unlimited']);
}
