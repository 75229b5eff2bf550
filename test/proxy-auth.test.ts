import { execFile } from 'node:child_process';
import { get } from 'node:http';
import type { Agent } from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { Authenticator, AUTH_LIMITS } from '../src/auth/authenticator';
import { hashPassword, parseHash } from '../src/auth/password-hash';
import type { ParsedHash } from '../src/auth/password-hash';
import { parseHead, rawConnect, readAll, startOrigin, startProxy } from './helpers/proxy-harness';
import type { Origin, ProxyHarness } from './helpers/proxy-harness';

const run = promisify(execFile);
const PASSWORD = 'ci-bot-s3cret-pass';

const policy = (auth: string): string => `version: 1
settings:
  default: deny
  auth: ${auth}
network:
  allow_ranges: [127.0.0.0/8]
clients:
  bots:
    users: [ci-bot]
rules:
  - name: bots-only
    action: allow
    clients: [bots]
    hosts: [origin.test]
    ports: any
  - name: everyone-public
    action: allow
    hosts: [public.test]
    ports: any
`;

function fetchVia(agent: Agent, url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, { agent }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

describe('proxy credentials (settings.auth: required)', () => {
  let proxy: ProxyHarness;
  let origin: Origin;
  const seenAuthHeaders: Array<string | undefined> = [];
  let users: Map<string, ParsedHash>;

  beforeAll(async () => {
    users = new Map([['ci-bot', parseHash(await hashPassword(PASSWORD)) as ParsedHash]]);
    origin = await startOrigin((req, res) => {
      seenAuthHeaders.push(req.headers['proxy-authorization']);
      res.end('hello');
    });
    proxy = await startProxy({
      policies: { 'policy.yaml': policy('required') },
      hosts: { 'origin.test': ['127.0.0.1'], 'public.test': ['127.0.0.1'] },
      authenticator: new Authenticator(() => users),
    });
  });
  afterAll(async () => {
    await proxy.close();
    await origin.close();
  });

  test('without credentials: 407 with the Basic challenge, recorded without a user', async () => {
    const socket = await rawConnect(proxy.port);
    socket.write(`CONNECT origin.test:${origin.port} HTTP/1.1\r\n\r\n`);
    const answer = parseHead(await readAll(socket));
    expect(answer.status).toBe(407);
    expect(answer.headers['proxy-authenticate']).toBe('Basic realm="tollgate"');
    const record = await proxy.waitForRecord((r) => r.id === Number(answer.headers['x-tollgate-request-id']));
    expect(record).toMatchObject({ status: 407, decision: 'deny', user: null, host: 'origin.test' });
  });

  test('curl answers the 407 challenge (--proxy-anyauth) for plain HTTP and for a CONNECT tunnel', async () => {
    const url = `http://origin.test:${origin.port}/curl`;
    const common = ['-sS', '-o', '-', '-w', '\n%{http_code}', '-x', `http://127.0.0.1:${proxy.port}`, '--proxy-user', `ci-bot:${PASSWORD}`, '--proxy-anyauth'];
    const plain = await run('curl', [...common, url]);
    expect(plain.stdout).toBe('hello\n200');
    const tunnelled = await run('curl', [...common, '--proxytunnel', url]);
    expect(tunnelled.stdout).toBe('hello\n200');
    const records = proxy.records().filter((r) => r.port === origin.port);
    // Each round trip: a 407 first (no credentials sent), then the allowed request as ci-bot.
    expect(records.filter((r) => r.status === 407).length).toBeGreaterThanOrEqual(2);
    const allowed = records.filter((r) => r.decision === 'allow');
    expect(allowed.map((r) => [r.kind, r.user, r.clients])).toEqual(
      expect.arrayContaining([['http', 'ci-bot', ['bots']], ['connect', 'ci-bot', ['bots']]]),
    );
  });

  test('http-proxy-agent and https-proxy-agent with credentials in the proxy URL', async () => {
    const proxyUrl = `http://ci-bot:${PASSWORD}@127.0.0.1:${proxy.port}`;
    expect(await fetchVia(new HttpProxyAgent(proxyUrl), `http://origin.test:${origin.port}/agent`)).toEqual({ status: 200, body: 'hello' });
    expect(await fetchVia(new HttpsProxyAgent(proxyUrl), `http://origin.test:${origin.port}/tunnel`)).toEqual({ status: 200, body: 'hello' });
  });

  test('credentials are never forwarded to the destination nor stored in the audit log', async () => {
    await fetchVia(new HttpProxyAgent(`http://ci-bot:${PASSWORD}@127.0.0.1:${proxy.port}`), `http://origin.test:${origin.port}/secret`);
    expect(seenAuthHeaders.every((h) => h === undefined)).toBe(true);
    await proxy.checkpointAudit();
    const bytes = readFileSync(path.join(proxy.dir, 'audit.db')).toString('latin1');
    expect(bytes).toContain('/secret');
    expect(bytes).not.toContain(PASSWORD);
    expect(bytes).not.toContain(Buffer.from(`ci-bot:${PASSWORD}`).toString('base64'));
  });

  test('a wrong password gets 407; repeated failures from one source get 429 with Retry-After', async () => {
    const wrong = `Basic ${Buffer.from('ci-bot:wrong-password').toString('base64')}`;
    const statuses: number[] = [];
    for (let i = 0; i <= AUTH_LIMITS.failuresPerWindow; i += 1) {
      const socket = await rawConnect(proxy.port);
      socket.write(`GET http://origin.test:${origin.port}/guess HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${wrong}\r\nConnection: close\r\n\r\n`);
      const answer = parseHead(await readAll(socket));
      statuses.push(answer.status);
      if (answer.status === 429) expect(Number(answer.headers['retry-after'])).toBeGreaterThan(0);
    }
    expect(statuses.slice(0, AUTH_LIMITS.failuresPerWindow).every((s) => s === 407)).toBe(true);
    expect(statuses[AUTH_LIMITS.failuresPerWindow]).toBe(429);
  });
});

describe('proxy credentials (settings.auth: optional)', () => {
  test('anonymous clients pass as themselves; an authenticated user joins its group', async () => {
    const users = new Map([['ci-bot', parseHash(await hashPassword(PASSWORD)) as ParsedHash]]);
    const origin = await startOrigin((_req, res) => res.end('hello'));
    const proxy = await startProxy({
      policies: { 'policy.yaml': policy('optional') },
      hosts: { 'origin.test': ['127.0.0.1'], 'public.test': ['127.0.0.1'] },
      authenticator: new Authenticator(() => users),
    });
    try {
      const anonymous = new HttpProxyAgent(`http://127.0.0.1:${proxy.port}`);
      expect((await fetchVia(anonymous, `http://public.test:${origin.port}/`)).status).toBe(200);
      expect((await fetchVia(anonymous, `http://origin.test:${origin.port}/`)).status).toBe(403);
      const bot = new HttpProxyAgent(`http://ci-bot:${PASSWORD}@127.0.0.1:${proxy.port}`);
      expect((await fetchVia(bot, `http://origin.test:${origin.port}/`)).status).toBe(200);
    } finally {
      await proxy.close();
      await origin.close();
    }
  });
});
