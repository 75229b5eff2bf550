import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseRequestFilters } from '../../audit/query';
import type { RawRequestFilters, SearchPace } from '../../audit/query';
import type { AuditReader } from '../../audit/reader';
import { csvChunks, EXPORT_CONTENT_TYPES, ndjsonChunks } from '../export-format';
import type { ExportFormat } from '../export-format';
import { EXPORT_QUERY_SCHEMA } from '../query-schema';

interface ExportQuery extends RawRequestFilters {
  format?: ExportFormat;
}

export interface ExportRoutesOptions {
  reader: AuditReader;
  clock: () => Date;
  /** How searches pace themselves (tests shrink it); absent: the defaults. */
  pace?: SearchPace;
  /**
   * Who looked (issue 19): called with the export's format and filters before the first byte is
   * sent. It throws when the event cannot be recorded, and then nothing is exported.
   */
  recordExport: (request: FastifyRequest, detail: { format: ExportFormat; query: string }) => Promise<void>;
}

/** `20250301T120000Z`: sorts by time and holds no character a file system dislikes. */
function fileStamp(now: Date): string {
  return now.toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

/**
 * GET /api/requests/export: the whole filtered set, streamed. The generator reads one batch
 * per pull, and Readable.from pulls only when the socket has drained (a byte stream with the
 * default 16 KiB high-water mark), so memory stays at about one batch however large the set.
 */
export function registerExportRoutes(app: FastifyInstance, opts: ExportRoutesOptions): void {
  app.get<{ Querystring: ExportQuery }>(
    '/api/requests/export',
    { schema: { querystring: EXPORT_QUERY_SCHEMA } },
    async (request, reply) => {
      const { format = 'csv', ...raw } = request.query;
      const now = opts.clock();
      const filters = parseRequestFilters(raw, now);
      await opts.recordExport(request, { format, query: new URLSearchParams(raw as Record<string, string>).toString() });
      const batches = opts.reader.exportRecords(filters, opts.pace);
      const chunks = format === 'csv' ? csvChunks(batches) : ndjsonChunks(batches);
      return reply
        .type(EXPORT_CONTENT_TYPES[format])
        .header('content-disposition', `attachment; filename="tollgate-requests-${fileStamp(now)}.${format}"`)
        .send(Readable.from(chunks, { objectMode: false }));
    },
  );
}
