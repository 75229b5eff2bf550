import { execFileSync } from 'node:child_process';
import { userInfo } from 'node:os';
import { installed, PACKAGE_OF } from './peers';

/** The Debian programs bench/compare.ts drives: finding, installing and naming them. */

/** Installs `programs` with apt-get (as root), as the issue asks of the bench itself. */
export function installMissing(programs: string[], log: (message: string) => void): void {
  const packages = [...new Set(programs.map((p) => PACKAGE_OF[p]))];
  if (userInfo().uid !== 0) throw new Error(`missing ${programs.join(', ')}: run "apt-get install -y ${packages.join(' ')}" as root, or pass --skip-missing`);
  log(`installing ${packages.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): void => void execFileSync('apt-get', ['install', '-y', '-q', ...packages], { stdio: 'inherit', env });
  try {
    install();
  } catch {
    // A fresh machine has no package lists yet.
    execFileSync('apt-get', ['update', '-q'], { stdio: 'inherit', env });
    install();
  }
}

function versionOf(command: string, args: string[], pattern: RegExp): string | null {
  try {
    const out = execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return pattern.exec(out)?.[0] ?? null;
  } catch (err) {
    // nginx -v prints to stderr; some versions exit non-zero after printing.
    const output = `${(err as { stdout?: string }).stdout ?? ''}${(err as { stderr?: string }).stderr ?? ''}`;
    return pattern.exec(output)?.[0] ?? null;
  }
}

export function versions(): string[] {
  return [
    `Node ${process.version}`,
    versionOf('squid', ['-v'], /Squid Cache: Version \S+/),
    versionOf('tinyproxy', ['-v'], /tinyproxy \S+/),
    versionOf('nginx', ['-v'], /nginx\/\S+/),
    versionOf('wrk', ['-v'], /wrk \S+/),
    installed('hey') ? 'hey (Debian)' : null,
  ].filter((v): v is string => v !== null);
}

export { installed };
