import path from 'node:path';
import { REPO } from '../audit/built-modules';

export { REPO };
/** migrations/postgres/ of this checkout (bench/fleet runs from deep under bench/dist). */
export const PG_MIGRATIONS = path.join(REPO, 'migrations', 'postgres');
