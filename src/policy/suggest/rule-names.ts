import { NAME_PATTERN } from '../client-schema';

/**
 * Readable rule names: the client group and the destination family, dots as hyphens
 * (`ci-runners-github-com`), `ip-` before an address (`ci-runners-ip-10-1-2-3`), `-http` for a
 * rule with methods and paths, `-2`, `-3`… where one family needs more rules. Names must be
 * unique across the whole policy folder (policy-set-checks.ts) and fit NAME_PATTERN.
 */

export interface NameParts {
  group: string | null;
  family: string;
  /** The family is an IP literal (the host's hostKind said so), named `ip-…`. */
  ipLiteral: boolean;
  http: boolean;
  /** --by client-group: an every-client rule is named `ungrouped-…` so it stands out. */
  grouped: boolean;
}

const MAX_NAME = 100;

function slug(family: string, ipLiteral: boolean): string {
  const text = family.toLowerCase().replace(/[^a-z0-9_]+/g, '-').replace(/^-+|-+$/g, '');
  return ipLiteral ? `ip-${text}` : text;
}

function baseName(parts: NameParts): string {
  const owner = parts.group ?? (parts.grouped ? 'ungrouped' : '');
  const name = [owner, slug(parts.family, parts.ipLiteral) || 'host', parts.http ? 'http' : ''].filter((p) => p !== '').join('-');
  // Names start with a letter or digit (a family such as `_service` would not).
  return /^[A-Za-z0-9]/.test(name) ? name : `host-${name}`;
}

/** Fits `suffix` within MAX_NAME by shortening the base. */
function withSuffix(base: string, suffix: string): string {
  return `${base.slice(0, MAX_NAME - suffix.length).replace(/-+$/, '')}${suffix}`;
}

/** One unique, valid name per rule, in order; `taken`: the policy's own rule names. */
export function ruleNames(rules: readonly NameParts[], taken: ReadonlySet<string>): string[] {
  const used = new Set(taken);
  return rules.map((parts) => {
    const base = baseName(parts);
    let name = withSuffix(base, '');
    for (let n = 2; used.has(name) || !NAME_PATTERN.test(name); n += 1) {
      name = NAME_PATTERN.test(withSuffix(base, `-${n}`)) ? withSuffix(base, `-${n}`) : `suggested-${n}`;
    }
    used.add(name);
    return name;
  });
}
