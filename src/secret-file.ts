import fs from 'node:fs';

/**
 * Why a secret file (the audit chain's key, the inspection CA's key) cannot be used. Each caller
 * wraps it in its own error; `code` is the errno code when the file could not be opened or read
 * (ENOENT: the caller may say how to create it), null when the file was read and refused.
 */
export class SecretFileError extends Error {
  constructor(message: string, readonly code: string | null) {
    super(message);
    this.name = 'SecretFileError';
  }
}

/**
 * The bytes of a key file, refused when it is not a regular file or when group or others may
 * read or write it (a key others can read proves nothing and protects nothing). The mode is taken
 * from the open descriptor (fstat), so the file checked is the file read; O_NONBLOCK keeps a FIFO
 * from holding the open until a writer comes (it is then refused as not a regular file). A
 * symbolic link is followed: a Kubernetes secret volume mounts its files as links (give it
 * `defaultMode: 0400`). Messages start with the file and name `label` ("the CA key"); they never
 * hold the file's contents. The caller zeroes the bytes when it is done with them.
 */
export function readSecretFile(file: string, label: string): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw cannotRead(file, err);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new SecretFileError(`${file}: not a regular file`, null);
    if ((stat.mode & 0o077) !== 0) {
      const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
      throw new SecretFileError(`${file}: ${label} is readable or writable by group or others (mode ${mode}); chmod 600 it`, null);
    }
    return fs.readFileSync(fd);
  } catch (err) {
    throw err instanceof SecretFileError ? err : cannotRead(file, err);
  } finally {
    fs.closeSync(fd);
  }
}

function cannotRead(file: string, err: unknown): SecretFileError {
  const code = (err as NodeJS.ErrnoException).code ?? null;
  return new SecretFileError(`${file}: cannot be read (${code ?? (err as Error).message})`, code);
}
