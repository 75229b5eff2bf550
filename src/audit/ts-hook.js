'use strict';
/**
 * For the entry files of threads (worker-entry.js) and processes (cluster/cluster-entry.js)
 * under ts-jest, which has no loader outside its own thread: .ts modules compiled on the fly
 * with transpileModule (types are checked by tsc and ts-jest, not here). From dist/ it is unused.
 */
const fs = require('node:fs');

exports.compileTypeScriptOnLoad = function compileTypeScriptOnLoad(typescriptPath) {
  const ts = require(typescriptPath);
  const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
  require.extensions['.ts'] = (module, filename) => {
    const source = fs.readFileSync(filename, 'utf8');
    module._compile(ts.transpileModule(source, { fileName: filename, compilerOptions }).outputText, filename);
  };
};
