import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Pool } from 'pg';
import { parseRequestFilters } from '../../src/audit/filters';
import type { RawRequestFilters } from '../../src/audit/filters';
import { PgAuditReader } from '../../src/fleet/pg-reader';
import type { GeneratedHistory } from './generate-pg';
import { REPO } from './repo';

/**
 * Part 3 of bench:fleet: the admin API's reads on the generated history, through the same
 * PgAuditReader `tollgate admin` serves (first page of 100, as the UI asks), a day's stats, and
 * `policy replay` as a process over the last day (a tenth of the history).
 */

const RUNS = 3;

async function timed<T>(work: () => Promise<T>): Promise<{ ms: number[]; value: T }> {
  const ms: number[] = [];
  let value: T | undefined;
  for (let i = 0; i < RUNS; i += 1) {
    const started = performance.now();
    value = await work();
    ms.push(performance.now() - started);
  }
  return { ms, value: value as T };
}

const fmt = (ms: number[]): string => `${ms[0].toFixed(0)} / ${Math.min(...ms.slice(1)).toFixed(0)}`;

const REPLAY_POLICY = `version: 1
settings:
  default: deny
rules:
  - name: package-registries
    action: allow
    hosts: ["**.npmjs.org", "**.pypi.org", "**.docker.io"]
  - name: github
    action: allow
    hosts: ["**.github.com"]
  - name: cloud
    action: allow
    hosts: ["**.amazonaws.com", "**.googleapis.com"]
`;

function runCli(args: string[]): Promise<{ ms: number; code: number | null; out: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(REPO, 'dist', 'cli.js'), ...args], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ ms: performance.now() - started, code, out: stdout + stderr });
    });
  });
}

export async function measureQueries(pool: Pool, url: string, history: GeneratedHistory, scratch: string, log: (s: string) => void): Promise<string[]> {
  const reader = new PgAuditReader(pool);
  const now = new Date(history.lastMs);
  const filters: Array<[string, RawRequestFilters]> = [
    ['(none)', {}],
    [`host=${history.topHost} (top)`, { host: history.topHost }],
    [`host=${history.rareHost} (rare)`, { host: history.rareHost }],
    ['host=**.sentry.io (glob)', { host: '**.sentry.io' }],
    ['client=10.0.0.7', { client: '10.0.0.7' }],
    ['client=10.0.0.0/24', { client: '10.0.0.0/24' }],
    ['client=batch (group)', { client: 'batch' }],
    ['decision=deny', { decision: 'deny' }],
    ['would_deny=true', { would_deny: 'true' }],
    ['status=403', { status: '403' }],
    ['q=pastebin', { q: 'pastebin' }],
    ['since=24h&decision=deny', { since: '24h', decision: 'deny' }],
    ['until=5d ago&host=top', { until: new Date(history.lastMs - 5 * 86_400_000).toISOString(), host: history.topHost }],
    ['node=replica-b', { node: 'replica-b' } as RawRequestFilters],
  ];
  const lines = [`First page (100 records, newest first) through PgAuditReader, first run / best of the next ${RUNS - 1}, ms:`, '', '| filter | ms | records | partial |', '| --- | --- | --- | --- |'];
  for (const [name, raw] of filters) {
    const parsed = parseRequestFilters(raw, now);
    const { ms, value } = await timed(() => reader.listRequests({ limit: 100, filters: parsed }));
    lines.push(`| ${name} | ${fmt(ms)} | ${value.items.length} | ${value.partial} |`);
    log(`${name}: ${fmt(ms)} ms`);
  }
  const day = { sinceMs: history.lastMs - 86_400_000, untilMs: history.lastMs };
  const stats = await timed(() => reader.stats(day, 10));
  lines.push('', `A day's stats (/api/stats, ${stats.value.total.toLocaleString('en')} records): ${fmt(stats.ms)} ms.`);
  log(`stats: ${fmt(stats.ms)} ms`);
  const week = { sinceMs: history.lastMs - 7 * 86_400_000, untilMs: history.lastMs };
  const weekStats = await timed(() => reader.stats(week, 10));
  lines.push(`Seven days' stats (${weekStats.value.total.toLocaleString('en')} records): ${fmt(weekStats.ms)} ms.`);
  const policies = path.join(scratch, 'replay-policies');
  mkdirSync(policies, { recursive: true });
  writeFileSync(path.join(policies, 'proposed.yaml'), REPLAY_POLICY);
  const hoursAgo = Math.ceil((Date.now() - history.lastMs) / 3_600_000) + 24;
  const replay = await runCli(['policy', 'replay', '--audit-url', url, '--policies', policies, '--since', `${hoursAgo}h`, '--format', 'json']);
  const replayed = /"in_window"\s*:\s*(\d+)/.exec(replay.out)?.[1] ?? '?';
  lines.push(`\`policy replay --audit-url\` over the last day (${replayed} records): ${(replay.ms / 1000).toFixed(1)} s wall clock (exit ${replay.code}).`);
  log(`replay: ${replay.ms.toFixed(0)} ms, exit ${replay.code}`);
  return lines;
}
