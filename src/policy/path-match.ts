import { Minimatch } from 'minimatch';

/**
 * `paths` patterns are minimatch globs over the request path (no query string). The request
 * path is normalised first, the way the origin server will read it, so that an encoding cannot
 * slip past a deny rule or into an allow rule: RFC 3986 §6.2.2.2 (decode percent-encoded
 * unreserved characters) then §5.2.4 (remove "." and ".." segments). `%2F` stays encoded:
 * it is reserved, and servers disagree on it.
 */
const PATH_OPTIONS = { dot: true, nonegate: true, nocomment: true } as const;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

export function compilePathPatterns(patterns: readonly string[]): Minimatch[] {
  return patterns.map((pattern) => new Minimatch(pattern, PATH_OPTIONS));
}

function decodeUnreserved(path: string): string {
  return path.replace(/%([0-9a-fA-F]{2})/g, (escape: string, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(char) ? char : escape.toUpperCase();
  });
}

function removeDotSegments(path: string): string {
  const segments = path.split('/');
  const out: string[] = [];
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1;
    if (segment === '.' || segment === '..') {
      if (segment === '..' && out.length > 1) out.pop();
      if (last) out.push('');
    } else {
      out.push(segment);
    }
  });
  return out.join('/');
}

export function normalizeRequestPath(path: string): string {
  const normal = removeDotSegments(decodeUnreserved(path));
  return normal.startsWith('/') ? normal : `/${normal}`;
}

/** `path` must already be normalised (normalizeRequestPath, once per request). */
export function pathMatches(patterns: readonly Minimatch[], path: string): boolean {
  return patterns.some((pattern) => pattern.match(path));
}
