import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { captureNodeHello } from './helpers/client-hellos';
import { waitFor } from './helpers/fleet-ship';
import { listenOn, rawConnect, readUntil, startProxy } from './helpers/proxy-harness';
import type { ProxyHarness } from './helpers/proxy-harness';

/**
 * `tls: sni-must-match | require` (SPEC §6) with real TLS clients through real tunnels: Node's
 * tls.connect with a forged servername, curl --connect-to (the CONNECT names one host, the
 * ClientHello another), and hand-made first bytes.
 */

jest.setTimeout(30_000);

const policy = (settingsTls: string, extraRule = ''): string => `version: 1
settings:
  default: deny
  tls: ${settingsTls}
network:
  allow_ranges: [127.0.0.0/8]
rules:
  - name: allowed-site
    action: allow
    hosts: [allowed.test]
    ports: any
${extraRule}`;

interface TlsOrigin {
  port: number;
  /** Bytes received over TCP, before TLS: what "the destination received nothing" means. */
  received(): number;
  close(): Promise<void>;
}

let certDir: string;
let key: Buffer;
let cert: Buffer;

beforeAll(() => {
  certDir = mkdtempSync(path.join(tmpdir(), 'tollgate-sni-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=allowed.test',
    '-keyout', 'key.pem', '-out', 'cert.pem', '-addext', 'subjectAltName=DNS:allowed.test,DNS:other.test'], { cwd: certDir, stdio: 'pipe' });
  key = readFileSync(path.join(certDir, 'key.pem'));
  cert = readFileSync(path.join(certDir, 'cert.pem'));
});

afterAll(() => rmSync(certDir, { recursive: true, force: true }));

/** A TLS echo server behind a TCP counter (a front that pipes to it), so received bytes can be counted. */
async function startTlsOrigin(): Promise<TlsOrigin> {
  const secure = tls.createServer({ key, cert }, (socket) => {
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk) => socket.write(chunk));
  });
  const securePort = await listenOn(secure);
  let received = 0;
  const front = net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    const inner = net.connect(securePort, '127.0.0.1');
    inner.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      inner.write(chunk);
    });
    inner.pipe(socket);
    socket.on('close', () => inner.destroy());
  });
  const port = await listenOn(front);
  return {
    port,
    received: () => received,
    close: async () => {
      await new Promise((resolve) => front.close(resolve));
      await new Promise((resolve) => secure.close(resolve));
    },
  };
}

/** The origin has received at least `bytes` in all (bounded wait: bytes cross two sockets). */
async function waitUntilReceived(origin: TlsOrigin, bytes: number): Promise<void> {
  await waitFor(`${bytes} bytes at the origin`, () => origin.received() >= bytes, 5_000);
  expect(origin.received()).toBe(bytes);
}

async function connectTunnel(proxyPort: number, target: string): Promise<Socket> {
  const socket = await rawConnect(proxyPort);
  socket.on('error', () => undefined);
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  const head = await readUntil(socket, '\r\n\r\n');
  expect(head.startsWith('HTTP/1.1 200')).toBe(true);
  return socket;
}

/** TLS through a tunnel with the given SNI: the echoed text, or the error that ended it. */
async function tlsThrough(proxyPort: number, target: string, servername: string): Promise<{ echoed: string | null; error: string | null }> {
  const tunnel = await connectTunnel(proxyPort, target);
  return new Promise((resolve) => {
    const secure = tls.connect({ socket: tunnel, servername, ca: cert, checkServerIdentity: () => undefined });
    secure.once('secureConnect', () => {
      secure.write('ping');
      secure.once('data', (chunk: Buffer) => {
        resolve({ echoed: chunk.toString(), error: null });
        secure.destroy();
      });
    });
    secure.once('error', (err) => resolve({ echoed: null, error: err.message }));
    secure.once('close', () => resolve({ echoed: null, error: 'closed' }));
  });
}

