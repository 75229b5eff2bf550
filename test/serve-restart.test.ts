import type { Server, Socket } from 'node:net';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { heldCompletionsFile } from '../src/audit/held-completions-file';
import { auditLogDir } from '../src/audit/log/segment-files';
import { RecordEnd } from '../src/audit/record-types';
import { catchUpIndex } from './helpers/audit-index';
import { withReader } from './helpers/audit-index-fixtures';
import { limitFileSize } from './helpers/file-size-limit';
import { parseHead, rawConnect, readUntil } from './helpers/proxy-harness';
import { startEchoServer, startRawOrigin } from './helpers/raw-origin';
import { listeningPorts, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { LogLine, ServeFolder, ServeProcess } from './helpers/serve-process';

/**
 * SPEC §4/§6: every record is completed, even when the run that opened it could not complete
 * it: killed (kill -9), or stopped while its audit log could not be written.
 */

interface Row {
  id: number;
  kind: string;
  started_at_ms: number;
  ended_at_ms: number | null;
  status: number | null;
  bytes_up: number;
  bytes_down: number;
  error: string | null;
}

/** The size of the biggest file in a folder: the newest log segment, here. */
/** The largest file's size (the `spool/` folder beside the segments is not one). */
function largestFile(dir: string): number {
  const stats = readdirSync(dir).map((name) => statSync(path.join(dir, name)));
  return Math.max(...stats.filter((stat) => stat.isFile()).map((stat) => stat.size));
}

function readRecords(dbFile: string): Row[] {
  return withReader(dbFile, (db) => db.prepare('SELECT id, kind, started_at_ms, ended_at_ms, status, bytes_up, bytes_down, error FROM requests ORDER BY id').all() as Row[]);
}

describe('records a run could not complete are completed by the next start', () => {
  let folder: ServeFolder;
  let dbFile: string;
  let echo: Server;
  let echoPort: number;
  const running: ServeProcess[] = [];
  const sockets: Socket[] = [];

  beforeAll(async () => {
    ({ server: echo, port: echoPort } = await startEchoServer());
  });
  beforeEach(() => {
    folder = serveFolder('tollgate-restart-');
    dbFile = folder.dbFile;
  });
  afterEach(() => {
    for (const p of running.splice(0)) p.child.kill('SIGKILL');
    for (const s of sockets.splice(0)) s.destroy();
    folder.remove();
  });
  afterAll(() => echo.close());

  async function start(): Promise<{ proc: ServeProcess; proxyPort: number; listening: LogLine }> {
    const proc = spawnServe(serveArgs(folder));
    running.push(proc);
    const { line, proxyPort } = await listeningPorts(proc);
    return { proc, proxyPort, listening: line };
  }

  /** An established tunnel to the echo server, with one round trip through it. */
  async function openTunnel(proxyPort: number): Promise<Socket> {
    const socket = await rawConnect(proxyPort);
    sockets.push(socket);
    socket.on('error', () => undefined);
    socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\n\r\n`);
    expect(parseHead(await readUntil(socket, '\r\n\r\n')).status).toBe(200);
    socket.write('ping');
    await readUntil(socket, 'ping');
    return socket;
  }

  test('after kill -9, the next start completes the open tunnel and request as proxy_restarted and says how many', async () => {
    const first = await start();
    await openTunnel(first.proxyPort);
    // A GET its origin never answers: acknowledged (forwarded, so its record is on disk), open.
    const silent = await startRawOrigin(() => undefined);
    const client = await rawConnect(first.proxyPort);
    sockets.push(client);
    client.on('error', () => undefined);
    client.write(`GET http://127.0.0.1:${silent.port}/never HTTP/1.1\r\nHost: x\r\n\r\n`);
    await silent.requests(1);
    first.proc.child.kill('SIGKILL');
    await first.proc.exited;
    silent.server.close();
    // Both records are in the log; applied to the index as the next start would, both are open.
    catchUpIndex(dbFile);
    expect(readRecords(dbFile).map((r) => r.ended_at_ms)).toEqual([null, null]);

    const second = await start();
    expect(second.listening.records_closed_at_start).toBe(2);
    const line = await second.proc.waitForLog('completed records an earlier run left open (error proxy_restarted, ended at its last sign of life)');
    expect(line).toMatchObject({ records_closed_at_start: 2, held_completions_written: 0 });
    const rows = readRecords(dbFile);
    expect(rows.map((r) => [r.kind, r.error])).toEqual([['connect', RecordEnd.proxyRestarted], ['http', RecordEnd.proxyRestarted]]);
    // Ended at the last sign of life of the killed run (the newest record's start), not now.
    const newestStart = Math.max(...rows.map((r) => r.started_at_ms));
    for (const row of rows) expect(row.ended_at_ms).toBe(newestStart);
    expect(new Date(String(line.ended_at)).getTime()).toBe(newestStart);
  });

  test('SIGTERM while the audit log cannot be written exits 1; the held completion is written at the next start', async () => {
    const first = await start();
    const tunnel = await openTunnel(first.proxyPort);
    // A real write failure: the served process may not grow any file past the log's current
    // size (RLIMIT_FSIZE, soft), so every append fails with EFBIG as a full disk fails with ENOSPC.
    const pid = first.proc.child.pid as number;
    limitFileSize(pid, largestFile(auditLogDir(dbFile)));
    first.proc.child.kill('SIGTERM');
    await first.proc.waitForLog('draining');
    // The tunnel ends cleanly during the drain; its completion cannot be written, so it is held.
    tunnel.end();
    // The whole exit, so that a signal shows if it ever dies of one instead.
    expect(await first.proc.exited).toEqual({ code: 1, signal: null });
    const saved = first.proc.lines.find((l) => l.msg === 'saved held completions beside the audit log; the next start writes them');
    expect(saved).toMatchObject({ held_completions: 1, file: heldCompletionsFile(dbFile) });
    expect(existsSync(String(saved?.file))).toBe(true);
    catchUpIndex(dbFile);
    expect(readRecords(dbFile)[0].ended_at_ms).toBeNull();

    const second = await start();
    expect(second.listening.records_closed_at_start).toBe(0);
    const [row] = readRecords(dbFile);
    // The real end, not proxy_restarted: bytes and status as the tunnel ended.
    expect(row).toMatchObject({ status: 200, bytes_up: 4, bytes_down: 4, error: null });
    expect(row.ended_at_ms).not.toBeNull();
    expect(existsSync(String(saved?.file))).toBe(false);
  });
});
