import fs from 'node:fs';
import path from 'node:path';
import { generateDocs } from '../src/docs/generate';
import { fillSections, findSections, MarkerError } from '../src/docs/markers';
import { HELP_COMMANDS, helpSectionName, LIMITS_SECTION, SERVE_SECTION, serveOptionsTable } from '../src/docs/sections';
import { SERVE_OPTIONS } from '../src/config';
import { runCli } from './helpers/serve-process';

const ROOT = path.resolve(__dirname, '..');

describe('generated sections in README.md and docs/*.md', () => {
  test('each is what `npm run docs` would write now', () => {
    const { files } = generateDocs(ROOT);
    const drifted = files.filter((f) => f.current !== f.generated).map((f) => f.file);
    if (drifted.length > 0) {
      throw new Error(`generated sections differ from the code in ${drifted.join(', ')}: run "npm run docs" and commit the result`);
    }
    expect(files.map((f) => f.file)).toContain('docs/operations.md');
  });

  test('every section the generator writes has a place in some page', () => {
    const { unplaced } = generateDocs(ROOT);
    expect(unplaced).toEqual([]);
  });

  test('every command `tollgate --help` lists has a generated section', () => {
    const usage = runCli('--help').stdout;
    const commands = [...usage.matchAll(/^ {2}tollgate((?: [a-z][a-z-]*)+)/gm)].map((m) => m[1].trim());
    expect(commands.length).toBeGreaterThan(5);
    const generated = new Set([SERVE_SECTION, ...HELP_COMMANDS.map(helpSectionName)]);
    const missing = commands.filter((c) => !generated.has(c === 'serve' ? SERVE_SECTION : helpSectionName(c)));
    expect(missing).toEqual([]);
  });
});

describe('the serve options table', () => {
  test('has one row per SERVE_OPTIONS entry, with its flag, variable and default', () => {
    const rows = serveOptionsTable().split('\n').filter((line) => line.startsWith('| `--'));
    expect(rows).toHaveLength(Object.keys(SERVE_OPTIONS).length);
    expect(rows).toContain('| `--listen` | `TOLLGATE_LISTEN` | `127.0.0.1:3128` | proxy address HOST:PORT (port 0 picks one) |');
  });

  test('README carries the table of timeouts and limits SPEC §1 names as their reference', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const [section] = findSections(readme, 'README.md').filter((s) => s.name === LIMITS_SECTION);
    const flags = [...section.body.matchAll(/^\| `(--[a-z-]+)`/gm)].map((m) => m[1]);
    expect(flags).toEqual(expect.arrayContaining([
      '--dns-timeout', '--connect-timeout', '--request-idle-timeout', '--tunnel-idle-timeout',
      '--tunnel-max-lifetime', '--max-tunnels', '--max-tunnels-per-source', '--drain-timeout',
    ]));
  });

  test('escapes what Markdown would read as emphasis', () => {
    expect(serveOptionsTable()).toContain('folder of \\*.yaml policy files');
  });
});

describe('markers', () => {
  const page = ['# page', '<!-- generated: serve-options -->', 'stale', '<!-- end generated -->', 'prose'].join('\n');

  test('only the text between the markers is replaced', () => {
    const filled = fillSections(page, 'page.md', () => 'fresh\n');
    expect(filled).toBe(['# page', '<!-- generated: serve-options -->', 'fresh', '<!-- end generated -->', 'prose'].join('\n'));
    expect(findSections(filled, 'page.md')).toEqual([{ name: 'serve-options', line: 2, closeLine: 4, body: 'fresh' }]);
  });

  test('an unknown name, a marker left open and a stray close are errors with FILE:LINE', () => {
    expect(() => fillSections(page, 'page.md', () => undefined)).toThrow('page.md:2: no generated section is named "serve-options"');
    expect(() => findSections('<!-- generated: a -->\ntext', 'p.md')).toThrow(new MarkerError('p.md:1: "a" is never closed with "<!-- end generated -->"'));
    expect(() => findSections('text\n<!-- end generated -->', 'p.md')).toThrow('p.md:2:');
    expect(() => findSections('<!-- generated: a -->\n<!-- generated: b -->', 'p.md')).toThrow('p.md:2: "b" opens inside "a"');
  });
});
