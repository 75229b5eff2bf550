import { parseHead, rawConnect, readAll, readUntil, startOrigin, startProxy } from './helpers/proxy-harness';
import type { Origin, ProxyHarness } from './helpers/proxy-harness';

/**
 * End to end through the real proxy: a rule written `münchen.example` allows requests for the
 * name in punycode, and the record holds the punycode host (SPEC §2, §6).
 */
const PUNYCODE = 'xn--mnchen-3ya.example';

describe('a rule written in Unicode, through the proxy', () => {
  let origin: Origin;
  let proxy: ProxyHarness;
  const hostsSeen: string[] = [];

  beforeAll(async () => {
    origin = await startOrigin((req, res) => {
      hostsSeen.push(req.headers.host ?? '');
      res.end('servus');
    });
    proxy = await startProxy({
      policies: {
        'policy.yaml': `version: 1
network:
  allow_ranges: [127.0.0.0/8]
rules:
  - name: munich
    action: allow
    hosts: [münchen.example]
    ports: [${origin.port}]
`,
      },
      hosts: { [PUNYCODE]: ['127.0.0.1'], 'munchen.example': ['127.0.0.1'] },
    });
  });
  afterAll(async () => {
    await proxy.close();
    await origin.close();
  });

  async function plainGet(requestTarget: Buffer | string): Promise<ReturnType<typeof parseHead>> {
    const socket = await rawConnect(proxy.port);
    socket.write(Buffer.concat([Buffer.from('GET '), Buffer.from(requestTarget), Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]));
    return parseHead(await readAll(socket));
  }

  test.each([
    ['in punycode', `http://${PUNYCODE}:PORT/a`, '/a'],
    ['percent-encoded UTF-8', 'http://M%C3%9CNCHEN.example:PORT/b', '/b'],
  ])('plain HTTP %s is allowed and recorded with the punycode host', async (_how, target, path) => {
    const response = await plainGet(target.replace('PORT', String(origin.port)));
    expect(response.status).toBe(200);
    expect(response.body).toBe('servus');
    expect(hostsSeen.at(-1)).toBe(`${PUNYCODE}:${origin.port}`);
    const record = await proxy.waitForRecord((r) => r.path === path && r.ended_at !== null);
    expect(record).toMatchObject({ kind: 'http', host: PUNYCODE, decision: 'allow', rule: 'munich', status: 200 });
  });

  test('a CONNECT in punycode is allowed and recorded with the punycode host', async () => {
    const socket = await rawConnect(proxy.port);
    socket.write(`CONNECT ${PUNYCODE}:${origin.port} HTTP/1.1\r\n\r\n`);
    expect(parseHead(await readUntil(socket, '\r\n\r\n')).status).toBe(200);
    socket.write(`GET /tunnel HTTP/1.1\r\nHost: ${PUNYCODE}\r\nConnection: close\r\n\r\n`);
    expect(await readAll(socket)).toContain('servus');
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.ended_at !== null);
    expect(record).toMatchObject({ host: PUNYCODE, port: origin.port, decision: 'allow', rule: 'munich' });
  });

  test('the name without the umlaut is another name and is denied', async () => {
    expect((await plainGet(`http://munchen.example:${origin.port}/c`)).status).toBe(403);
    const record = await proxy.waitForRecord((r) => r.host === 'munchen.example');
    expect(record).toMatchObject({ decision: 'deny', rule: '(default)' });
  });

  test('raw UTF-8 in the request line is refused by the HTTP parser and the proxy goes on', async () => {
    const response = await plainGet(Buffer.from(`http://münchen.example:${origin.port}/d`, 'utf8'));
    expect(response.status).toBe(400);
    expect((await plainGet(`http://${PUNYCODE}:${origin.port}/e`)).status).toBe(200);
  });
});
