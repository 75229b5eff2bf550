import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { makeTestCa, startHttpsOrigin } from './helpers/inspection-pki';
import type { HttpsOrigin, TestCa } from './helpers/inspection-pki';
import { listeningPorts, runCli, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';

/**
 * `tls: inspect` in a real `tollgate serve` (SPEC §6): the CA from `tollgate ca init`, loaded by
 * --inspect-ca, with one process and with workers; and the warning when a policy inspects but
 * no CA is configured.
 */

jest.setTimeout(60_000);
const run = promisify(execFile);

const POLICY = `version: 1
settings:
  default: deny
network:
  allow_ranges: [127.0.0.0/8]
rules:
  - name: loopback-org
    action: allow
    hosts: [127.0.0.1]
    ports: any
    paths: ["/org/**"]
    tls: inspect
`;

let originCa: TestCa;
let origin: HttpsOrigin;

beforeAll(async () => {
  originCa = makeTestCa('serve-origin-ca');
  origin = await startHttpsOrigin(originCa, ['127.0.0.1'], (req, res) => {
    req.resume();
    res.end(`origin: ${req.url}`);
  });
});

afterAll(async () => {
  await origin.close();
  originCa.remove();
});

async function stop(proc: ServeProcess): Promise<void> {
  proc.child.kill('SIGTERM');
  await proc.exited;
}

test('a policy that inspects without --inspect-ca: serve warns at start, and the tunnel is refused', async () => {
  const folder = serveFolder('tollgate-inspect-serve-', POLICY);
  const proc = spawnServe(serveArgs(folder));
  try {
    const { proxyPort } = await listeningPorts(proc);
    const warning = await proc.waitForLogStarting('rules say tls: inspect, but there is no --inspect-ca');
    expect(warning.rules).toEqual(['loopback-org']);
    const refused = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_connect}', '--proxy', `http://127.0.0.1:${proxyPort}`, '-k', `https://127.0.0.1:${origin.port}/org/x`])
      .catch((err: { stdout: string }) => err);
    expect(refused.stdout).toBe('403');
  } finally {
    await stop(proc);
    folder.remove();
  }
});

describe.each([1, 2])('serve --inspect-ca with %i worker(s)', (workers) => {
  let folder: ServeFolder;
  let proc: ServeProcess;
  let proxyPort: number;

  beforeAll(async () => {
    folder = serveFolder('tollgate-inspect-serve-', POLICY);
    const init = runCli('ca', 'init', '--out', path.join(folder.dir, 'ca'));
    expect(init.status).toBe(0);
    proc = spawnServe(serveArgs(folder, '--inspect-ca', path.join(folder.dir, 'ca'), '--inspect-trust', originCa.file, '--workers', String(workers)));
    ({ proxyPort } = await listeningPorts(proc));
  });

  afterAll(async () => {
    await stop(proc);
    folder.remove();
  });

  test('curl trusting the CA gets an allowed path through and a denied one refused inside TLS', async () => {
    const curl = (urlPath: string): Promise<string> => run('curl', ['-sS', '-i', '--proxy', `http://127.0.0.1:${proxyPort}`, '--cacert', path.join(folder.dir, 'ca', 'ca.pem'),
      `https://127.0.0.1:${origin.port}${urlPath}`]).then(({ stdout }) => stdout);
    const allowed = await curl('/org/ok');
    expect(allowed).toContain('HTTP/1.1 200 OK');
    expect(allowed).toContain('origin: /org/ok');
    const denied = await curl('/private');
    expect(denied).toContain('HTTP/1.1 403 Forbidden');
    expect(denied).toMatch(/X-Tollgate-Rule: \(default\)/i);
    expect(proc.lines.some((line) => line.msg.startsWith('rules say tls: inspect'))).toBe(false);
  });
});
