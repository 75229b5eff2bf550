import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { HttpsProxyAgent } from 'https-proxy-agent';
import type { AuditRecordJson } from '../src/audit/record-types';
import { Authenticator } from '../src/auth/authenticator';
import { loadInspection } from '../src/inspect/ca';
import { createCa } from '../src/inspect/ca-create';
import { hashPassword, parseHash } from '../src/auth/password-hash';
import type { ParsedHash } from '../src/auth/password-hash';
import { INSPECT_RULE } from '../src/proxy/inspected-tunnel';
import { InspectReason } from '../src/proxy/inspect-tunnel';
import { SNI_RULE } from '../src/proxy/sni-check';
import { waitFor } from './helpers/fleet-ship';
import { makeTestCa, startHttpsOrigin, testInspection } from './helpers/inspection-pki';
import type { HttpsOrigin, TestCa, TestInspection } from './helpers/inspection-pki';
import { parseHead, rawConnect, readUntil, startProxy } from './helpers/proxy-harness';
import type { ProxyHarness } from './helpers/proxy-harness';

/**
 * `tls: inspect` (SPEC §6) with real clients (curl, Node https through https-proxy-agent, raw
 * TLS sockets) against real HTTPS origins on loopback, each with a throwaway CA: the inspection
 * CA the clients are given, and the origins' CA the proxy is given as upstream trust.
 */

jest.setTimeout(30_000);
const run = promisify(execFile);

const POLICY = `version: 1
settings:
  default: deny
network:
  allow_ranges: [127.0.0.0/8]
rules:
  - name: no-deletes
    action: deny
    hosts: [site.test]
    ports: any
    methods: [DELETE]
  - name: site-org
    action: allow
    hosts: [site.test, wrongname.test, untrusted.test]
    ports: any
    paths: ["/org/**"]
    tls: inspect
  - name: opaque
    action: allow
    hosts: [opaque.test]
    ports: any
`;

let inspectCa: TestCa;
let originCa: TestCa;
let otherCa: TestCa;
let inspection: TestInspection;
let origin: HttpsOrigin;
let wrongName: HttpsOrigin;
let untrusted: HttpsOrigin;
let proxy: ProxyHarness;

/** What the origin saw, by path: method, URL, Host and whether an Authorization header came through. */
const seen: Array<{ method: string; url: string; host: string; authorization: boolean; proxyAuthorization: boolean }> = [];

function echoHandler(req: IncomingMessage, res: import('node:http').ServerResponse): void {
  seen.push({
    method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '',
    authorization: req.headers.authorization !== undefined, proxyAuthorization: req.headers['proxy-authorization'] !== undefined,
  });
  if (req.url?.startsWith('/org/echo')) {
    // Echo each chunk as it arrives: the client waits for one echo before sending the next.
    res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
    req.on('data', (chunk: Buffer) => res.write(chunk));
    req.on('end', () => res.end());
    return;
  }
  req.resume();
  res.end(`origin: ${req.method} ${req.url}`);
}

beforeAll(async () => {
  inspectCa = makeTestCa('inspect-ca');
  originCa = makeTestCa('origin-ca');
  otherCa = makeTestCa('other-ca');
  inspection = testInspection(inspectCa, [originCa.pem]);
  origin = await startHttpsOrigin(originCa, ['site.test', 'opaque.test'], echoHandler);
  wrongName = await startHttpsOrigin(originCa, ['elsewhere.test'], echoHandler);
  untrusted = await startHttpsOrigin(otherCa, ['untrusted.test'], echoHandler);
  proxy = await startProxy({
    policies: { 'policy.yaml': POLICY },
    hosts: { 'site.test': ['127.0.0.1'], 'opaque.test': ['127.0.0.1'], 'wrongname.test': ['127.0.0.1'], 'untrusted.test': ['127.0.0.1'] },
    inspect: inspection,
  });
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([origin.close(), wrongName.close(), untrusted.close()]);
  for (const ca of [inspectCa, originCa, otherCa]) ca.remove();
});

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run('curl', ['-sS', '--max-time', '10', '--proxy', `http://127.0.0.1:${proxy.port}`, ...args]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }),
  );
}

