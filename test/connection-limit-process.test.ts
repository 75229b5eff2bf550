import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { withReader } from './helpers/audit-index-fixtures';
import { listenOn } from './helpers/proxy-harness';
import { listeningPorts, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';

/** Under this open-files limit the old code dropped 180 of 400 connections with no answer. */
const OPEN_FILES_LIMIT = 256;
const CLIENTS = 400;

/** What one client got: the status of its answer, or how its connection ended without one. */
type Outcome = { status: number } | { unanswered: string };

/** Send one proxied GET on a fresh connection; never rejects. */
function proxiedGet(proxyPort: number, originPort: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = connect({ port: proxyPort, host: '127.0.0.1' });
    let received = '';
    const finish = (how: string): void => {
      const status = /^HTTP\/1\.1 ([0-9]{3}) /.exec(received)?.[1];
      resolve(status ? { status: Number(status) } : { unanswered: how });
      socket.destroy();
    };
    socket.on('connect', () => socket.write(`GET http://127.0.0.1:${originPort}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    // A reset after the answer still counts as answered: the bytes were read first.
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? 'error'));
    socket.once('close', () => finish('closed'));
  });
}

describe('client connections under a low open-files limit', () => {
  let folder: ServeFolder;
  let origin: Server;
  let originPort: number;
  let proc: ServeProcess | null = null;
  /** Requests the origin holds until every client has an answer or is held there itself. */
  const held: ServerResponse[] = [];
  let onHeld: () => void = () => undefined;

  beforeAll(async () => {
    origin = createServer((req: IncomingMessage, res: ServerResponse) => {
      held.push(res);
      onHeld();
    });
    originPort = await listenOn(origin);
  });
  beforeEach(() => {
    folder = serveFolder('tollgate-maxconn-');
  });
  afterEach(() => {
    proc?.child.kill('SIGKILL');
    folder.remove();
  });
  afterAll(() => {
    origin.closeAllConnections();
    origin.close();
  });

  test(`${CLIENTS} connections at once under ulimit -n ${OPEN_FILES_LIMIT}: each is served or answered 503 and recorded`, async () => {
    proc = spawnServe(serveArgs(folder), {}, { openFilesLimit: OPEN_FILES_LIMIT });
    const { line: listening, proxyPort } = await listeningPorts(proc);
    // Derived from the limit, with room for two descriptors per connection and the reserve.
    expect(listening.open_files_limit).toBe(OPEN_FILES_LIMIT);
    const cap = listening.max_client_connections as number;
    expect(cap).toBeGreaterThanOrEqual(16);
    expect(cap).toBeLessThan(OPEN_FILES_LIMIT / 2);

    // The origin answers nothing until every connection is accounted for: served ones all hold
    // their descriptors at once, as under real load, and the rest must be answered meanwhile.
    let settled = 0;
    const release = (): void => {
      if (settled + held.length < CLIENTS) return;
      for (const res of held.splice(0)) res.end('ok');
    };
    onHeld = release;
    const outcomes = await Promise.all(
      Array.from({ length: CLIENTS }, () =>
        proxiedGet(proxyPort, originPort).then((outcome) => {
          settled += 1;
          release();
          return outcome;
        }),
      ),
    );

    const unanswered = outcomes.filter((o): o is { unanswered: string } => 'unanswered' in o);
    expect(unanswered).toEqual([]);
    const statuses = outcomes.map((o) => ('status' in o ? o.status : 0));
    const served = statuses.filter((s) => s === 200).length;
    const refused = statuses.filter((s) => s === 503).length;
    expect(served + refused).toBe(CLIENTS);
    expect(served).toBeGreaterThan(0);
    expect(served).toBeLessThanOrEqual(cap);

    proc.child.kill('SIGTERM');
    expect((await proc.exited).code).toBe(0);
    const rows = withReader(folder.dbFile, (db) => db.prepare('SELECT status, error FROM requests').all() as Array<{ status: number; error: string | null }>);
    expect(rows.filter((r) => r.status === 200)).toHaveLength(served);
    const refusals = rows.filter((r) => r.status === 503);
    expect(refusals).toHaveLength(refused);
    expect(refusals.every((r) => r.error?.startsWith('too_many_client_connections: ') === true)).toBe(true);
  }, 90_000);
});
