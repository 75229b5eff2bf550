import { parseArgs } from 'node:util';
import { ConfigError } from '../config-error';
import { MAX_COUNT, parseDuration, parseWholeNumber } from '../config';
import { AuditUrlError, describeAuditError, openAuditPool, redactAuditUrl, resolveAuditUrl } from '../fleet/audit-url';
import { DEFAULT_PRUNE_BATCH, pruneHistory } from '../fleet/pg-prune';
import fs from 'node:fs';
import { auditLogDir, listSegments } from '../audit/log/segment-files';
import { AuditKeyError, HEAD_HEX, readAuditKey, verifyChain } from '../audit/log/verify-chain';
import type { VerifyReport } from '../audit/log/verify-chain';
import { verifyHistory } from '../fleet/pg-verify';
import { trafficSource } from './traffic-source';

export const PRUNE_HELP = `usage: tollgate audit prune (--audit-url URL | --audit-url-file FILE) --older-than DURATION
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
    const batchSize = parseWholeNumber(values['batch-size'] ?? String(DEFAULT_PRUNE_BATCH), '--batch-size', 1, MAX_COUNT);
    return { url, olderThanMs, batchSize };
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

export const VERIFY_HELP = `usage: tollgate audit verify --db FILE [--expect-head HASH] [--audit-key FILE]
       tollgate audit verify (--audit-url URL | --audit-url-file FILE) [--expect-head HASH ...] [--audit-key FILE]

Walk the audit log beside --db FILE (its segments, in order) and recompute the chain of hashes
every entry carries. Exit 0 and the count when the chain is whole (and ends at --expect-head, a
head witnessed elsewhere: GET /api/audit/head, or an earlier run of this command); exit 1 with
"record N: ..." at the first break (an edited entry, entries removed or reordered, a segment
missing, damage); 2 for bad input. --audit-key FILE (or TOLLGATE_AUDIT_KEY): the key serve
chained with (HMAC-SHA256). Entries written before the chain existed are counted apart, not
verified.