/** The newest record id now: what a test's own records come after. */
function mark(): number {
  proxy.flushAudit();
  return proxy.records().reduce((max, r) => Math.max(max, r.id), 0);
}

/** At least `count` completed records after `since` that match, oldest first (bounded wait). */
function completedSince(since: number, predicate: (r: AuditRecordJson) => boolean, count = 1): Promise<AuditRecordJson[]> {
  return waitFor(`${count} completed record(s)`, () => {
    proxy.flushAudit();
    const found = proxy.records().filter((r) => r.id > since && r.ended_at !== null && predicate(r));
    return found.length >= count ? found.reverse() : undefined;
  }, 20_000);
}

/** The CONNECT's record and those of the requests inside it (kind https, tunnel_id = its id), after `since`. */
async function tunnelRecords(since: number, innerCount: number): Promise<{ tunnel: AuditRecordJson; inner: AuditRecordJson[] }> {
  const [tunnel] = await completedSince(since, (r) => r.kind === 'connect');
  const inner = await completedSince(since, (r) => r.kind === 'https' && r.scheme === 'https' && r.tunnel_id === tunnel.id, innerCount);
  return { tunnel, inner };
}

async function connectTunnel(authority: string): Promise<Socket> {
  const socket = await rawConnect(proxy.port);
  socket.on('error', () => undefined);
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  const head = await readUntil(socket, '\r\n\r\n');
  expect(head.split('\r\n')[0]).toBe('HTTP/1.1 200 Connection Established');
  return socket;
}

/** TLS through a tunnel; resolves once the handshake is done, rejects with its error. */
function tlsThrough(socket: Socket, servername: string, options: tls.ConnectionOptions = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({ socket, servername, ca: inspectCa.pem, ...options });
    secure.once('secureConnect', () => resolve(secure));
    secure.once('error', reject);
  });
}

/** One request and its whole response over an established TLS socket (Content-Length framed). */
function exchangeOver(secure: TLSSocket, request: string): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = parseHead(text);
      const length = Number(head.headers['content-length'] ?? '0');
      if (text.length - end - 4 < length) return;
      secure.off('data', onData);
      resolve(head);
    };
    secure.on('data', onData);
    secure.once('error', reject);
    secure.write(request);
  });
}

