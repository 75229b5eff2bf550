import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import { createServer } from 'node:net';
import { TargetReason } from '../src/request/target';
import { listenOn, parseHead, rawConnect, readAll, readUntil, startOrigin, startProxy } from './helpers/proxy-harness';
import type { Origin, ProxyHarness } from './helpers/proxy-harness';
import { PROXY_TEST_HOSTS, PROXY_TEST_POLICY } from './helpers/policies';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: number;
}

/** Send raw bytes and read one response of known framing (Content-Length). */
async function exchange(port: number, request: string): Promise<ReturnType<typeof parseHead>> {
  const socket = await rawConnect(port);
  socket.write(request);
  const text = await readAll(socket);
  return parseHead(text);
}

describe('absolute-URI HTTP forwarding', () => {
  let proxy: ProxyHarness;
  let origin: Origin;
  const seen: Seen[] = [];

  beforeAll(async () => {
    proxy = await startProxy({ policies: { 'policy.yaml': PROXY_TEST_POLICY }, hosts: PROXY_TEST_HOSTS });
    origin = await startOrigin((req, res) => {
      let body = 0;
      req.on('data', (chunk: Buffer) => (body += chunk.length));
      req.on('end', () => {
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body });
        if (req.url?.startsWith('/big')) {
          res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
          res.end(Buffer.alloc(3 * 1024 * 1024, 7));
          return;
        }
        res.writeHead(200, {
          'Content-Type': 'text/plain',
          Connection: 'keep-alive, X-Origin-Hop',
          'X-Origin-Hop': 'must not reach the client',
          'Keep-Alive': 'timeout=5',
          'X-End-To-End': 'kept',
        });
        res.end(`got ${body}`);
      });
    });
  });
  afterAll(async () => {
    await proxy.close();
    await origin.close();
  });
  beforeEach(() => (seen.length = 0));

  test('the URI host is checked and sent upstream as Host, whatever Host the client sent', async () => {
    const response = await exchange(
      proxy.port,
      `GET http://origin.test:${origin.port}/a/b?q=1 HTTP/1.1\r\nHost: paste.test\r\nConnection: close\r\n\r\n`,
    );
    expect(response.status).toBe(200);
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/a/b?q=1' });
    expect(seen[0].headers.host).toBe(`origin.test:${origin.port}`);
    const record = await proxy.waitForRecord((r) => r.kind === 'http' && r.path === '/a/b' && r.ended_at !== null);
    expect(record).toMatchObject({ decision: 'allow', rule: 'origin', status: 200, scheme: 'http', method: 'GET', host: 'origin.test' });
    expect(record.bytes_down).toBe('got 0'.length);
  });

  test('hop-by-hop headers, including those named in Connection, are stripped both ways', async () => {
    const socket = await rawConnect(proxy.port);
    socket.write(
      `GET http://origin.test:${origin.port}/hop HTTP/1.1\r\nHost: x\r\n` +
        'Connection: close, X-Client-Hop\r\nX-Client-Hop: secret\r\nProxy-Connection: keep-alive\r\n' +
        'Proxy-Authorization: Basic dXNlcjpodW50ZXIy\r\nKeep-Alive: timeout=9\r\nTE: trailers\r\nUpgrade: websocket\r\n' +
        'X-End-To-End: yes\r\n\r\n',
    );
    const response = parseHead(await readAll(socket));
    const names = seen[0].rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const hop of ['x-client-hop', 'proxy-connection', 'proxy-authorization', 'keep-alive', 'te', 'upgrade']) {
      expect(names).not.toContain(hop);
    }
    expect(seen[0].headers['x-end-to-end']).toBe('yes');
    expect(response.headers['x-origin-hop']).toBeUndefined();
    expect(response.headers['keep-alive']).toBeUndefined();
    expect(response.headers['x-end-to-end']).toBe('kept');
  });

  test('proxy credentials are neither forwarded nor written to the audit database', async () => {
    await exchange(
      proxy.port,
      `GET http://origin.test:${origin.port}/creds HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic c2VjcmV0LXVzZXI6czNjcjN0LXBhc3M=\r\nConnection: close\r\n\r\n`,
    );
    await proxy.waitForRecord((r) => r.path === '/creds' && r.ended_at !== null);
    expect(JSON.stringify(seen[0].rawHeaders)).not.toContain('c2VjcmV0');
    await proxy.checkpointAudit();
    const bytes = readFileSync(path.join(proxy.dir, 'audit.db')).toString('latin1');
    expect(bytes).toContain('/creds');
    expect(bytes).not.toContain('c2VjcmV0');
    expect(bytes).not.toContain('s3cr3t-pass');
  });

  test('each request on a keep-alive connection is decided on its own', async () => {
    const socket = await rawConnect(proxy.port);
    socket.write(`GET http://origin.test:${origin.port}/one HTTP/1.1\r\nHost: x\r\n\r\n`);
    const first = await readUntil(socket, 'got 0');
    expect(parseHead(first).status).toBe(200);
    socket.write('GET http://paste.test/two HTTP/1.1\r\nHost: x\r\n\r\n');
    const second = await readUntil(socket, '\n', );
    const secondFull = second.includes('deny-paste:') ? second : second + (await readUntil(socket, 'paste.test'));
    expect(parseHead(secondFull).status).toBe(403);
    socket.write(`GET http://origin.test:${origin.port}/three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const third = await readAll(socket);
    expect(third).toContain('got 0');
    expect(seen.map((s) => s.url)).toEqual(['/one', '/three']);
  });

  test('request and response bodies stream through and are counted', async () => {
    const socket = await rawConnect(proxy.port);
    const body = Buffer.alloc(2 * 1024 * 1024, 1);
    socket.write(
      `POST http://origin.test:${origin.port}/big HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
    );
    socket.write(body);
    const text = await readAll(socket);
    expect(parseHead(text).status).toBe(200);
    expect(seen[0].body).toBe(body.length);
    const record = await proxy.waitForRecord((r) => r.path === '/big' && r.ended_at !== null);
    expect(record.bytes_up).toBe(body.length);
    expect(record.bytes_down).toBe(3 * 1024 * 1024);
  });

  test('a chunked request body is forwarded chunked', async () => {
    const socket = await rawConnect(proxy.port);
    socket.write(
      `POST http://origin.test:${origin.port}/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n` +
        '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
    );
    const text = await readAll(socket);
    expect(text).toContain('got 11');
  });

  test('Expect: 100-continue is met by the proxy and not forwarded to the destination', async () => {
    const socket = await rawConnect(proxy.port);
    socket.write(
      `PUT http://origin.test:${origin.port}/expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
    );
    expect(await readUntil(socket, '\r\n\r\n')).toContain('100 Continue');
    socket.write('hello');
    expect(await readAll(socket)).toContain('got 5');
    expect(seen[0].headers.expect).toBeUndefined();
    expect(seen[0].headers['content-length']).toBe('5');
  });

  test('a denied request gets 403 with the X-Tollgate headers', async () => {
    const response = await exchange(proxy.port, 'GET http://paste.test/x HTTP/1.1\r\nHost: paste.test\r\nConnection: close\r\n\r\n');
    expect(response.status).toBe(403);
    expect(response.headers['x-tollgate-decision']).toBe('deny');
    expect(response.headers['x-tollgate-rule']).toBe('deny-paste');
    expect(response.body).toContain('paste.test:80');
    const record = await proxy.waitForRecord((r) => r.id === Number(response.headers['x-tollgate-request-id']));
    expect(record).toMatchObject({ kind: 'http', path: '/x', decision: 'deny', status: 403 });
  });

  test('userinfo in the URI does not change the destination: allowed@evil goes to evil', async () => {
    const response = await exchange(
      proxy.port,
      `GET http://origin.test@paste.test:${origin.port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
    );
    expect(response.status).toBe(403);
    expect(response.headers['x-tollgate-rule']).toBe('deny-paste');
    expect(seen).toHaveLength(0);
  });

  const refused: Array<[string, string, string]> = [
    ['origin-form', 'GET /path HTTP/1.1\r\nHost: origin.test\r\n\r\n', TargetReason.originForm],
    ['an https:// URI', 'GET https://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n', TargetReason.httpsUri],
    ['port 0', 'GET http://origin.test:0/ HTTP/1.1\r\nHost: x\r\n\r\n', TargetReason.badPort],
  ];
  test.each(refused)('%s gets 400 and a record', async (_name, request, reason) => {
    const response = await exchange(proxy.port, request.replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n'));
    expect(response.status).toBe(400);
    expect(response.body).toContain(reason);
    const record = await proxy.waitForRecord((r) => r.id === Number(response.headers['x-tollgate-request-id']));
    expect(record).toMatchObject({ status: 400, decision: 'deny', reason });
    expect(seen).toHaveLength(0);
  });

  test('both Content-Length and Transfer-Encoding get 400 and nothing is forwarded', async () => {
    const response = await exchange(
      proxy.port,
      `POST http://origin.test:${origin.port}/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    );
    expect(response.status).toBe(400);
    expect(seen).toHaveLength(0);
    expect(proxy.records()[0]).toMatchObject({ status: 400, decision: 'deny' });
  });

  test('an unreachable origin gets 502 with the reason', async () => {
    const closed = createServer();
    const port = await listenOn(closed);
    await new Promise((resolve) => closed.close(resolve));
    const response = await exchange(proxy.port, `GET http://origin.test:${port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(response.status).toBe(502);
    expect(response.body).toContain('refused');
    const record = await proxy.waitForRecord((r) => r.port === port && r.ended_at !== null);
    expect(record).toMatchObject({ status: 502, decision: 'allow' });
    expect(record.error).toMatch(/^connect_refused: /);
  });
});