describe('tls: sni-must-match', () => {
  let origin: TlsOrigin;
  let proxy: ProxyHarness;

  beforeAll(async () => {
    origin = await startTlsOrigin();
    proxy = await startProxy({
      policies: { 'p.yaml': policy('sni-must-match', `  - name: lax-site\n    action: allow\n    hosts: [lax.test]\n    ports: any\n    tls: any\n`) },
      hosts: { 'allowed.test': ['127.0.0.1'], 'lax.test': ['127.0.0.1'] },
      // Long enough that a stalled machine cannot turn a late ClientHello into a timeout.
      timeouts: { helloMs: 5_000 },
    });
  });
  afterAll(async () => {
    await proxy.close();
    await origin.close();
  });

  it('lets a ClientHello that names the CONNECT host through, and records its SNI', async () => {
    const result = await tlsThrough(proxy.port, `allowed.test:${origin.port}`, 'allowed.test');
    expect(result).toEqual({ echoed: 'ping', error: null });
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.sni === 'allowed.test');
    expect(record.decision).toBe('allow');
    expect(record.rule).toBe('allowed-site');
  });

  it('closes a tunnel whose ClientHello names another host: one deny record by (sni), and the destination gets nothing', async () => {
    const before = origin.received();
    const result = await tlsThrough(proxy.port, `allowed.test:${origin.port}`, 'other.test');
    expect(result.echoed).toBeNull();
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.sni === 'other.test');
    expect(record.decision).toBe('deny');
    expect(record.rule).toBe('(sni)');
    expect(record.reason).toContain('"other.test"');
    expect(record.reason).toContain('"allowed.test"');
    expect(record.status).toBe(403);
    expect(origin.received()).toBe(before);
    // One record for that tunnel: none that counts it as an allow of allowed-site.
    expect(proxy.records().filter((r) => r.sni === 'other.test')).toHaveLength(1);
  });

  it('relays bytes that are not TLS at all (ssh, say), unread', async () => {
    const before = origin.received();
    const banner = 'SSH-2.0-OpenSSH_9.2\r\n';
    const tunnel = await connectTunnel(proxy.port, `allowed.test:${origin.port}`);
    const gone = new Promise((resolve) => {
      tunnel.once('end', resolve);
      tunnel.once('close', resolve);
    });
    tunnel.write(banner);
    // The TLS origin reads the banner as a bad handshake and hangs up: the bytes got there.
    await gone;
    tunnel.destroy();
    expect(origin.received() - before).toBe(banner.length);
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.decision === 'allow' && r.sni === null && r.ended_at !== null);
    expect(record.rule).toBe('allowed-site');
  });

  it('a rule with tls: any relays a forged SNI, as before the check existed', async () => {
    const result = await tlsThrough(proxy.port, `lax.test:${origin.port}`, 'other.test');
    expect(result).toEqual({ echoed: 'ping', error: null });
  });

  it('reads a ClientHello split across TCP segments', async () => {
    // A real ClientHello, captured from Node's TLS client by a server that only records.
    const captured = await captureNodeHello({ servername: 'allowed.test' });
    const newest = Math.max(0, ...proxy.records().map((r) => r.id));
    const before = origin.received();
    const tunnel = await connectTunnel(proxy.port, `allowed.test:${origin.port}`);
    for (const piece of [captured.subarray(0, 3), captured.subarray(3, 40), captured.subarray(40)]) {
      tunnel.write(piece);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.sni === 'allowed.test' && r.id > newest && r.decision === 'allow', 5000);
    expect(record.rule).toBe('allowed-site');
    // The whole split ClientHello reached the destination, in order.
    await waitUntilReceived(origin, before + captured.length);
    tunnel.destroy();
  });

  it('refuses a malformed ClientHello', async () => {
    const tunnel = await connectTunnel(proxy.port, `allowed.test:${origin.port}`);
    // A handshake record whose ClientHello claims more than it holds.
    tunnel.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0x00, 0x00]));
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.rule === '(sni)' && r.reason.includes('malformed'));
    expect(record.decision).toBe('deny');
    tunnel.destroy();
  });

  it('curl --connect-to: a CONNECT to the allowed host with the SNI of another is refused', async () => {
    if (spawnSync('curl', ['--version']).status !== 0) throw new Error('curl is missing: .ci/run installs it');
    const before = origin.received();
    const newest = Math.max(0, ...proxy.records().map((r) => r.id));
    // Not spawnSync: the proxy runs in this process and must answer while curl waits.
    const status = await new Promise<number | null>((resolve) => {
      const curl = spawn('curl', ['-s', '-o', '/dev/null', '-m', '5', '-x', `http://127.0.0.1:${proxy.port}`,
        '--connect-to', `other.test:${origin.port}:allowed.test:${origin.port}`, '--cacert', path.join(certDir, 'cert.pem'), `https://other.test:${origin.port}/`]);
      curl.on('close', (code) => resolve(code));
    });
    // 35: the TLS connection failed (the tunnel closed on its ClientHello), not a timeout (28).
    expect(status).toBe(35);
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.host === 'allowed.test' && r.sni === 'other.test' && r.rule === '(sni)' && r.id > newest);
    expect(record.decision).toBe('deny');
    expect(origin.received()).toBe(before);
  });
});