describe('curl through an inspecting rule', () => {
  test('an allowed path reaches the origin over a verified TLS connection; its record has no query string', async () => {
    const since = mark();
    const result = await curl(['-i', '--cacert', inspectCa.file, `https://site.test:${origin.port}/org/repo?token=s3cr3t`]);
    expect(result.stderr).toBe('');
    expect(result.stdout).toContain('HTTP/1.1 200 OK');
    expect(result.stdout).toContain('origin: GET /org/repo?token=s3cr3t');
    const { tunnel, inner } = await tunnelRecords(since, 1);
    expect(tunnel).toMatchObject({ decision: 'allow', rule: 'site-org', sni: 'site.test', status: 200, error: null });
    expect(inner[0]).toMatchObject({ method: 'GET', scheme: 'https', host: 'site.test', path: '/org/repo', decision: 'allow', rule: 'site-org', status: 200, resolved_ip: '127.0.0.1' });
    expect(inner[0].bytes_down).toBe('origin: GET /org/repo?token=s3cr3t'.length);
    expect(JSON.stringify(proxy.records())).not.toContain('s3cr3t');
  });

  test('a path the rule does not cover is refused inside TLS with the X-Tollgate headers', async () => {
    const since = mark();
    const result = await curl(['-i', '--cacert', inspectCa.file, `https://site.test:${origin.port}/other/repo`]);
    expect(result.stdout).toContain('HTTP/1.1 403 Forbidden');
    expect(result.stdout).toMatch(/X-Tollgate-Decision: deny/i);
    expect(result.stdout).toMatch(/X-Tollgate-Rule: \(default\)/i);
    const id = /X-Tollgate-Request-Id: (\d+)/i.exec(result.stdout)?.[1];
    const { inner } = await tunnelRecords(since, 1);
    const denied = inner.find((r) => r.path === '/other/repo');
    expect(denied).toMatchObject({ decision: 'deny', status: 403, rule: '(default)' });
    expect(String(denied?.id)).toBe(id);
    expect(seen.some((s) => s.url === '/other/repo')).toBe(false);
  });

  test('a client that does not trust the inspection CA fails, and the tunnel record says client_rejected_certificate', async () => {
    const since = mark();
    const result = await curl(['--cacert', originCa.file, `https://site.test:${origin.port}/org/x`]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/certificate/i);
    const tunnel = (await completedSince(since, (r) => r.kind === 'connect' && r.ended_at !== null && (r.error ?? '').includes('unknown ca')))[0];
    expect(tunnel.error).toBe(InspectReason.rejectedCertificate('site.test', 'TLS alert: unknown ca'));
  });

  test('a rule without inspect tunnels the bytes untouched: the client sees the origin\'s own certificate', async () => {
    const result = await curl(['--cacert', originCa.file, `https://opaque.test:${origin.port}/anything`]);
    expect(result.stdout).toBe('origin: GET /anything');
    const socket = await connectTunnel(`opaque.test:${origin.port}`);
    const secure = await tlsThrough(socket, 'opaque.test', { ca: originCa.pem });
    expect(secure.getPeerCertificate().issuer.CN).toBe('origin-ca');
    secure.destroy();
  });
});

