import fs from 'node:fs';
import path from 'node:path';

/** The repository root (bench/fleet's output lands some folders deep under bench/dist). */
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
export const PG_MIGRATIONS = path.join(REPO, 'migrations', 'postgres');
