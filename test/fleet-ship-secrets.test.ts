import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { metricValue, pgRecords, proxyGet, readyz, waitFor } from './helpers/fleet-ship';
import { describePg, destroyPostgres, startPostgres } from './helpers/postgres';
import type { PostgresServer } from './helpers/postgres';
import { listeningPorts, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';
import { makeCa, makeServerCertificate } from './helpers/throwaway-ca';
import type { ThrowawayCa } from './helpers/throwaway-ca';

jest.setTimeout(90_000);

/** A role with a password; the characters that need encoding in a URL too. */
const PASSWORD = 'Tg-s3cret:p@ss/w0rd%';
const ROLE = 'shipper';

/**
 * A PostgreSQL server with ssl=on (a throwaway CA made with openssl) where the shipper role
 * must use TLS and a password (scram-sha-256). The password never shows in serve's output,
 * /metrics or /readyz, whatever happens; verify-full with the right CA ships, a wrong CA is
 * reported and egress goes on.
 */
describePg('shipping over TLS with a password', () => {
  let server: PostgresServer;
  let certs: ThrowawayCa;
  let certDir: string;
  let folder: ServeFolder;
  const running: ServeProcess[] = [];

  beforeAll(async () => {
    certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-pg-ca-'));
    certs = makeServerCertificate(certDir);
    server = await startPostgres({
      conf: ['ssl = on', `ssl_cert_file = '${certs.serverCert}'`, `ssl_key_file = '${certs.serverKey}'`],
      hba: ['local all all trust', 'host all tollgate 127.0.0.1/32 trust', `hostssl all ${ROLE} 127.0.0.1/32 scram-sha-256`],
    });
    server.sql(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${PASSWORD}'`);
  });
  afterAll(() => {
    destroyPostgres(server);
    fs.rmSync(certDir, { recursive: true, force: true });
  });
  beforeEach(() => {
    folder = serveFolder('tollgate-ship-secrets-');
  });
  afterEach(async () => {
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    folder.remove();
  });

  let dbCounter = 0;
  /** A database the shipper role owns (so it may run the migrations), and its TLS URL. */
  function shipperUrl(ca: string, password = PASSWORD): { url: string; superuser: string } {
    const name = `secure_${dbCounter++}`;
    server.sql(`CREATE DATABASE ${name} OWNER ${ROLE}`);
    return { url: `${server.url(name, ROLE, password)}?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}`, superuser: server.url(name) };
  }

  async function serve(args: string[], env: NodeJS.ProcessEnv = {}) {
    const proc = spawnServe(serveArgs(folder, ...args), env);
    running.push(proc);
    return { proc, ...(await listeningPorts(proc)) };
  }

  /** Everything serve showed: its output, /metrics and /readyz. */
  async function everythingShown(proc: ServeProcess, adminPort: number): Promise<string> {
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const ready = JSON.stringify((await readyz(adminPort)).body);
    return [JSON.stringify(proc.lines), proc.stderr, metrics, ready].join('\n');
  }

  function expectNoPassword(text: string, password = PASSWORD): void {
    expect(text).not.toContain(password);
    expect(text).not.toContain(encodeURIComponent(password));
  }

  test('verify-full with the right CA ships over TLS; the password shows nowhere (URL from --audit-url-file)', async () => {
    const { url, superuser } = shipperUrl(certs.caCert);
    const urlFile = path.join(folder.dir, 'audit-url');
    fs.writeFileSync(urlFile, `${url}\n`, { mode: 0o600 });
    const { proc, proxyPort, adminPort } = await serve(['--audit-url-file', urlFile, '--node', 'tls-node']);
    for (let i = 0; i < 10; i += 1) expect(await proxyGet(proxyPort, `http://s${i}.denied.example/`)).toBe(403);
    await waitFor('10 records in PostgreSQL', async () => (await pgRecords(superuser)).length === 10);
    const client = new Client({ connectionString: superuser });
    await client.connect();
    try {
      const ssl = await client.query<{ ssl: boolean }>('SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = $1', [ROLE]);
      expect(ssl.rows.length).toBeGreaterThan(0);
      expect(ssl.rows.every((r) => r.ssl)).toBe(true);
    } finally {
      await client.end();
    }
    const started = proc.lines.find((l) => l.msg === 'shipping audit records to PostgreSQL');
    expect(String(started?.audit_url)).toContain(`${ROLE}:***@127.0.0.1`);
    expectNoPassword(await everythingShown(proc, adminPort));
    proc.child.kill('SIGTERM');
    await proc.exited;
    expectNoPassword(JSON.stringify(proc.lines) + proc.stderr);
  });

  test('a wrong CA is reported, not a crash: egress goes on, the backlog waits', async () => {
    const wrongCa = makeCa(path.join(certDir, 'other'), 'other-ca');
    const { url } = shipperUrl(wrongCa);
    const { proc, proxyPort, adminPort } = await serve(['--node', 'tls-node'], { TOLLGATE_AUDIT_URL: url });
    for (let i = 0; i < 5; i += 1) expect(await proxyGet(proxyPort, `http://w${i}.denied.example/`)).toBe(403);
    const ready = await waitFor('the TLS failure in /readyz', async () => {
      const r = await readyz(adminPort);
      const ship = r.body.ship as { last_error: string | null; backlog_records: number };
      return ship.last_error !== null && ship.backlog_records >= 5 ? r : undefined;
    });
    expect(ready.status).toBe(200);
    expect((ready.body.ship as { last_error: string }).last_error).toMatch(/certificate/i);
    const line = await proc.waitForLogStarting('shipping audit records to PostgreSQL failed');
    expect(String(line.err)).toMatch(/certificate/i);
    expect(await metricValue(adminPort, 'tollgate_audit_ship_failures_total')).toBeGreaterThan(0);
    expect(proc.child.exitCode).toBeNull();
    expectNoPassword(await everythingShown(proc, adminPort));
  });

  test('a wrong password is reported without echoing either password', async () => {
    const wrong = 'Wr0ng-pa55word!';
    const { url } = shipperUrl(certs.caCert, wrong);
    const { proc, adminPort } = await serve([], { TOLLGATE_AUDIT_URL: url });
    const line = await proc.waitForLogStarting('shipping audit records to PostgreSQL failed');
    expect(String(line.err)).toMatch(/password authentication failed/);
    const shown = await everythingShown(proc, adminPort);
    expectNoPassword(shown, wrong);
    expectNoPassword(shown);
  });

  test('/readyz is open: only a request with the admin token sees the error text and the store id', async () => {
    const token = 'an-admin-token-for-readyz';
    const { url } = shipperUrl(certs.caCert, 'Wr0ng-pa55word!');
    const { proc, adminPort } = await serve([], { TOLLGATE_AUDIT_URL: url, TOLLGATE_ADMIN_TOKEN: token });
    await proc.waitForLogStarting('shipping audit records to PostgreSQL failed');
    const authenticated = await waitFor('a failing ship status', async () => {
      const ship = (await readyz(adminPort, { authorization: `Bearer ${token}` })).body.ship as Record<string, unknown> | undefined;
      return ship?.failing === true ? ship : undefined;
    });
    expect(authenticated).toMatchObject({ failing: true, last_error: expect.stringMatching(/password authentication failed for user "shipper"/), store_id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    // Without the token /readyz says only ready or not (issue 19): no detail at all.
    const open = (await readyz(adminPort)).body;
    expect(Object.keys(open)).toEqual(['ready']);
    expect(JSON.stringify(open)).not.toMatch(/password authentication|shipper|secure_/);
    expect(Object.keys((await readyz(adminPort, { authorization: 'Bearer nope' })).body)).toEqual(['ready']);
  });
});
