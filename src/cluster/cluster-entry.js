'use strict';
/**
 * The first module of every proxy worker process (cluster/pool.ts forks them with this file as
 * `exec`). Like audit/worker-entry.js for threads: from dist/ it loads the compiled worker module
 * named in TOLLGATE_CLUSTER_ENTRY; under ts-jest it names the .ts module and TypeScript's path,
 * and the sources are compiled on the fly (types are checked by tsc and ts-jest, not here).
 */
const { compileTypeScriptOnLoad } = require('../audit/ts-hook');

const entry = JSON.parse(process.env.TOLLGATE_CLUSTER_ENTRY || 'null');
if (entry === null || typeof entry.entry !== 'string') {
  process.stderr.write('tollgate: cluster-entry.js is started by `tollgate serve --workers N`, not by hand\n');
  process.exit(2);
}
if (entry.typescript !== null) compileTypeScriptOnLoad(entry.typescript);
require(entry.entry);
