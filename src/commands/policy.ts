import { parseArgs } from 'node:util';
import { checkPolicies } from '../policy/check';
import { formatProblem, loadPolicy } from '../policy/load';
import { formatMarkdown } from '../policy/replay/format-markdown';
import { formatText } from '../policy/replay/format-text';
import { describeAuditError } from '../fleet/audit-url';
import { openPgTraffic } from '../policy/replay/pg-recorded-traffic';
import { openSqliteTraffic, type RecordedTraffic } from '../policy/replay/recorded-traffic';
import { replayTraffic } from '../policy/replay/replay';
import type { ReplayInput } from '../policy/replay/replay';
import { formatUnusedText, unusedRules } from '../policy/replay/unused';
import { ReplayInputError } from '../policy/replay/input-error';
import { parseWindow } from '../policy/replay/window';
import type { TimeWindow } from '../policy/replay/window';
import { trafficSource } from './traffic-source';

export const DEFAULT_POLICIES = process.env.TOLLGATE_POLICIES ?? './policies';

export const CHECK_HELP = `usage: tollgate policy check [--policies DIR]

Validate every *.yaml/*.yml in DIR (default ./policies or $TOLLGATE_POLICIES).
Prints each problem as FILE:LINE: message. Exit 0 valid, 1 invalid.
`;

export const REPLAY_HELP = `usage: tollgate policy replay (--db FILE | --audit-url URL) --policies DIR [--since 7d]
                             [--format text|markdown|json] [--fail-on-new-denials] [--limit N]

Re-decide the requests recorded in the audit database over the window under the policies in DIR
(the proposed change) and report what would change: destinations newly denied and newly allowed
(requests, client groups and addresses, last seen), rules whose hit counts change, and rules
that would match no recorded request. The database is opened read-only.
  --db        audit database: the live file or a snapshot (sqlite3 audit.db "VACUUM INTO 'snap.db'")
  --audit-url the fleet's shared history in PostgreSQL instead (or --audit-url-file FILE, or
              TOLLGATE_AUDIT_URL: keeps the password out of the process list); read in one snapshot
  --policies  the proposed policies folder
  --since     how far back: 30m, 12h, 7d, 2w, or a UTC date such as 2026-01-01 (default 7d)
  --format    text (default), markdown (a pull-request comment) or json (everything)
  --limit     rows per table for text and markdown (default 50)
  --fail-on-new-denials  exit 1 when any destination would be newly denied (for CI)
No DNS is done: the destination guard is re-checked for IP-literal targets only.
Exit 0 done, 1 new denials (with --fail-on-new-denials), 2 bad input.
`;

export const UNUSED_HELP = `usage: tollgate policy unused (--db FILE | --audit-url URL) [--policies DIR] [--since 30d]
                             [--format text|json]

List the rules of the policies in DIR that decided no request recorded in the window (a hit is a
record whose rule is the rule's name), and rules past or within 14 days of their expires date.
  --db        audit database (opened read-only)
  --audit-url the fleet's shared history in PostgreSQL instead (or --audit-url-file FILE, or
              TOLLGATE_AUDIT_URL)
  --policies  default ./policies or $TOLLGATE_POLICIES
  --since     how far back: 30m, 12h, 7d, 2w, or a UTC date (default 30d)
  --format    text (default) or json
Exit 0 done, 2 bad input.
`;

