import { compilePathPatterns, pathMatches } from '../path-match';

/**
 * `paths` for a suggested plain-HTTP rule (--with-paths). Recorded paths are written exactly
 * while there are few of them; past MAX_EXACT_PATHS each becomes its first segment and `/**`
 * (`/debian/pool/x.deb` -> `/debian/**`). A path holding a character that means something to
 * the glob (`*`, `?`, `[`, `{`, `(`, `!`, `+`, `@`, a backslash) or that a policy path may not
 * hold (a space, `#`) is never written as such: it is widened to its first segment, or to `/**`.
 * Every pattern list is checked against the paths it stands for with the policy's own matcher;
 * when that fails the rule gets no `paths` (wider, never narrower than the traffic).
 */

const MAX_EXACT_PATHS = 10;

const PLAIN_PATH = /^\/[A-Za-z0-9._~%:=&;,$'/-]*$/;
const PLAIN_SEGMENT = /^[A-Za-z0-9._~%:=&;,$'-]+$/;

function firstSegment(path: string): string {
  const segments = path.split('/');
  const first = segments[1] ?? '';
  return segments.length > 2 && PLAIN_SEGMENT.test(first) ? `/${first}/**` : '/**';
}

/** The patterns, sorted, or null for "any path". */
export function pathPatterns(paths: ReadonlySet<string>): string[] | null {
  const exact = paths.size <= MAX_EXACT_PATHS;
  const patterns = new Set<string>();
  for (const path of paths) patterns.add(exact && PLAIN_PATH.test(path) ? path : firstSegment(path));
  if (patterns.has('/**') || patterns.size > MAX_EXACT_PATHS) return null;
  const sorted = [...patterns].sort();
  const compiled = compilePathPatterns(sorted);
  for (const path of paths) if (!pathMatches(compiled, path)) return null;
  return sorted;
}

/** Methods the policy accepts (rule-schema.ts), or null for "any method". */
export function methodList(methods: ReadonlySet<string>): string[] | null {
  const list = [...methods].sort();
  return list.length > 0 && list.every((m) => /^[A-Z]+$/.test(m) && m !== 'CONNECT') ? list : null;
}
