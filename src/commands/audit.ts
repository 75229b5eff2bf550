import { parseArgs } from 'node:util';
import { ConfigError } from '../config-error';
import { parseDuration } from '../config';
import { AuditUrlError, describeAuditError, openAuditPool, redactAuditUrl, resolveAuditUrl } from '../fleet/audit-url';
import { DEFAULT_PRUNE_BATCH, pruneHistory } from '../fleet/pg-prune';

const PRUNE_HELP = `usage: tollgate audit prune (--audit-url URL | --audit-url-file FILE) --older-than DURATION
                           [--batch-size N]

Delete the shared history's records (PostgreSQL) that started more than DURATION ago (400d, 12h,
90m, ...), ${DEFAULT_PRUNE_BATCH.toLocaleString('en-US')} per transaction by default, so shippers are never held up for long. The per-minute
counts are adjusted in the same transactions; the first-seen tables are kept. The URL may also
come from TOLLGATE_AUDIT_URL (prefer it, or the file, to keep the password out of the process list).
Exit 0 done (prints what was deleted), 1 PostgreSQL unreachable or failing, 2 bad input.
`;

interface PruneArgs {
  url: string;
  olderThanMs: number;
  batchSize: number;
}

function pruneArgs(args: string[]): PruneArgs | number {
  const fail = (message: string): number => {
    process.stderr.write(`tollgate audit prune: ${message}\n\n${PRUNE_HELP}`);
    return 2;
  };
  try {
    const { values, positionals } = parseArgs({
      args, allowPositionals: true, strict: true,
      options: {
        'audit-url': { type: 'string' }, 'audit-url-file': { type: 'string' }, 'older-than': { type: 'string' },
        'batch-size': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(PRUNE_HELP);
      return 0;
    }
    if (positionals.length > 0) return fail(`unexpected argument "${positionals[0]}"`);
    const url = resolveAuditUrl({ url: values['audit-url'], file: values['audit-url-file'], env: process.env.TOLLGATE_AUDIT_URL });
    if (url === null) return fail('--audit-url URL, --audit-url-file FILE or TOLLGATE_AUDIT_URL is required');
    if (values['older-than'] === undefined) return fail('--older-than DURATION is required (e.g. 400d)');
    const olderThanMs = parseDuration(values['older-than'], '--older-than');
    // Zero would delete the whole history, shipped a moment ago included: never what a typo meant.
    if (olderThanMs <= 0) return fail('--older-than must be more than 0');
    const batchText = values['batch-size'] ?? String(DEFAULT_PRUNE_BATCH);
    if (!/^[1-9][0-9]{0,6}$/.test(batchText)) return fail(`--batch-size: expected a whole number from 1, got "${batchText}"`);
    return { url, olderThanMs, batchSize: Number(batchText) };
  } catch (err) {
    if (err instanceof AuditUrlError || err instanceof ConfigError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      return fail((err as Error).message);
    }
    throw err;
  }
}

/** `tollgate audit prune` */
export async function runAuditPrune(args: string[]): Promise<number> {
  const parsed = pruneArgs(args);
  if (typeof parsed === 'number') return parsed;
  const cutoffMs = Date.now() - parsed.olderThanMs;
  const pool = openAuditPool(parsed.url, { max: 1, applicationName: 'tollgate audit prune' });
  try {
    const result = await pruneHistory(pool, { cutoffMs, batchSize: parsed.batchSize });
    const n = (v: number): string => v.toLocaleString('en-US');
    process.stdout.write(
      `pruned ${n(result.deleted)} records started before ${new Date(cutoffMs).toISOString()} from ${redactAuditUrl(parsed.url)} ` +
        `in ${n(result.batches)} batches, ${(result.elapsedMs / 1000).toFixed(2)} s; ${n(result.minutesRemoved)} empty minutes removed from the stats\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`tollgate audit prune: ${describeAuditError(err, parsed.url)}\n`);
    return 1;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
