import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Issue 21: a code comment says its reason, not "STYLE habit N" (the reader of src/ may not have
 * STYLE.md), and a comment that quotes a benchmark figure points to docs/performance.md, where the
 * figure is kept current, instead of aging silently in the code.
 */

export type OffenceKind = 'style-habit' | 'bench-figure';

export interface Offence {
  readonly file: string;
  /** 1-based line of the offending text. */
  readonly line: number;
  readonly kind: OffenceKind;
  /** The comment's first line that offends, trimmed. */
  readonly text: string;
}

interface Comment {
  /** 1-based line of the first of `lines`. */
  readonly line: number;
  readonly lines: readonly string[];
}

export const STYLE_HABIT = /\bSTYLE habits? \d+/;
const BENCH_WORD = /\bbench(?:mark)?s?\b|\bbench\/|\bmeasured\b|\bp(?:50|95|99)\b/i;
/** A measured quantity: a number with a unit, a number in thousands, or a ratio in words. */
const FIGURE = /\d[\d,.]*\s?(?:ns|µs|us|ms|s|KiB|MiB|GiB|KB|MB|GB|%|req\/s|rps|ops\/s)(?![\w])|\b\d{1,3}(?:,\d{3})+\b|\bhalf the\b|\btwice\b|\b(?:\d+|two|three|four|five|ten) times\b/i;
export const PERFORMANCE_PAGE = 'docs/performance.md';

/** The comments of one TypeScript text: a block comment, or a run of `//` lines, is one comment. */
export function commentsOf(text: string): Comment[] {
  const comments: Comment[] = [];
  let current: { line: number; lines: string[]; block: boolean } | null = null;
  const flush = (): void => {
    if (current !== null) comments.push({ line: current.line, lines: current.lines });
    current = null;
  };
  text.split('\n').forEach((raw, index) => {
    if (current?.block) {
      current.lines.push(raw.trim());
      if (raw.includes('*/')) flush();
      return;
    }
    const trimmed = raw.trim();
    if (trimmed.startsWith('/*')) {
      flush();
      current = { line: index + 1, lines: [trimmed], block: !trimmed.includes('*/') };
      if (!current.block) flush();
      return;
    }
    // A line comment alone on its line, or after code (` // ` so that URLs in strings are not taken).
    const at = trimmed.startsWith('//') ? 0 : raw.indexOf(' // ');
    if (at < 0) {
      flush();
      return;
    }
    const comment = raw.slice(at).trim();
    if (current === null || trimmed !== comment) {
      flush();
      current = { line: index + 1, lines: [], block: false };
    }
    current.lines.push(comment);
    if (trimmed !== comment) flush();
  });
  flush();
  return comments;
}

export function offencesIn(text: string, file: string): Offence[] {
  const offences: Offence[] = [];
  for (const comment of commentsOf(text)) {
    const whole = comment.lines.join('\n');
    const at = (test: (line: string) => boolean): number => Math.max(0, comment.lines.findIndex(test));
    comment.lines.forEach((text, i) => {
      if (STYLE_HABIT.test(text)) offences.push({ file, line: comment.line + i, kind: 'style-habit', text });
    });
    if (BENCH_WORD.test(whole) && FIGURE.test(whole) && !whole.includes(PERFORMANCE_PAGE)) {
      const i = at((l) => FIGURE.test(l));
      offences.push({ file, line: comment.line + i, kind: 'bench-figure', text: comment.lines[i] });
    }
  }
  return offences;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** Every offence under src/, paths relative to `root`. */
export function commentOffences(root: string): { files: number; offences: Offence[] } {
  const files = tsFiles(path.join(root, 'src')).sort();
  const offences = files.flatMap((file) => offencesIn(readFileSync(file, 'utf8'), path.relative(root, file)));
  return { files: files.length, offences };
}

export function formatOffence(o: Offence): string {
  const what = o.kind === 'style-habit' ? 'cites a STYLE habit: say the reason instead' : `quotes a benchmark figure: point to ${PERFORMANCE_PAGE}`;
  return `${o.file}:${o.line}: ${what}: ${o.text}`;
}