describe('Node https through https-proxy-agent', () => {
  function get(agent: HttpsProxyAgent<string>, method: string, urlPath: string, body?: string): Promise<{ status: number; text: string; reused: boolean; headers: IncomingMessage['headers'] }> {
    return new Promise((resolve, reject) => {
      const req = https.request(`https://site.test:${origin.port}${urlPath}`, { agent, method, ca: inspectCa.pem, headers: { Authorization: 'Bearer hunter2' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, reused: req.reusedSocket, headers: res.headers }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  test('allowed, denied, allowed on one kept-alive connection, one tunnel', async () => {
    const since = mark();
    const agent = new HttpsProxyAgent(`http://127.0.0.1:${proxy.port}`, { keepAlive: true, maxSockets: 1 });
    try {
      const first = await get(agent, 'GET', '/org/one');
      const denied = await get(agent, 'DELETE', '/org/one');
      const third = await get(agent, 'GET', '/org/three?x=1');
      expect([first.status, denied.status, third.status]).toEqual([200, 403, 200]);
      expect(denied.headers['x-tollgate-rule']).toBe('no-deletes');
      expect([denied.reused, third.reused]).toEqual([true, true]);
      expect(third.text).toBe('origin: GET /org/three?x=1');
    } finally {
      agent.destroy();
    }
    const { tunnel, inner } = await tunnelRecords(since, 3);
    expect(inner.map((r) => [r.method, r.path, r.status, r.rule])).toEqual([
      ['GET', '/org/one', 200, 'site-org'],
      ['DELETE', '/org/one', 403, 'no-deletes'],
      ['GET', '/org/three', 200, 'site-org'],
    ]);
    expect(tunnel.error).toBeNull();
    // The origin saw the request's own credentials; the records never hold them.
    expect(seen.filter((s) => s.url.startsWith('/org/one') || s.url.startsWith('/org/three')).every((s) => s.authorization)).toBe(true);
    await proxy.checkpointAudit();
    expect(readFileSync(path.join(proxy.dir, 'audit.db')).includes('hunter2')).toBe(false);
    await waitFor('the tunnel to leave the registry', () => proxy.ctx.tunnels.size === 0, 20_000);
  });

  test('a POST body streams both ways: each chunk is echoed before the next is sent', async () => {
    const since = mark();
    const agent = new HttpsProxyAgent(`http://127.0.0.1:${proxy.port}`);
    const chunks = ['first chunk;', 'second chunk;', 'third chunk.'];
    const echoed: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = https.request(`https://site.test:${origin.port}/org/echo`, { agent, method: 'POST', ca: inspectCa.pem }, (res) => {
        res.setEncoding('utf8');
        let pending = '';
        res.on('data', (text: string) => {
          pending += text;
          const expected = chunks[echoed.length];
          if (pending !== expected) return;
          echoed.push(pending);
          pending = '';
          // The next chunk goes only once the last one came back through the proxy, both ways.
          if (echoed.length < chunks.length) req.write(chunks[echoed.length]);
          else req.end();
        });
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.flushHeaders();
      req.write(chunks[0]);
    });
    agent.destroy();
    expect(echoed).toEqual(chunks);
    const { inner } = await tunnelRecords(since, 1);
    const post = inner.find((r) => r.method === 'POST');
    const total = chunks.join('').length;
    expect(post).toMatchObject({ path: '/org/echo', status: 200, bytes_up: total, bytes_down: total });
  });

  test('a Node client without the inspection CA fails; the tunnel record says client_rejected_certificate', async () => {
    const since = mark();
    const agent = new HttpsProxyAgent(`http://127.0.0.1:${proxy.port}`);
    const failed = await new Promise<Error>((resolve) => {
      const req = https.request(`https://site.test:${origin.port}/org/pinned`, { agent, ca: originCa.pem }, () => resolve(new Error('answered')));
      req.on('error', resolve);
      req.end();
    });
    agent.destroy();
    expect((failed as NodeJS.ErrnoException).code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    const tunnel = (await completedSince(since, (r) => r.kind === 'connect' && r.ended_at !== null && r.error === InspectReason.closedInHandshake('site.test')))[0];
    expect(tunnel.error?.startsWith('client_rejected_certificate: ')).toBe(true);
  });
});

describe('what inspection refuses', () => {
  test('a Host naming another host is refused as host_mismatch; the connection stays usable', async () => {
    const since = mark();
    const socket = await connectTunnel(`site.test:${origin.port}`);
    const secure = await tlsThrough(socket, 'site.test');
    const fronted = await exchangeOver(secure, 'GET /org/x HTTP/1.1\r\nHost: opaque.test\r\n\r\n');
    expect(fronted.status).toBe(403);
    expect(fronted.headers['x-tollgate-rule']).toBe(INSPECT_RULE);
    expect(fronted.body).toContain('host_mismatch');
    const absolute = await exchangeOver(secure, `GET https://opaque.test:${origin.port}/org/x HTTP/1.1\r\nHost: site.test:${origin.port}\r\n\r\n`);
    expect(absolute.status).toBe(403);
    const ok = await exchangeOver(secure, `GET /org/after HTTP/1.1\r\nHost: site.test:${origin.port}\r\n\r\n`);
    expect(ok.status).toBe(200);
    secure.destroy();
    const { inner } = await tunnelRecords(since, 3);
    expect(inner[0]).toMatchObject({ decision: 'deny', rule: INSPECT_RULE, status: 403, host: 'site.test', path: '/org/x' });
    expect(inner[0].reason).toBe(`host_mismatch: the request names opaque.test:443, but its tunnel was opened to site.test:${origin.port} (domain fronting)`);
    expect(inner[0].error).toBe(`host_mismatch: ${inner[0].reason}`);
    expect(seen.some((s) => s.host.startsWith('opaque.test') && s.url === '/org/x')).toBe(false);
  });

  test('an origin whose certificate names another host is a 502 recorded as upstream_certificate', async () => {
    const since = mark();
    const result = await curl(['-i', '--cacert', inspectCa.file, `https://wrongname.test:${wrongName.port}/org/x`]);
    expect(result.stdout).toContain('HTTP/1.1 502 Bad Gateway');
    const { inner } = await tunnelRecords(since, 1);
    expect(inner[0].status).toBe(502);
    expect(inner[0].error).toMatch(/^upstream_certificate: ERR_TLS_CERT_ALTNAME_INVALID: /);
  });

  test('an origin whose CA is not trusted is a 502 recorded as upstream_certificate', async () => {
    const since = mark();
    const result = await curl(['-i', '--cacert', inspectCa.file, `https://untrusted.test:${untrusted.port}/org/x`]);
    expect(result.stdout).toContain('HTTP/1.1 502 Bad Gateway');
    const { inner } = await tunnelRecords(since, 1);
    expect(inner[0].error).toMatch(/^upstream_certificate: UNABLE_TO_VERIFY_LEAF_SIGNATURE: /);
  });

  test('a destination that requires a client certificate (mutual TLS) is a 502, recorded as such', async () => {
    const since = mark();
    const mutual = await startHttpsOrigin(originCa, ['site.test'], echoHandler);
    // Asks for a client certificate and refuses the connection without one.
    (mutual.server as unknown as import('node:tls').Server).setSecureContext({ ...originCa.issue(['site.test']), ca: originCa.pem });
    (mutual.server as unknown as { requestCert: boolean; rejectUnauthorized: boolean }).requestCert = true;
    try {
      const result = await curl(['-i', '--cacert', inspectCa.file, `https://site.test:${mutual.port}/org/mtls`]);
      expect(result.stdout).toContain('HTTP/1.1 502 Bad Gateway');
      const { inner } = await tunnelRecords(since, 1);
      expect(inner[0].status).toBe(502);
      expect(inner[0].error).toMatch(/^upstream_tls: TLS handshake with site.test .* failed: ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED \(the destination requires a client certificate: mutual TLS cannot be inspected\)$/);
    } finally {
      await mutual.close();
    }
  });

  test('an h2-only client cannot be inspected: the handshake fails with no_application_protocol', async () => {
    const since = mark();
    const socket = await connectTunnel(`site.test:${origin.port}`);
    const error = await tlsThrough(socket, 'site.test', { ALPNProtocols: ['h2'] }).then(() => null, (err: NodeJS.ErrnoException) => err.code);
    expect(error).toBe('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
    await completedSince(since, (r) => r.kind === 'connect' && r.error === InspectReason.noAlpn);
    // A client that offers h2 and HTTP/1.1 falls back to HTTP/1.1.
    const both = await tlsThrough(await connectTunnel(`site.test:${origin.port}`), 'site.test', { ALPNProtocols: ['h2', 'http/1.1'] });
    expect(both.alpnProtocol).toBe('http/1.1');
    both.destroy();
  });

  test('bytes that are not TLS are refused (not_tls), as under tls: require', async () => {
    const since = mark();
    const socket = await connectTunnel(`site.test:${origin.port}`);
    socket.write(`GET /org/x HTTP/1.1\r\nHost: site.test\r\n\r\n`);
    const record = (await completedSince(since, (r) => r.kind === 'connect' && r.rule === SNI_RULE && r.reason.startsWith('not_tls')))[0];
    expect(record).toMatchObject({ decision: 'deny', status: 403 });
  });

  test('TLS that does not carry HTTP is recorded not_http', async () => {
    const since = mark();
    const socket = await connectTunnel(`site.test:${origin.port}`);
    const secure = await tlsThrough(socket, 'site.test');
    secure.write('\x00\x01garbage that is not a request line\r\n\r\n');
    await readUntil(secure, 'malformed request');
    secure.destroy();
    const record = (await completedSince(since, (r) => r.kind === 'connect' && (r.error ?? '').startsWith('not_http')))[0];
    expect(record.error).toMatch(/^not_http: the bytes inside TLS are not an HTTP\/1\.1 request \(HPE_/);
  });

  test('a SNI naming another host than the CONNECT is refused (rule (sni)) and no leaf is minted for that name', async () => {
    const since = mark();
    const before = inspection.mints();
    const socket = await connectTunnel(`site.test:${origin.port}`);
    const error = await tlsThrough(socket, 'opaque.test').then(() => null, (err: Error) => err.message);
    expect(error).not.toBeNull();
    await completedSince(since, (r) => r.kind === 'connect' && r.rule === SNI_RULE && r.sni === 'opaque.test');
    expect(inspection.mints()).toBe(before);
  });
});

describe('without an inspection CA', () => {
  test('a rule that inspects refuses its tunnels (fail closed)', async () => {
    const bare = await startProxy({ policies: { 'policy.yaml': POLICY }, hosts: { 'site.test': ['127.0.0.1'] } });
    try {
      const socket = await rawConnect(bare.port);
      socket.write(`CONNECT site.test:${origin.port} HTTP/1.1\r\nHost: site.test\r\n\r\n`);
      const answer = parseHead(await readUntil(socket, '\r\n\r\n'));
      socket.destroy();
      expect(answer.status).toBe(403);
      bare.flushAudit();
      const record = await bare.waitForRecord((r) => r.kind === 'connect');
      expect(record).toMatchObject({ decision: 'deny', rule: 'site-org', status: 403 });
      expect(record.error).toBe(`inspect_unavailable: ${InspectReason.unavailable('site-org')}`);
    } finally {
      await bare.close();
    }
  });
});

describe('an authenticated tunnel', () => {
  const PASSWORD = 'ci-bot-s3cret-pass';
  const AUTH_POLICY = `version: 1
settings:
  default: deny
  auth: required
network:
  allow_ranges: [127.0.0.0/8]
clients:
  bots:
    users: [ci-bot]
rules:
  - name: bots-org
    action: allow
    clients: [bots]
    hosts: [site.test]
    ports: any
    paths: ["/org/**"]
    tls: inspect
`;

  test('its user and client groups carry over to every request inside; a Proxy-Authorization inside TLS is ignored and not forwarded', async () => {
    const users = new Map([['ci-bot', parseHash(await hashPassword(PASSWORD)) as ParsedHash]]);
    const authed = await startProxy({
      policies: { 'policy.yaml': AUTH_POLICY },
      hosts: { 'site.test': ['127.0.0.1'] },
      authenticator: new Authenticator(() => users),
      inspect: inspection,
    });
    const agent = new HttpsProxyAgent(`http://ci-bot:${PASSWORD}@127.0.0.1:${authed.port}`, { keepAlive: true, maxSockets: 1 });
    try {
      const status = (urlPath: string, headers: Record<string, string> = {}): Promise<number> => new Promise((resolve, reject) => {
        https.get(`https://site.test:${origin.port}${urlPath}`, { agent, ca: inspectCa.pem, headers }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      });
      expect(await status('/org/bot')).toBe(200);
      expect(await status('/org/forged', { 'Proxy-Authorization': `Basic ${Buffer.from('someone-else:x').toString('base64')}` })).toBe(200);
      expect(await status('/elsewhere')).toBe(403);
    } finally {
      agent.destroy();
    }
    authed.flushAudit();
    const inner = await waitFor('three inner records', () => {
      authed.flushAudit();
      const found = authed.records().filter((r) => r.kind === 'https' && r.ended_at !== null);
      return found.length >= 3 ? found.reverse() : undefined;
    }, 20_000);
    expect(inner.map((r) => [r.path, r.user, r.clients, r.rule])).toEqual([
      ['/org/bot', 'ci-bot', ['bots'], 'bots-org'],
      ['/org/forged', 'ci-bot', ['bots'], 'bots-org'],
      ['/elsewhere', 'ci-bot', ['bots'], '(default)'],
    ]);
    expect(seen.find((s) => s.url === '/org/forged')).toMatchObject({ proxyAuthorization: false });
    await authed.close();
  });
});

describe('tunnel limits', () => {
  test('an inspected tunnel counts as a tunnel, stays open while busy, and is cut once idle', async () => {
    const limited = await startProxy({
      policies: { 'policy.yaml': POLICY },
      hosts: { 'site.test': ['127.0.0.1'] },
      inspect: inspection,
      // 1 s, not less: a machine stalled for longer between two requests would cut it unfairly.
      timeouts: { tunnelIdleMs: 1000 },
    });
    try {
      const socket = await rawConnect(limited.port);
      socket.on('error', () => undefined);
      socket.write(`CONNECT site.test:${origin.port} HTTP/1.1\r\nHost: site.test\r\n\r\n`);
      await readUntil(socket, '\r\n\r\n');
      const secure = await tlsThrough(socket, 'site.test');
      secure.on('error', () => undefined);
      // Busy for 2.5 idle periods: a request every 100 ms keeps the tunnel open.
      const until = Date.now() + 2_500;
      while (Date.now() < until) {
        expect((await exchangeOver(secure, `GET /org/idle HTTP/1.1\r\nHost: site.test:${origin.port}\r\n\r\n`)).status).toBe(200);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(limited.ctx.tunnels.size).toBe(1);
      // The proxy closes the connection; this client's raw socket allows half-open, so 'end' is what it sees.
      await new Promise((resolve) => secure.once('end', resolve));
      secure.destroy();
      limited.flushAudit();
      const tunnel = await limited.waitForRecord((r) => r.kind === 'connect' && r.ended_at !== null);
      // Cut by the tunnel idle timeout, not ended by the inner server's 5 s keep-alive timeout.
      expect(tunnel.error).toBe('idle_timeout: no data either way for 1000 ms');
      expect(limited.ctx.tunnels.size).toBe(0);
    } finally {
      await limited.close();
    }
  });
});

describe('with the CA serve loads (tollgate ca init --permit)', () => {
  test('a permitted host is inspected with a leaf the CA signed; a host outside --permit is refused on the CONNECT', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-inspect-real-ca-'));
    const created = await createCa({ name: 'test inspection CA', days: 2, permit: ['site.test'], now: new Date() });
    writeFileSync(path.join(dir, 'ca.pem'), created.certPem);
    writeFileSync(path.join(dir, 'ca-key.pem'), created.keyPem, { mode: 0o600 });
    writeFileSync(path.join(dir, 'trust.pem'), originCa.pem);
    const issuer = await loadInspection(dir, path.join(dir, 'trust.pem'));
    const real = await startProxy({
      policies: { 'policy.yaml': POLICY.replace('hosts: [site.test, wrongname.test, untrusted.test]', 'hosts: [site.test, opaque.test]') },
      hosts: { 'site.test': ['127.0.0.1'], 'opaque.test': ['127.0.0.1'] },
      inspect: issuer,
    });
    try {
      const ok = await run('curl', ['-sS', '--max-time', '10', '--proxy', `http://127.0.0.1:${real.port}`, '--cacert', path.join(dir, 'ca.pem'), `https://site.test:${origin.port}/org/real`]);
      expect(ok.stdout).toBe('origin: GET /org/real');
      const socket = await rawConnect(real.port);
      socket.write(`CONNECT opaque.test:${origin.port} HTTP/1.1\r\nHost: opaque.test\r\n\r\n`);
      const answer = parseHead(await readUntil(socket, '\r\n\r\n'));
      socket.destroy();
      expect(answer.status).toBe(403);
      real.flushAudit();
      const refused = await real.waitForRecord((r) => r.kind === 'connect' && r.host === 'opaque.test');
      expect(refused).toMatchObject({ decision: 'deny', rule: 'site-org', status: 403 });
      expect(refused.reason).toMatch(/^no certificate for this host from the inspection CA: inspect_host_not_permitted: /);
    } finally {
      await real.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
