import { stringify } from 'csv-stringify/sync';
import { AUDIT_RECORD_FIELDS } from '../audit/query';
import type { AuditRecordJson } from '../audit/record-types';

export type ExportFormat = 'csv' | 'ndjson';

export const EXPORT_CONTENT_TYPES: Readonly<Record<ExportFormat, string>> = {
  csv: 'text/csv; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
};

/**
 * OWASP "CSV Injection": a spreadsheet runs a cell that starts with one of these as a formula,
 * and hosts, paths, reasons and errors come from whoever sends requests through the proxy.
 * A leading apostrophe makes the cell text. Only text cells: numbers are our own integers.
 */
const FORMULA_START = /^[=+\-@\t\r]/;

export function defuseCell(text: string): string {
  return FORMULA_START.test(text) ? `'${text}` : text;
}

type CsvCell = string | number;

/** Null as an empty cell, booleans as true/false, client groups joined with ";". */
function csvRow(record: AuditRecordJson): Record<string, CsvCell> {
  const row: Record<string, CsvCell> = {};
  for (const field of AUDIT_RECORD_FIELDS) {
    const value = record[field];
    if (value === null) row[field] = '';
    else if (typeof value === 'number') row[field] = value;
    else if (typeof value === 'boolean') row[field] = value ? 'true' : 'false';
    else if (Array.isArray(value)) row[field] = defuseCell(value.join(';'));
    else row[field] = defuseCell(value);
  }
  return row;
}

/**
 * CSV (RFC 4180: CRLF, quotes doubled by csv-stringify), one header row of the SPEC §4 field
 * names even when nothing matched. One string per batch of records.
 */
export async function* csvChunks(batches: AsyncIterable<AuditRecordJson[]>): AsyncGenerator<string, void, undefined> {
  const options = { columns: [...AUDIT_RECORD_FIELDS], record_delimiter: 'windows' } as const;
  yield stringify([], { ...options, header: true });
  for await (const batch of batches) {
    if (batch.length > 0) yield stringify(batch.map(csvRow), { ...options, header: false });
  }
}

/** One JSON record per line, exactly as /api/requests returns them. */
export async function* ndjsonChunks(batches: AsyncIterable<AuditRecordJson[]>): AsyncGenerator<string, void, undefined> {
  for await (const batch of batches) {
    if (batch.length > 0) yield batch.map((record) => `${JSON.stringify(record)}\n`).join('');
  }
}
