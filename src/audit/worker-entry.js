'use strict';
/**
 * The first module of every audit worker thread (start-worker.ts starts them). A real file, not
 * a string run with `eval`, so that its path shows in stack traces and no code is built from text.
 *
 * Plain JavaScript on purpose: from dist/ it loads the compiled module named in workerData. Under
 * ts-jest, which has no loader in other threads, workerData names a .ts module and TypeScript's
 * path, and this file compiles the .ts sources on the fly with transpileModule (types are not
 * checked here: tsc and ts-jest on the parent thread do that).
 */
const { workerData } = require('node:worker_threads');
const { compileTypeScriptOnLoad } = require('./ts-hook');

if (workerData.typescript !== null) compileTypeScriptOnLoad(workerData.typescript);
require(workerData.entry);
