import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';

/**
 * Where a loaded policy came from, recorded as `policy_version` on every request. Policies are
 * kept in git, so the commit is what a reviewer can check out and read; the content hash is the
 * fallback for a folder outside git (a container mount, a tarball) and is kept alongside.
 */
export interface PolicyProvenance {
  /** `git:<12 hex>`, `git:<12 hex>-dirty`, or `sha256:<12 hex>` outside a git work tree. */
  version: string;
  /** `sha256:<12 hex>` of the file names and contents, whatever `version` is. */
  contentHash: string;
}

export interface PolicySource {
  file: string;
  text: string;
}

/** Each git call; a load runs two. A reload blocks the event loop this long at worst. */
const GIT_TIMEOUT_MS = 2000;
const SHORT_HASH = 12;
const COMMIT = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

/**
 * Variables that would point git at some other repository than the one around the folder
 * (they are set, for example, inside a git hook that runs `tollgate policy check`).
 */
const REPOSITORY_VARIABLES = ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_COMMON_DIR', 'GIT_NAMESPACE'];

/** Changes whenever a file is added, removed, renamed or edited. */
export function contentHash(sources: readonly PolicySource[]): string {
  const hash = createHash('sha256');
  for (const { file, text } of sources) hash.update(`${file}\0${text}\0`);
  return `sha256:${hash.digest('hex').slice(0, SHORT_HASH)}`;
}

function gitEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' };
  for (const name of REPOSITORY_VARIABLES) delete env[name];
  return env;
}

/** stdout of one git command, or null when git is missing, fails, or times out. No shell. */
function git(dir: string, args: readonly string[]): string | null {
  // --no-optional-locks: `status` must not take index.lock to refresh stat data, so a read of
  // the policies never competes with a person committing in the same repository.
  const run = spawnSync('git', ['--no-optional-locks', '-C', dir, ...args], {
    encoding: 'utf8',
    timeout: GIT_TIMEOUT_MS,
    env: gitEnv(),
    stdio: ['ignore', 'pipe', 'ignore'],
    windowsHide: true,
  });
  if (run.error !== undefined || run.status !== 0) return null;
  return run.stdout;
}

/** The files a load reads: `*.yaml` / `*.yml` directly in the folder, dotfiles excepted. */
export function isPolicyFileName(name: string): boolean {
  return /\.ya?ml$/.test(name) && !name.startsWith('.') && !name.includes('/');
}

/**
 * Paths in `git status --porcelain -z` output (relative to the repository root): `XY PATH`, and
 * for a rename or copy the original path as the next NUL-separated field.
 */
function statusPaths(output: string): string[] {
  const fields = output.split('\0').filter((f) => f !== '');
  const paths: string[] = [];
  for (let i = 0; i < fields.length; i += 1) {
    const entry = fields[i];
    paths.push(entry.slice(3));
    if (/^[RC]|^.[RC]/.test(entry) && i + 1 < fields.length) paths.push(fields[++i]);
  }
  return paths;
}

/**
 * `git:` + the HEAD commit when `dir` is inside a git work tree with at least one commit, with
 * `-dirty` when a file the load reads differs from that commit: modified, added, deleted,
 * renamed, untracked, or git-ignored (an ignored policy file is loaded but is in no commit).
 * Other files in the folder (a README, an editor's swap file) do not count. Null outside git,
 * without git, or when git fails or times out.
 */
export function gitVersion(dir: string): string | null {
  // One call for both: the folder's path inside the repository, then the commit.
  const lines = git(dir, ['rev-parse', '--show-prefix', 'HEAD'])?.split('\n');
  if (lines === undefined || lines.length < 2 || !COMMIT.test(lines[1])) return null;
  const [prefix, head] = lines;
  const status = git(dir, ['status', '--porcelain', '-z', '--ignored', '--untracked-files=all', '--', '.']);
  if (status === null) return null;
  const dirty = statusPaths(status).some((p) => p.startsWith(prefix) && isPolicyFileName(p.slice(prefix.length)));
  return `git:${head.slice(0, SHORT_HASH)}${dirty ? '-dirty' : ''}`;
}

/** Computed once per load, from the sources that load read. */
export function policyProvenance(dir: string, sources: readonly PolicySource[]): PolicyProvenance {
  const hash = contentHash(sources);
  return { version: gitVersion(dir) ?? hash, contentHash: hash };
}