describe('tls: sni-must-match against evasions', () => {
  let origin: TlsOrigin;
  let proxy: ProxyHarness;
  let helloAllowed: Buffer;
  let helloOther: Buffer;

  beforeAll(async () => {
    origin = await startTlsOrigin();
    proxy = await startProxy({ policies: { 'p.yaml': policy('sni-must-match') }, hosts: { 'allowed.test': ['127.0.0.1'] }, timeouts: { helloMs: 1_000 } });
    helloAllowed = await captureNodeHello({ servername: 'allowed.test' });
    helloOther = await captureNodeHello({ servername: 'other.test' });
  });
  afterAll(async () => {
    await proxy.close();
    await origin.close();
  });

  it('refuses a client that stays silent: it could send its ClientHello after a pass', async () => {
    const before = origin.received();
    const tunnel = await connectTunnel(proxy.port, `allowed.test:${origin.port}`);
    const record = await proxy.waitForRecord((r) => r.rule === '(sni)' && r.reason.includes('nothing sent'));
    expect(record.decision).toBe('deny');
    tunnel.destroy();
    expect(origin.received()).toBe(before);
  });

  it('refuses another TLS record (an alert) sent before the ClientHello', async () => {
    const tunnel = await connectTunnel(proxy.port, `allowed.test:${origin.port}`);
    tunnel.write(Buffer.concat([Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x01, 0x5a]), helloOther]));
    const record = await proxy.waitForRecord((r) => r.rule === '(sni)' && r.reason.includes('content type 21'));
    expect(record.decision).toBe('deny');
    tunnel.destroy();
  });

  it('refuses a second ClientHello sent with the first, before the server answered', async () => {
    const before = origin.received();
    const tunnel = await connectTunnel(proxy.port, `allowed.test:${origin.port}`);
    tunnel.write(Buffer.concat([helloAllowed, helloOther]));
    const record = await proxy.waitForRecord((r) => r.rule === '(sni)' && r.reason.includes('second TLS handshake record'));
    expect(record.sni).toBe('allowed.test');
    tunnel.destroy();
    expect(origin.received()).toBe(before);
  });

  it('cuts the tunnel when a later ClientHello (after a HelloRetryRequest, say) names another server', async () => {
    const before = origin.received();
    const tunnel = await connectTunnel(proxy.port, `allowed.test:${origin.port}`);
    const ended = new Promise((resolve) => {
      tunnel.once('end', resolve);
      tunnel.once('close', resolve);
    });
    tunnel.write(helloAllowed);
    const open = await proxy.waitForRecord((r) => r.sni === 'allowed.test' && r.decision === 'allow' && r.ended_at === null);
    tunnel.write(helloOther);
    await ended;
    tunnel.destroy();
    const cut = await proxy.waitForRecord((r) => r.id === open.id && r.ended_at !== null);
    expect(cut.error).toContain('sni_changed');
    expect(cut.error).toContain('"other.test"');
    // The first ClientHello reached the destination; the second did not.
    expect(origin.received() - before).toBe(helloAllowed.length);
  });
});

describe.each([
  ['settings.mode: report', policy('sni-must-match').replace('default: deny', 'default: deny\n  mode: report')],
  // A rule trialled in report mode (its own mode) under an enforcing policy reports as its denials do.
  ['a rule\'s own mode: report', policy('any').replace('    ports: any', '    ports: any\n    tls: sni-must-match\n    mode: report')],
])('tls: sni-must-match under %s', (_name, policyText) => {
  it('lets a mismatch through as would_deny by (sni), and the handshake completes', async () => {
    const origin = await startTlsOrigin();
    const proxy = await startProxy({ policies: { 'p.yaml': policyText }, hosts: { 'allowed.test': ['127.0.0.1'] } });
    try {
      const result = await tlsThrough(proxy.port, `allowed.test:${origin.port}`, 'other.test');
      expect(result).toEqual({ echoed: 'ping', error: null });
      const record = await proxy.waitForRecord((r) => r.sni === 'other.test');
      expect(record).toMatchObject({ decision: 'allow', would_deny: true, rule: '(sni)' });
    } finally {
      await proxy.close();
      await origin.close();
    }
  });
});

describe('tls: require', () => {
  it('refuses anything that is not a TLS ClientHello, and a client that sends nothing in time', async () => {
    const origin = await startTlsOrigin();
    const proxy = await startProxy({
      policies: { 'p.yaml': policy('require') },
      hosts: { 'allowed.test': ['127.0.0.1'] },
      timeouts: { helloMs: 1_000 },
    });
    try {
      const plain = await connectTunnel(proxy.port, `allowed.test:${origin.port}`);
      plain.write('GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n');
      const refused = await proxy.waitForRecord((r) => r.kind === 'connect' && r.rule === '(sni)' && r.reason.includes('not a TLS ClientHello'));
      expect(refused.decision).toBe('deny');
      plain.destroy();

      const silent = await connectTunnel(proxy.port, `allowed.test:${origin.port}`);
      const timedOut = await proxy.waitForRecord((r) => r.kind === 'connect' && r.rule === '(sni)' && r.reason.includes('within 1000 ms'));
      expect(timedOut.decision).toBe('deny');
      silent.destroy();
      expect(origin.received()).toBe(0);

      const result = await tlsThrough(proxy.port, `allowed.test:${origin.port}`, 'allowed.test');
      expect(result).toEqual({ echoed: 'ping', error: null });
    } finally {
      await proxy.close();
      await origin.close();
    }
  });
});
