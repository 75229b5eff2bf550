import { readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { parseWholeNumber } from '../config';
import { isPolicyFileName } from '../policy/provenance';
import { plural } from '../policy/replay/format-shared';
import { effectiveBy, NoClientGroupsError, suggestPolicy } from '../policy/suggest/suggest';
import { SUGGEST_BY, type SuggestBy, type SuggestSummary } from '../policy/suggest/types';
import { openRecordedInputs, parseOrUsage, readRecorded, type Values } from './policy';

export const SUGGEST_HELP = `usage: tollgate policy suggest (--db FILE | --audit-url URL | --audit-url-file FILE) --policies DIR
                              [--since 14d] [--min-requests 1] [--by client-group|none]
                              [--with-paths] [--out FILE]

Write allow rules (one YAML policy file) for the traffic recorded in the window that the current
policies in DIR only report (would_deny) or allow by default: the first allowlist, from report
mode. Destinations are grouped by registrable domain (Public Suffix List, private section
included); three or more subdomains of one become a "**." glob. Destinations an existing rule
allows, an explicit deny rule denies, or the destination guard refused are left out and listed in
a closing comment. Save the file so it sorts after the other files (e.g. DIR/90-suggested.yaml),
review it, and replay it with settings.mode: enforce before enforcing.
  --db            audit database (opened read-only)
  --audit-url     the fleet's shared history in PostgreSQL instead (or --audit-url-file FILE, or
                  TOLLGATE_AUDIT_URL)
  --policies      the current policies folder
  --since         how far back: 30m, 12h, 7d, 2w, or a UTC date (default 14d)
  --min-requests  leave out destinations seen fewer times, per client group (default 1)
  --by            client-group: one rule per client group and destination family (the default
                  where the policies define client groups); none: rules for every client
  --with-paths    plain-HTTP rules also get the methods and paths seen
  --out           write the YAML to FILE instead of stdout
Exit 0 done, 2 bad input.
`;

/** Nine digits, as many requests as any window holds. */
const MAX_MIN_REQUESTS = 999_999_999;

interface SuggestArgs {
  policies: string;
  minRequests: number;
  by: SuggestBy | null;
}

function suggestArgs(values: Values, positionals: string[]): SuggestArgs | string {
  if (positionals.length > 0) return `unexpected argument "${positionals[0]}"`;
  if (typeof values.policies !== 'string') return '--policies DIR is required (the current policies)';
  let minRequests: number;
  try {
    minRequests = parseWholeNumber(typeof values['min-requests'] === 'string' ? values['min-requests'] : '1', '--min-requests', 1, MAX_MIN_REQUESTS);
  } catch {
    return '--min-requests must be a whole number of requests, at least 1';
  }
  const by = values.by;
  if (by !== undefined && !SUGGEST_BY.includes(by as SuggestBy)) return '--by must be client-group or none';
  return { policies: values.policies, minRequests, by: (by as SuggestBy | undefined) ?? null };
}

function describe(summary: SuggestSummary, out: string | null): string {
  const left = summary.left_out.length;
  const where = out === null ? '' : ` to ${out}`;
  return `tollgate policy suggest: wrote ${plural(summary.rules, 'rule')}${where} for ${plural(summary.suggested.requests, 'request')} ` +
    `to ${plural(summary.suggested.destinations, 'destination')} (by ${summary.by}); ${plural(left, 'destination')} left out (listed at the end of the file)\n`;
}

/**
 * The suggestion must load after every existing file, or one of its allow rules could decide a
 * request before an explicit deny does: say so when --out puts it earlier in the folder.
 */
function orderWarning(out: string, policies: string): string | null {
  if (resolve(dirname(out)) !== resolve(policies) || !isPolicyFileName(basename(out))) return null;
  let later: string[];
  try {
    later = readdirSync(policies).filter((f) => isPolicyFileName(f) && f > basename(out));
  } catch {
    return null;
  }
  if (later.length === 0) return null;
  return `tollgate policy suggest: warning: ${basename(out)} loads before ${later.sort().join(', ')}; rename it to sort last (e.g. 90-suggested.yaml) so existing rules, explicit denies included, decide first\n`;
}

/** `tollgate policy suggest` */
export async function runPolicySuggest(args: string[]): Promise<number> {
  const parsed = parseOrUsage(
    args,
    {
      db: { type: 'string' }, 'audit-url': { type: 'string' }, 'audit-url-file': { type: 'string' }, policies: { type: 'string' },
      since: { type: 'string' }, 'min-requests': { type: 'string' }, by: { type: 'string' }, 'with-paths': { type: 'boolean' },
      out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
    SUGGEST_HELP,
  );
  if (typeof parsed === 'number') return parsed;
  const checked = suggestArgs(parsed.values, parsed.positionals);
  if (typeof checked === 'string') {
    process.stderr.write(`tollgate policy suggest: ${checked}\n\n${SUGGEST_HELP}`);
    return 2;
  }
  const { values } = parsed;
  const inputs = await openRecordedInputs(values, checked.policies, typeof values.since === 'string' ? values.since : '14d', 'suggest');
  if (typeof inputs === 'number') return inputs;
  let by: SuggestBy;
  try {
    by = effectiveBy(inputs.policy, checked.by);
  } catch (err) {
    if (!(err instanceof NoClientGroupsError)) throw err;
    await inputs.traffic.close().catch(() => undefined);
    process.stderr.write(`tollgate policy suggest: --by client-group: the policies in ${checked.policies} define no client groups; use --by none\n`);
    return 2;
  }
  const options = { window: inputs.window, now: inputs.now, minRequests: checked.minRequests, by, withPaths: values['with-paths'] === true };
  const result = await readRecorded(inputs, 'suggest', ({ traffic, policy }) => suggestPolicy(traffic, policy, options));
  if (typeof result === 'number') return result;
  const out = typeof values.out === 'string' ? values.out : null;
  if (out === null) {
    process.stdout.write(result.yaml);
  } else {
    try {
      writeFileSync(out, result.yaml);
    } catch (err) {
      process.stderr.write(`tollgate policy suggest: cannot write ${out}: ${(err as Error).message}\n`);
      return 2;
    }
  }
  process.stderr.write(describe(result.summary, out));
  const warning = out === null ? null : orderWarning(out, checked.policies);
  if (warning !== null) process.stderr.write(warning);
  return 0;
}
