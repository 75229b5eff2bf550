import fs from 'node:fs';
import path from 'node:path';

/**
 * The repository these benches run from, and its compiled modules. They load dist/ at run time
 * (built by `npm run build`) rather than importing src/: they time the code as it ships, and
 * `--before DIR` can load another checkout's build. The root is found by walking up, because
 * bench/audit's own output lands some folders deep under bench/dist.
 */
function findRepoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'migrations', '001_audit.sql'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root');
    dir = up;
  }
  return dir;
}

export const REPO = findRepoRoot();

/** `dist/<rel>` of the checkout at `root`, typed as its source module (`typeof import(...)`). */
export const loadFrom = <T>(root: string, rel: string): T => require(path.join(root, 'dist', rel)) as T;

/** `dist/<rel>` of this checkout. */
export const load = <T>(rel: string): T => loadFrom<T>(REPO, rel);
