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
const fs = require('node:fs');
const { workerData } = require('node:worker_threads');

if (workerData.typescript !== null) {
  const ts = require(workerData.typescript);
  const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
  require.extensions['.ts'] = (module, filename) => {
    const source = fs.readFileSync(filename, 'utf8');
    module._compile(ts.transpileModule(source, { fileName: filename, compilerOptions }).outputText, filename);
  };
}
require(workerData.entry);