/** `tollgate policy check` */
export function runPolicyCheck(args: string[]): number {
  const parsed = parseOrUsage(args, { policies: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, CHECK_HELP);
  if (typeof parsed === 'number') return parsed;
  // `policy check DIR` would otherwise check ./policies and call it valid: refuse, don't guess.
  if (parsed.positionals.length > 0) {
    process.stderr.write(`unexpected argument "${parsed.positionals[0]}"; give the folder as --policies DIR\n\n${CHECK_HELP}`);
    return 2;
  }
  const dir = typeof parsed.values.policies === 'string' ? parsed.values.policies : DEFAULT_POLICIES;
  const result = checkPolicies(dir);
  for (const line of result.lines) (result.ok ? process.stdout : process.stderr).write(`${line}\n`);
  if (result.ok) process.stdout.write(`${dir}: policies are valid\n`);
  return result.ok ? 0 : 1;
}

export type Values = Record<string, string | boolean | undefined>;

export function parseOrUsage(
  args: string[],
  options: Record<string, { type: 'string' | 'boolean'; short?: string }>,
  help: string,
): { values: Values; positionals: string[] } | number {
  try {
    const parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
    if (parsed.values.help) {
      process.stdout.write(help);
      return 0;
    }
    return { values: parsed.values as Values, positionals: parsed.positionals };
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${help}`);
    return 2;
  }
}

/** --db or --audit-url, --policies and --since, checked and opened; problems are bad input (exit 2). */
export async function openRecordedInputs(values: Values, policiesDir: string, since: string, command: string): Promise<ReplayInput | number> {
  const fail = (message: string): number => {
    process.stderr.write(`tollgate policy ${command}: ${message}\n`);
    return 2;
  };
  const source = trafficSource(values);
  if (source.kind === 'invalid') return fail(source.message);
  const now = new Date();
  let window: TimeWindow;
  try {
    window = parseWindow(since, now);
  } catch (err) {
    return fail((err as Error).message);
  }
  const loaded = loadPolicy(policiesDir);
  if (!loaded.ok) return fail(`invalid policies in ${policiesDir}:\n${loaded.problems.map(formatProblem).join('\n')}`);
  let traffic: RecordedTraffic;
  try {
    traffic = source.kind === 'sqlite' ? openSqliteTraffic(source.file) : await openPgTraffic(source.url);
  } catch (err) {
    if (err instanceof ReplayInputError) return fail(err.message);
    if (source.kind === 'pg') return fail(`cannot read the shared history ${describeAuditError(err, source.url)}`);
    throw err;
  }
  return { policy: loaded.policy, policiesDir, traffic, window, now };
}

function oneOf(value: string | boolean | undefined, allowed: readonly string[], fallback: string): string | null {
  const text = typeof value === 'string' ? value : fallback;
  return allowed.includes(text) ? text : null;
}

function replayArgsProblem(values: Values, positionals: string[]): string | null {
  if (positionals.length > 0) return `unexpected argument "${positionals[0]}"`;
  if (typeof values.policies !== 'string') return '--policies DIR is required (the proposed policies)';
  if (oneOf(values.format, ['text', 'markdown', 'json'], 'text') === null) return '--format must be text, markdown or json';
  const limit = Number(typeof values.limit === 'string' ? values.limit : '50');
  if (!Number.isSafeInteger(limit) || limit < 1) return '--limit must be a whole number of rows, at least 1';
  return null;
}

/**
 * Runs a read of the recorded traffic. A failure there (a corrupt or truncated snapshot, a
 * PostgreSQL server gone) is bad input, exit 2: exit 1 is reserved for what
 * --fail-on-new-denials reports. The label is the file or the URL without its password.
 */
export async function readRecorded<T>(inputs: ReplayInput, command: string, read: (inputs: ReplayInput) => Promise<T>): Promise<T | number> {
  const { traffic } = inputs;
  try {
    return await read(inputs);
  } catch (err) {
    process.stderr.write(`tollgate policy ${command}: cannot read ${traffic.describeError(err)}\n`);
    return 2;
  } finally {
    await traffic.close().catch(() => undefined);
  }
}

/** `tollgate policy replay` */
export async function runPolicyReplay(args: string[]): Promise<number> {
  const parsed = parseOrUsage(
    args,
    {
      db: { type: 'string' }, 'audit-url': { type: 'string' }, 'audit-url-file': { type: 'string' }, policies: { type: 'string' }, since: { type: 'string' }, format: { type: 'string' },
      limit: { type: 'string' }, 'fail-on-new-denials': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
    REPLAY_HELP,
  );
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const problem = replayArgsProblem(values, positionals);
  if (problem !== null || typeof values.policies !== 'string') {
    process.stderr.write(`tollgate policy replay: ${problem ?? ''}\n\n${REPLAY_HELP}`);
    return 2;
  }
  const inputs = await openRecordedInputs(values, values.policies, typeof values.since === 'string' ? values.since : '7d', 'replay');
  if (typeof inputs === 'number') return inputs;
  const report = await readRecorded(inputs, 'replay', replayTraffic);
  if (typeof report === 'number') return report;
  const limit = Number(typeof values.limit === 'string' ? values.limit : '50');
  const format = oneOf(values.format, ['text', 'markdown', 'json'], 'text');
  const output = format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : format === 'markdown' ? formatMarkdown(report, limit) : formatText(report, limit);
  process.stdout.write(output);
  return values['fail-on-new-denials'] && report.summary.newly_denied.destinations > 0 ? 1 : 0;
}

/** `tollgate policy unused` */
export async function runPolicyUnused(args: string[]): Promise<number> {
  const parsed = parseOrUsage(
    args,
    {
      db: { type: 'string' }, 'audit-url': { type: 'string' }, 'audit-url-file': { type: 'string' }, policies: { type: 'string' },
      since: { type: 'string' }, format: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
    UNUSED_HELP,
  );
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const format = oneOf(values.format, ['text', 'json'], 'text');
  if (positionals.length > 0 || format === null) {
    const problem = format === null ? '--format must be text or json' : `unexpected argument "${positionals[0]}"`;
    process.stderr.write(`tollgate policy unused: ${problem}\n\n${UNUSED_HELP}`);
    return 2;
  }
  const dir = typeof values.policies === 'string' ? values.policies : DEFAULT_POLICIES;
  const inputs = await openRecordedInputs(values, dir, typeof values.since === 'string' ? values.since : '30d', 'unused');
  if (typeof inputs === 'number') return inputs;
  const report = await readRecorded(inputs, 'unused', unusedRules);
  if (typeof report === 'number') return report;
  process.stdout.write(format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : formatUnusedText(report));
  return 0;
}