With --audit-url (or TOLLGATE_AUDIT_URL), the shared history in PostgreSQL: every replica's chain
from the copy its shipper keeps there, and every record checked against the entries that made it
(an edited, deleted or inserted record is a break). Each --expect-head must be met along one of
the chains (a replica's head witnessed earlier; the copy may have moved on since).
`;

interface VerifyArgs {
  /** The local log's folder (--db FILE), or the shared history (--audit-url). */
  store: { kind: 'log'; dir: string } | { kind: 'pg'; url: string };
  expectHeads: string[];
  key: Buffer | null;
}

function verifyArgs(args: string[]): VerifyArgs | number {
  const fail = (message: string): number => {
    process.stderr.write(`tollgate audit verify: ${message}\n\n${VERIFY_HELP}`);
    return 2;
  };
  try {
    const { values, positionals } = parseArgs({
      args, allowPositionals: true, strict: true,
      options: {
        db: { type: 'string' }, 'audit-url': { type: 'string' }, 'audit-url-file': { type: 'string' },
        'expect-head': { type: 'string', multiple: true }, 'audit-key': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(VERIFY_HELP);
      return 0;
    }
    if (positionals.length > 0) return fail(`unexpected argument "${positionals[0]}"`);
    const expectHeads = values['expect-head'] ?? [];
    const badHead = expectHeads.find((head) => !HEAD_HEX.test(head));
    if (badHead !== undefined) return fail('--expect-head: expected 64 hex digits (a SHA-256 hash)');
    const keyFile = values['audit-key'] ?? (process.env.TOLLGATE_AUDIT_KEY || undefined);
    const key = keyFile === undefined ? null : readAuditKey(keyFile);
    const heads = expectHeads.map((head) => head.toLowerCase());
    const source = trafficSource(values);
    if (source.kind === 'invalid') return fail(source.message);
    if (source.kind === 'pg') return { store: source, expectHeads: heads, key };
    if (heads.length > 1) return fail('--expect-head: one head for a local log (its chain has one end)');
    const dir = auditLogDir(source.file);
    if (!fs.existsSync(source.file) && !fs.existsSync(dir)) return fail(`--db ${source.file}: no such store (neither the file nor its log folder exists)`);
    if (listSegments(dir).length === 0) return fail(`--db ${source.file}: the store has no audit log (${dir} holds no segment)`);
    return { store: { kind: 'log', dir }, expectHeads: heads, key };
  } catch (err) {
    if (err instanceof AuditKeyError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS')) {
      return fail((err as Error).message);
    }
    throw err;
  }
}

/** The one line `audit verify` prints for a whole chain. */
export function describeVerified(report: VerifyReport): string {
  const n = (v: number): string => v.toLocaleString('en-US');
  const records = report.firstId === null ? '' : ` (records ${report.firstId}..${report.lastId})`;
  const extra = [
    report.fromCheckpoint === null ? null : `from the checkpoint after record ${report.fromCheckpoint} (older segments removed)`,
    report.unchained === 0 ? null : `${n(report.unchained)} entries written before the chain not verified`,
  ].filter((part) => part !== null);
  return `verified ${n(report.verified)} entries${records}, head ${report.head.hash.toString('hex')}${extra.length === 0 ? '' : `; ${extra.join('; ')}`}`;
}

/** `tollgate audit verify` */
export async function runAuditVerify(args: string[]): Promise<number> {
  const parsed = verifyArgs(args);
  if (typeof parsed === 'number') return parsed;
  if (parsed.store.kind === 'pg') return verifyShared(parsed.store.url, parsed);
  let report: VerifyReport;
  try {
    report = verifyChain(parsed.store.dir, { key: parsed.key });
  } catch (err) {
    process.stderr.write(`tollgate audit verify: cannot read the log: ${(err as Error).message}\n`);
    return 2;
  }
  if (report.break !== null) {
    const at = report.break.id === null ? 'log' : `record ${report.break.id}`;
    process.stdout.write(`${at}: ${report.break.message}\n`);
    process.stdout.write(`verified before the break: ${report.verified} entries\n`);
    return 1;
  }
  const head = report.head.hash.toString('hex');
  const expectHead = parsed.expectHeads[0] ?? null;
  if (expectHead !== null && !report.headRecomputed) {
    process.stdout.write(`record ${report.head.id}: the log holds no entry after its opening checkpoint, so nothing recomputes `
      + `the expected head ${expectHead} (a checkpoint is taken as written)\n`);
    return 1;
  }
  if (expectHead !== null && expectHead !== head) {
    process.stdout.write(`record ${report.head.id}: the chain ends at head ${head}, not at the expected head ${expectHead} `
      + '(entries after the witnessed head removed, or a chain rewritten)\n');
    return 1;
  }
  process.stdout.write(`${describeVerified(report)}\n`);
  return 0;
}

/** --audit-url: one line per replica's chain; exit 1 at any break or expected head not met. */
async function verifyShared(url: string, parsed: VerifyArgs): Promise<number> {
  const pool = openAuditPool(url, { max: 1, applicationName: 'tollgate audit verify' });
  try {
    const result = await verifyHistory(pool, { key: parsed.key, expectHeads: parsed.expectHeads });
    let failed = false;
    if (result.stores.length === 0) process.stdout.write('no replica has shipped to this history yet\n');
    for (const store of result.stores) {
      const name = `${store.node} (store ${store.storeId})`;
      const { report } = store;
      if (report.break !== null) {
        failed = true;
        const local = report.break.id === null ? '' : ` (local ${report.break.id})`;
        const at = store.breakRowId !== null ? `record ${store.breakRowId}${local}` : report.break.id === null ? 'chain' : `local record ${report.break.id}`;
        process.stdout.write(`${name}: ${at}: ${report.break.message}\n`);
        continue;
      }
      const before = store.rowsBeforeChain === 0 ? '' : `; ${store.rowsBeforeChain.toLocaleString('en-US')} records shipped before the chain's copy not verified`;
      process.stdout.write(`${name}: ${describeVerified(report)}; ${store.rows.toLocaleString('en-US')} records checked${before}\n`);
    }
    for (const head of result.headsNotMet) {
      failed = true;
      process.stdout.write(`expected head ${head}: no chain passes through it (entries removed, or a chain rewritten)\n`);
    }
    return failed ? 1 : 0;
  } catch (err) {
    process.stderr.write(`tollgate audit verify: ${describeAuditError(err, url)}\n`);
    return 2;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
