import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AuditCompletion, AuditOpen } from '../../src/audit/record-types';
import { readLog } from '../../src/audit/log/segment-reader';
import type { LogDamage, LogItem } from '../../src/audit/log/segment-reader';
import { prepareEntry } from '../../src/audit/log/entry-codec';
import { decodePrepared } from '../../src/audit/log/entry-decode';
import type { LogEntry } from '../../src/audit/log/entry-codec';
import { decodeBatchFrame, encodeBatchFrame } from '../../src/cluster/wire';
import type { NewEntry } from '../../src/audit/log/entry-codec';

export const STARTED = new Date('2025-03-01T12:00:00.123Z');

/** A real temp folder per test; removed by the returned function. */
export function tempLogDir(): { dir: string; remove: () => void } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-log-'));
  return { dir: path.join(root, 'audit-log'), remove: () => fs.rmSync(root, { recursive: true, force: true }) };
}

export function openFacts(n: number, overrides: Partial<AuditOpen> = {}): AuditOpen {
  return {
    startedAt: new Date(STARTED.getTime() + n), clientIp: '10.0.8.7', clientPort: 50000 + (n % 10000),
    clients: ['ci-runners'], user: null, kind: 'connect', method: 'CONNECT', scheme: null,
    host: `host${n}.example.com`, port: 443, path: null, resolvedIp: '203.0.113.9', decision: 'allow',
    wouldDeny: false, rule: 'ci', ruleSource: 'policies/10-ci.yaml:3', reason: 'matched rule ci',
    policyVersion: 'sha256:abc', ...overrides,
  };
}

export function completion(n: number, overrides: Partial<AuditCompletion> = {}): AuditCompletion {
  return { endedAt: new Date(STARTED.getTime() + n + 500), status: 200, bytesUp: n, bytesDown: 2 * n, error: null, ...overrides };
}

/** Entries as a `--workers` worker sends them and the primary reads them (cluster/wire.ts). */
export function acrossWire(entries: readonly NewEntry[]): LogEntry[] {
  return decodeBatchFrame(encodeBatchFrame(1, entries.map(prepareEntry))).entries.map(decodePrepared);
}

export function opens(from: number, count: number): NewEntry[] {
  return Array.from({ length: count }, (_, i) => ({ type: 'open' as const, open: openFacts(from + i) }));
}

export interface ReadBack {
  entries: Array<{ entry: LogEntry; segment: number; offset: number }>;
  damage: LogDamage[];
}

export function readAll(dir: string, items: Iterable<LogItem> = readLog(dir)): ReadBack {
  const back: ReadBack = { entries: [], damage: [] };
  for (const item of items) {
    if (item.kind === 'damage') back.damage.push(item.damage);
    else if (item.kind === 'entry') back.entries.push({ entry: item.entry, ...item.position });
  }
  return back;
}

/** Overwrites bytes of a file in place, as a power cut or a bad sector would leave them. */
export function overwrite(file: string, offset: number, bytes: Buffer): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}
