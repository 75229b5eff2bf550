import path from 'node:path';
import { commentOffences, commentsOf, formatOffence, offencesIn } from './helpers/comment-check';

const ROOT = path.resolve(__dirname, '..');

describe('the comment check', () => {
  test('finds a STYLE habit cited, in block and line comments, at its line', () => {
    const text = ['/**', ' * Pure (STYLE habit 1).', ' */', 'const a = 1; // one error type (STYLE habits 3 and 12)', '// STYLE habit 7: listener first'].join('\n');
    expect(offencesIn(text, 'a.ts').map((o) => [o.line, o.kind])).toEqual([[2, 'style-habit'], [4, 'style-habit'], [5, 'style-habit']]);
  });

  test('finds a benchmark figure that does not point to docs/performance.md', () => {
    const quoted = '/**\n * Batches of 500: a delete is 35-40 µs a row\n * (bench/retention.ts).\n */';
    expect(offencesIn(quoted, 'b.ts')).toEqual([{ file: 'b.ts', line: 2, kind: 'bench-figure', text: '* Batches of 500: a delete is 35-40 µs a row' }]);
    expect(offencesIn('// half the CPU per request (measured)', 'c.ts')).toHaveLength(1);
    expect(offencesIn('/** 35-40 µs a row (bench/retention.ts; docs/performance.md). */', 'b.ts')).toEqual([]);
  });

  test('leaves alone figures that are not measurements, and text that only looks like a comment', () => {
    expect(offencesIn('/** Close a tunnel idle for 5 m; 10 s to connect. */', 'd.ts')).toEqual([]);
    expect(offencesIn("const url = 'http://bench.example/10 ms'; // the origin", 'e.ts')).toEqual([]);
    expect(commentsOf("const u = 'http://x'; // why\nconst v = 2;").map((c) => c.lines)).toEqual([['// why']]);
  });
});

describe('comments in src/ (issue 21)', () => {
  test('no comment cites a STYLE habit or quotes a figure without docs/performance.md', () => {
    const { files, offences } = commentOffences(ROOT);
    expect(files).toBeGreaterThan(50);
    expect(offences.map(formatOffence)).toEqual([]);
  });
});
