import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fillSections, findSections } from './markers';
import { renderSections } from './sections';

/**
 * `npm run docs`: rewrite every generated section of README.md and docs/*.md from the code's own
 * definitions. `--check` writes nothing and exits 1 when a file would change (what the test does).
 */

export interface DocFile {
  /** Relative to the repository root, for messages. */
  readonly file: string;
  readonly current: string;
  readonly generated: string;
}

export interface DocsResult {
  readonly files: readonly DocFile[];
  /** Sections the generator writes that no file has a place for. */
  readonly unplaced: readonly string[];
}

/** README.md and every docs/*.md, in a stable order. */
export function docFiles(root: string): string[] {
  const docs = readdirSync(path.join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => path.join('docs', name));
  return ['README.md', ...docs];
}

export function generateDocs(root: string): DocsResult {
  const sections = renderSections();
  const placed = new Set<string>();
  const files = docFiles(root).map((file) => {
    const current = readFileSync(path.join(root, file), 'utf8');
    const marked = findSections(current, file);
    for (const section of marked) placed.add(section.name);
    return { file, current, generated: fillSections(current, file, (name) => sections.get(name), marked) };
  });
  return { files, unplaced: [...sections.keys()].filter((name) => !placed.has(name)) };
}

function main(argv: string[]): number {
  const check = argv.includes('--check');
  const root = path.resolve(__dirname, '..', '..');
  const result = generateDocs(root);
  const drifted = result.files.filter((f) => f.current !== f.generated);
  for (const f of drifted) {
    if (check) process.stdout.write(`${f.file}: generated sections differ from the code\n`);
    else writeFileSync(path.join(root, f.file), f.generated);
  }
  if (!check) process.stdout.write(`docs: ${drifted.length} file(s) rewritten: ${drifted.map((f) => f.file).join(', ') || 'none'}\n`);
  if (result.unplaced.length > 0) process.stdout.write(`docs: no page has a place for: ${result.unplaced.join(', ')} (add <!-- generated: NAME --> ... <!-- end generated -->)\n`);
  if (check && drifted.length > 0) process.stdout.write('run: npm run docs\n');
  return check && drifted.length > 0 ? 1 : 0;
}

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`docs: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
