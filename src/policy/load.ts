import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { compilePolicy, type Policy } from './compiled';
import { checkPolicySet, policySetWarnings } from './policy-set-checks';
import type { Problem } from './problems';
import { parsePolicyFile, type PolicyFileSpec } from './schema';

export type { Policy, CompiledRule, CompiledClient, PolicySettings } from './compiled';
export { formatProblem, type Problem } from './problems';

export type LoadResult = { ok: true; policy: Policy; warnings: Problem[] } | { ok: false; problems: Problem[] };

const POLICY_FILE = /\.ya?ml$/;

interface PolicySource {
  file: string;
  text: string;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The folder's `*.yaml` / `*.yml` files in file-name order, not recursive. Dotfiles are
 * skipped: editors leave lock and backup files such as `.#10-rules.yaml` next to the real ones.
 */
function listPolicyFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => POLICY_FILE.test(name) && !name.startsWith('.'))
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

/** Changes whenever a file is added, removed, renamed or edited; recorded on every request. */
export function policyVersion(sources: readonly PolicySource[]): string {
  const hash = createHash('sha256');
  for (const { file, text } of sources) hash.update(`${file}\0${text}\0`);
  return `sha256:${hash.digest('hex').slice(0, 12)}`;
}

/** Loads and compiles every policy file in `dir`: all or nothing. */
export function loadPolicy(dir: string): LoadResult {
  const sources = readSources(dir);
  if (!Array.isArray(sources)) return { ok: false, problems: [sources] };
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
  return { ok: true, policy: compilePolicy(specs, policyVersion(sources)), warnings: policySetWarnings(specs) };
}
