import { readFileSync } from 'node:fs';
import path from 'node:path';
import { docFiles } from '../../src/docs/generate';

/**
 * Shell blocks the docs mark as runnable: a fence whose info string is a shell language followed
 * by the word `runnable` (```sh runnable). GitHub highlights by the first word and shows nothing
 * of the rest, so the mark costs the reader nothing.
 *
 * Inside a block, comment lines say what to expect (bash skips them; the reader sees a hint):
 *   # expect-exit: N       the block's exit status (default 0); bash -e stops at the first
 *                          failing command, so a block shows one expected failure, last
 *   # expect-output: TEXT  stdout or stderr contains TEXT (may be repeated)
 *   # timeout: N           seconds the block may take (default 20)
 *   # needs: postgres      the block gets $TOLLGATE_AUDIT_URL, a new empty database of its own on
 *                          the test run's throwaway PostgreSQL (skipped with TOLLGATE_TEST_PG=off)
 */

export interface RunnableBlock {
  /** Relative to the repository root. */
  readonly file: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly code: string;
  readonly expectExit: number;
  readonly expectOutput: readonly string[];
  readonly timeoutMs: number;
  /** What the block needs beyond the served tollgate (`# needs: postgres`). */
  readonly needs: readonly Need[];
}

/** Things a block may ask for with `# needs: NAME`. */
export const NEEDS = ['postgres'] as const;
export type Need = (typeof NEEDS)[number];
const isNeed = (word: string): word is Need => (NEEDS as readonly string[]).includes(word);

const SHELLS = new Set(['sh', 'bash', 'shell']);
const FENCE = /^( *)(`{3,}|~{3,})(.*)$/;
const DIRECTIVE = /^\s*#\s*(expect-[a-z-]+|timeout|needs?):\s*(.*?)\s*$/;
export const DEFAULT_BLOCK_TIMEOUT_MS = 20_000;

export class BlockError extends Error {}

function parseDirectives(code: string, where: string): Pick<RunnableBlock, 'expectExit' | 'expectOutput' | 'timeoutMs' | 'needs'> {
  let expectExit = 0;
  let timeoutMs = DEFAULT_BLOCK_TIMEOUT_MS;
  const expectOutput: string[] = [];
  const needs: Need[] = [];
  for (const line of code.split('\n')) {
    const match = DIRECTIVE.exec(line);
    if (match === null) continue;
    const [, name, value] = match;
    if (name === 'expect-exit' && /^[0-9]{1,3}$/.test(value)) expectExit = Number(value);
    else if (name === 'expect-output' && value !== '') expectOutput.push(value);
    else if (name === 'timeout' && /^[1-9][0-9]{0,2}$/.test(value)) timeoutMs = Number(value) * 1000;
    else if (name === 'needs' && isNeed(value)) needs.push(value);
    // A misspelt directive would silently check nothing.
    else throw new BlockError(`${where}: "# ${name}: ${value}": expected "# expect-exit: N", "# expect-output: TEXT", "# timeout: SECONDS" or "# needs: ${NEEDS.join('|')}"`);
  }
  return { expectExit, expectOutput, timeoutMs, needs };
}

/** The runnable blocks of one Markdown text, fences indented in list items included. */
export function extractRunnable(text: string, file: string): RunnableBlock[] {
  const lines = text.split('\n');
  const blocks: RunnableBlock[] = [];
  let open: { indent: number; fence: string; line: number; runnable: boolean; body: string[] } | null = null;
  lines.forEach((raw, index) => {
    const fence = FENCE.exec(raw);
    if (open === null) {
      if (fence === null) return;
      const words = fence[3].trim().split(/\s+/);
      const runnable = words.includes('runnable');
      if (runnable && !SHELLS.has(words[0])) throw new BlockError(`${file}:${index + 1}: "runnable" on a ${words[0] || 'plain'} block: only sh, bash and shell blocks run`);
      open = { indent: fence[1].length, fence: fence[2], line: index + 1, runnable, body: [] };
      return;
    }
    const closes = fence !== null && fence[2][0] === open.fence[0] && fence[2].length >= open.fence.length && fence[3].trim() === '';
    if (!closes) {
      open.body.push(raw.slice(Math.min(open.indent, raw.length - raw.trimStart().length)));
      return;
    }
    if (open.runnable) {
      const code = `${open.body.join('\n')}\n`;
      blocks.push({ file, line: open.line, code, ...parseDirectives(code, `${file}:${open.line}`) });
    }
    open = null;
  });
  return blocks;
}

/** README.md and docs/*.md, in that order: blocks share one served tollgate and run in order. */
export function runnableBlocks(root: string): RunnableBlock[] {
  return docFiles(root).flatMap((file) => extractRunnable(readFileSync(path.join(root, file), 'utf8'), file));
}

/** http(s) URLs a block names whose host is neither loopback nor a shell variable. */
export function outsideUrls(code: string): string[] {
  const urls = code.match(/\bhttps?:\/\/[^\s"'`)]+/g) ?? [];
  return urls.filter((url) => {
    const host = /^https?:\/\/(\[[^\]]*\]|[^/:?#]*)/.exec(url)?.[1] ?? '';
    return host !== '' && !host.includes('$') && !/^(127\.[0-9.]+|localhost|\[::1\])$/.test(host);
  });
}

/** The addresses `npm start` listens on: a block names them, and the test puts the served ones in their place. */
export const READER_PROXY = '127.0.0.1:3128';
export const READER_ADMIN = '127.0.0.1:3129';

/**
 * Further loopback addresses a block may name for a tollgate (or anything) it starts itself,
 * 127.0.0.1:3130 to 127.0.0.1:3199, as a reader would pick them: each distinct one gets a free
 * port for that run, so blocks never collide with each other or with other tests.
 */
export function readerPorts(code: string): string[] {
  return [...new Set(code.match(/\b127\.0\.0\.1:31[3-9][0-9]\b/g) ?? [])];
}

/** The block's text with each reader address in `addresses` replaced by the run's (whole addresses only: 3130 is not in 31300). */
export function substituteAddresses(code: string, addresses: ReadonlyMap<string, string>): string {
  return code.replace(/\b127\.0\.0\.1:[0-9]+\b/g, (address) => addresses.get(address) ?? address);
}
