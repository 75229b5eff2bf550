import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOrigin, startProxy } from './helpers/proxy-harness';
import type { Origin, ProxyHarness } from './helpers/proxy-harness';
import { PROXY_TEST_HOSTS, workloadsPolicy } from './helpers/policies';
import { freePort } from './helpers/free-port';
import { describeWithHaproxy, HAPROXY } from './helpers/haproxy';

/**
 * A real HAProxy (Debian's 2.6) in front of tollgate, as docs/operations.md "Behind a load balancer" sets it
 * up: `mode tcp`, `send-proxy-v2` to the server, health checks with `check-send-proxy` (a v2
 * LOCAL header, then a close). The client binds 127.0.0.2 so its address differs from
 * HAProxy's 127.0.0.1.
 */

const POLICY = workloadsPolicy(['127.0.0.2/32'], 'origin.test');


function haproxyConfig(frontendPort: number, proxyPort: number): string {
  return `global
  maxconn 200
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend workloads
  bind 127.0.0.1:${frontendPort}
  default_backend tollgate
backend tollgate
  server t1 127.0.0.1:${proxyPort} send-proxy-v2 check check-send-proxy inter 100ms
`;
}

/** Resolves once something accepts connections on the port (HAProxy bound its frontend). */
async function waitForListener(port: number, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ port, host: '127.0.0.1' }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listened on ${port} within ${limitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** One request through HAProxy from 127.0.0.2; resolves with every byte answered. */
function requestFrom127002(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' }, () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', reject);
  });
}

const describeHaproxy = describeWithHaproxy();

describeHaproxy('a real HAProxy in front, send-proxy-v2 and check-send-proxy', () => {
  let proxy: ProxyHarness;
  let origin: Origin;
  let haproxy: ChildProcess;
  let dir: string;
  let frontendPort: number;
  let accepted = 0;
  let output = '';

  beforeAll(async () => {
    origin = await startOrigin((req, res) => res.end(`origin saw ${req.url}`));
    proxy = await startProxy({ policies: { 'p.yaml': POLICY }, hosts: PROXY_TEST_HOSTS, proxyProtocolFrom: ['127.0.0.1/32'] });
    proxy.server.on('connection', () => (accepted += 1));
    dir = mkdtempSync(path.join(tmpdir(), 'tollgate-haproxy-'));
    frontendPort = await freePort();
    const cfg = path.join(dir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig(frontendPort, proxy.port));
    haproxy = spawn(HAPROXY, ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout?.on('data', (c: Buffer) => (output += c.toString()));
    haproxy.stderr?.on('data', (c: Buffer) => (output += c.toString()));
    await waitForListener(frontendPort);
  });

  afterAll(async () => {
    if (haproxy.exitCode === null) {
      const exited = new Promise((resolve) => haproxy.once('exit', resolve));
      haproxy.kill('SIGTERM');
      await exited;
    }
    await proxy.close();
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('health checks (a LOCAL header, then a close) reach tollgate and leave no record', async () => {
    const deadline = Date.now() + 10_000;
    // Besides the checks, waitForListener's probe reached tollgate too: a PROXY header, then a close.
    while (accepted < 5 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(accepted).toBeGreaterThanOrEqual(5);
    proxy.flushAudit();
    expect(proxy.records()).toEqual([]);
    expect(await proxy.ctx.metrics.registry.metrics()).toMatch(/^tollgate_proxy_protocol_refused_total\{reason="malformed"\} 0$/m);
    expect(output).not.toMatch(/is DOWN/);
  });

  it('a request through HAProxy is recorded with the client\'s address, HAProxy as peer_ip', async () => {
    const text = await requestFrom127002(frontendPort, `GET http://origin.test:${origin.port}/through-haproxy HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n`);
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text).toContain('origin saw /through-haproxy');
    const record = await proxy.waitForRecord((r) => r.path === '/through-haproxy' && r.ended_at !== null);
    expect(record).toMatchObject({ client_ip: '127.0.0.2', peer_ip: '127.0.0.1', clients: ['workloads'], decision: 'allow', status: 200 });
    expect(record.client_port).toBeGreaterThan(0);
  });

  it('a CONNECT tunnel through HAProxy too', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const socket = connect({ port: frontendPort, host: '127.0.0.1', localAddress: '127.0.0.2' }, () => {
        socket.write(`CONNECT origin.test:${origin.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
      });
      let seen = '';
      socket.on('data', (c: Buffer) => {
        seen += c.toString('latin1');
        if (seen.includes('\r\n\r\n') && !seen.includes('GET')) {
          socket.write('GET /in-tunnel HTTP/1.1\r\nHost: origin.test\r\nConnection: close\r\n\r\n');
          seen += 'GET';
        }
      });
      socket.on('close', () => resolve(seen));
      socket.on('error', reject);
    });
    expect(text).toMatch(/^HTTP\/1\.1 200 Connection Established/);
    expect(text).toContain('origin saw /in-tunnel');
    const record = await proxy.waitForRecord((r) => r.kind === 'connect' && r.ended_at !== null);
    expect(record).toMatchObject({ client_ip: '127.0.0.2', peer_ip: '127.0.0.1', clients: ['workloads'] });
  });
});
