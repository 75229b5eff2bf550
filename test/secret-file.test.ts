import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readSecretFile, SecretFileError } from '../src/secret-file';

/** readSecretFile: the one check behind --audit-key and the inspection CA's key. */
describe('readSecretFile', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-secret-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const refusal = (file: string): SecretFileError => {
    try {
      readSecretFile(file, 'the test key');
    } catch (err) {
      if (err instanceof SecretFileError) return err;
      throw err;
    }
    throw new Error(`${file} was read`);
  };

  test('reads a file only its owner may read or write', () => {
    const file = path.join(dir, 'ok');
    fs.writeFileSync(file, 'secret bytes', { mode: 0o600 });
    expect(readSecretFile(file, 'the test key').toString()).toBe('secret bytes');
  });

  test('refuses a file group or others may read, naming the mode and the fix but not the contents', () => {
    const file = path.join(dir, 'loose');
    fs.writeFileSync(file, 'secret bytes', { mode: 0o600 });
    fs.chmodSync(file, 0o640);
    const err = refusal(file);
    expect(err.message).toBe(`${file}: the test key is readable or writable by group or others (mode 0640); chmod 600 it`);
    expect(err.code).toBeNull();
  });

  test('refuses a folder and a FIFO (without waiting for a writer), and names a missing file\'s errno', () => {
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    expect(refusal(fifo).message).toBe(`${fifo}: not a regular file`);
    fs.mkdirSync(path.join(dir, 'folder'), { mode: 0o700 });
    expect(refusal(path.join(dir, 'folder')).message).toBe(`${path.join(dir, 'folder')}: not a regular file`);
    const missing = refusal(path.join(dir, 'missing'));
    expect(missing).toMatchObject({ code: 'ENOENT', message: `${path.join(dir, 'missing')}: cannot be read (ENOENT)` });
  });
});
