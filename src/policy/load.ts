import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { compilePolicy, type Policy } from './compiled';
import { checkPolicySet, policySetWarnings } from './policy-set-checks';
import type { Problem } from './problems';
import { isPolicyFileName, policyProvenance, type PolicyProvenance, type PolicySource } from './provenance';
import { parsePolicyFile, type PolicyFileSpec } from './schema';

export type { Policy, CompiledRule, CompiledClient, PolicySettings } from './compiled';
export { formatProblem, type Problem } from './problems';

/** `sources`: the files as read, so another process can compile the same policy (compileSources). */
export type LoadResult = { ok: true; policy: Policy; warnings: Problem[]; sources: PolicySource[] } | { ok: false; problems: Problem[] };

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The folder's `*.yaml` / `*.yml` files in file-name order, not recursive. Dotfiles are
 * skipped: editors leave lock and backup files such as `.#10-rules.yaml` next to the real ones.
 */
function listPolicyFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter(isPolicyFileName)
    .filter((name) => statSync(join(dir, name)).isFile())
    .sort();
}

function readSources(dir: string): PolicySource[] | Problem {
  const folder = basename(dir) || dir;
  let names: string[];
  try {
    names = listPolicyFiles(dir);
  } catch (error) {
    return { file: folder, line: 0, message: `cannot read the policies folder: ${errorText(error)}` };
  }
  if (names.length === 0) {
    return { file: folder, line: 0, message: 'no policy files (*.yaml, *.yml) in the folder; every request would be denied' };
  }
  const sources: PolicySource[] = [];
  for (const file of names) {
    try {
      sources.push({ file, text: readFileSync(join(dir, file), 'utf8') });
    } catch (error) {
      return { file, line: 0, message: `cannot read the file: ${errorText(error)}` };
    }
  }
  return sources;
}

/**
 * Loads and compiles every policy file in `dir`: all or nothing. The version is worked out once
 * per load (provenance.ts: the git commit, or the content hash outside git).
 */
export function loadPolicy(dir: string): LoadResult {
  const sources = readSources(dir);
  if (!Array.isArray(sources)) return { ok: false, problems: [sources] };
  return compileSources(sources, policyProvenance(dir, sources));
}

/**
 * The files as another process read them, compiled here: `serve --workers` sends its workers
 * the primary's sources and version, so every process holds the very policy the primary checked.
 */
export function compileSources(sources: PolicySource[], provenance: PolicyProvenance): LoadResult {
  const specs: PolicyFileSpec[] = [];
  const problems: Problem[] = [];
  for (const { file, text } of sources) {
    const parsed = parsePolicyFile(file, text);
    specs.push(parsed.spec);
    problems.push(...parsed.problems);
  }
  if (problems.length > 0) return { ok: false, problems };
  const setProblems = checkPolicySet(specs);
  if (setProblems.length > 0) return { ok: false, problems: setProblems };
  return { ok: true, policy: compilePolicy(specs, provenance), warnings: policySetWarnings(specs), sources };
}
