import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadInspection } from '../src/inspect/ca';
import { metricValue, waitFor } from './helpers/fleet-ship';
import { handshake } from './helpers/inspect-ca';
import { listeningPorts, runCli, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';

function openssl(...args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8' });
}

function modeOf(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

/** The base64 lines of a PEM key: none may appear in any output. */
function keyLines(file: string): string[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.length > 0 && !line.startsWith('-----'));
}

describe('tollgate ca init (the built CLI)', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-ca-init-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes ca.pem 0644 and ca-key.pem 0600: a P-256 CA, pathlen 0, keyCertSign and cRLSign, the default name and 365 days', () => {
    const out = path.join(dir, 'ca');
    // A permissive umask: the key must still be 0600, as created (never chmod-ed after).
    const run = execFileSync('sh', ['-c', `umask 000 && exec "$0" "$@"`, process.execPath, path.join(__dirname, '..', 'dist', 'cli.js'), 'ca', 'init', '--out', out], { encoding: 'utf8' });
    expect(run).toContain(`wrote ${out}/ca.pem (certificate, 0644) and ${out}/ca-key.pem (private key, 0600)`);
    expect(modeOf(path.join(out, 'ca-key.pem'))).toBe(0o600);
    expect(modeOf(path.join(out, 'ca.pem'))).toBe(0o644);
    expect(modeOf(out)).toBe(0o700);
    const text = openssl('x509', '-noout', '-text', '-in', path.join(out, 'ca.pem'));
    expect(text).toContain(`Subject: CN = tollgate inspection CA (${os.hostname()})`);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(text).toContain('ASN1 OID: prime256v1');
    expect(text).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(text).not.toContain('Name Constraints');
    const cert = new X509Certificate(fs.readFileSync(path.join(out, 'ca.pem')));
    const days = (new Date(cert.validTo).getTime() - Date.now()) / 86_400_000;
    expect(Math.round(days)).toBe(365);
    expect(run).toContain(cert.fingerprint256);
    // The key is the certificate's, and OpenSSL reads it.
    expect(cert.checkPrivateKey(createPrivateKey(fs.readFileSync(path.join(out, 'ca-key.pem'))))).toBe(true);
    for (const line of keyLines(path.join(out, 'ca-key.pem'))) expect(run).not.toContain(line);
  });

  it('--permit adds a critical name constraint: the domains permitted, every address excluded; --name and --days apply', () => {
    const run = runCli('ca', 'init', '--out', dir, '--name', 'Acme, Inc. egress CA', '--days', '30', '--permit', 'github.com', '--permit', '.corp.example', '--permit', 'GitHub.com');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('permits:     github.com, .corp.example');
    const text = openssl('x509', '-noout', '-text', '-in', path.join(dir, 'ca.pem'));
    expect(text).toContain('Subject: CN = "Acme, Inc. egress CA"');
    expect(text).toMatch(/X509v3 Name Constraints: critical\s+Permitted:\s+DNS:github\.com\s+DNS:\.corp\.example\s+Excluded:\s+IP:0\.0\.0\.0\/0\.0\.0\.0\s+IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0/);
    const cert = new X509Certificate(fs.readFileSync(path.join(dir, 'ca.pem')));
    expect(Math.round((new Date(cert.validTo).getTime() - Date.now()) / 86_400_000)).toBe(30);
  });

  it('a CA made with --permit: a real client trusting it accepts a permitted leaf, and the issuer refuses any other host', async () => {
    expect(runCli('ca', 'init', '--out', dir, '--permit', 'example.com').status).toBe(0);
    const issuer = await loadInspection(dir, null);
    const caPem = fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8');
    expect((await handshake(await issuer.contextFor('api.example.com'), 'api.example.com', caPem)).ok).toBe(true);
    await expect(issuer.contextFor('github.com')).rejects.toThrow('the inspection CA may not vouch for github.com: its name constraints permit example.com');
  });

  it('refuses to overwrite either file, and leaves them as they were', () => {
    expect(runCli('ca', 'init', '--out', dir).status).toBe(0);
    const before = [fs.readFileSync(path.join(dir, 'ca.pem')), fs.readFileSync(path.join(dir, 'ca-key.pem'))];
    const again = runCli('ca', 'init', '--out', dir);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain(`refusing to overwrite ${dir}/ca.pem and ${dir}/ca-key.pem`);
    expect([fs.readFileSync(path.join(dir, 'ca.pem')), fs.readFileSync(path.join(dir, 'ca-key.pem'))]).toEqual(before);
    fs.rmSync(path.join(dir, 'ca.pem'));
    const keyOnly = runCli('ca', 'init', '--out', dir);
    expect(keyOnly.status).toBe(1);
    expect(keyOnly.stderr).toContain(`refusing to overwrite ${dir}/ca-key.pem`);
    expect(fs.existsSync(path.join(dir, 'ca.pem'))).toBe(false);
  });

  it.each([
    [['--permit', '*.github.com'], 'no wildcards; "github.com" already covers every name under it'],
    [['--permit', '10.0.0.0/8'], 'names a DNS domain, not an address'],
    [['--days', '0'], '--days: expected a whole number from 1 to 3650'],
    [['--days', 'ten'], '--days: expected a whole number from 1 to 3650'],
    [['--name', ''], '--name: expected a printable name'],
    [['--bogus'], "Unknown option '--bogus'"],
  ])('refuses bad input %j with exit 2 and writes nothing', (args, message) => {
    const run = runCli('ca', 'init', '--out', dir, ...args);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(message);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('needs --out; --help says what it does', () => {
    const run = runCli('ca', 'init');
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('--out DIR is required');
    const help = runCli('ca', 'init', '--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--permit DOMAIN');
    expect(runCli('--help').stdout).toContain('tollgate ca init --out DIR');
  });
});

describe('serve --inspect-ca', () => {
  let folder: ServeFolder;
  let caDir: string;
  const running: ServeProcess[] = [];

  beforeAll(() => {
    folder = serveFolder('tollgate-inspect-serve-');
    caDir = path.join(folder.dir, 'ca');
    expect(runCli('ca', 'init', '--out', caDir, '--days', '45').status).toBe(0);
  });

  afterEach(async () => {
    for (const proc of running.splice(0)) {
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
    }
  });

  afterAll(() => folder.remove());

  const serve = (...extra: string[]): ServeProcess => {
    const proc = spawnServe(serveArgs(folder, ...extra));
    running.push(proc);
    return proc;
  };

  it('refuses a CA key readable by others: exit 1, the file named, no key bytes anywhere', async () => {
    const keyFile = path.join(caDir, 'ca-key.pem');
    fs.chmodSync(keyFile, 0o644);
    try {
      const proc = serve('--inspect-ca', caDir);
      const exit = await proc.exited;
      expect(exit.code).toBe(1);
      expect(proc.stderr).toContain(`tollgate serve: --inspect-ca: ${keyFile}: the CA key is readable or writable by group or others (mode 0644); chmod 600 it`);
      const everything = proc.stderr + JSON.stringify(proc.lines);
      for (const line of keyLines(keyFile)) expect(everything).not.toContain(line);
      expect(everything).not.toContain('PRIVATE KEY');
      // Refused before the audit file was opened.
      expect(fs.existsSync(folder.dbFile)).toBe(false);
    } finally {
      fs.chmodSync(keyFile, 0o600);
    }
  });

  it('refuses --inspect-trust without --inspect-ca, and a trust file with no certificate', async () => {
    const lone = serve('--inspect-trust', path.join(caDir, 'ca.pem'));
    expect((await lone.exited).code).toBe(1);
    expect(lone.stderr).toContain('nothing is inspected without --inspect-ca DIR');
    const empty = path.join(folder.dir, 'empty.pem');
    fs.writeFileSync(empty, '\n');
    const bad = serve('--inspect-ca', caDir, '--inspect-trust', empty);
    expect((await bad.exited).code).toBe(1);
    expect(bad.stderr).toContain(`${empty}: holds no PEM certificate`);
  });

  it('serves with the CA (from TOLLGATE_INSPECT_CA too): the start is logged without key material, /metrics shows its expiry and the leaf counters', async () => {
    const proc = spawnServe(serveArgs(folder, '--inspect-trust', path.join(caDir, 'ca.pem')), { TOLLGATE_INSPECT_CA: caDir });
    running.push(proc);
    const { adminPort } = await listeningPorts(proc);
    const loaded = proc.lines.find((line) => line.msg === 'TLS inspection CA loaded');
    expect(loaded).toMatchObject({ inspect_ca: caDir, ca_permits: null, inspect_trust_certificates: 1 });
    expect(String(loaded?.ca_subject)).toContain('tollgate inspection CA');
    for (const line of keyLines(path.join(caDir, 'ca-key.pem'))) expect(JSON.stringify(proc.lines)).not.toContain(line);
    const days = await metricValue(adminPort, 'tollgate_inspect_ca_expiry_days');
    expect(days).toBeGreaterThan(44.9);
    expect(days).toBeLessThan(45.01);
    expect(await metricValue(adminPort, 'tollgate_inspect_leaf_mints_total')).toBe(0);
    expect(await metricValue(adminPort, 'tollgate_inspect_leaf_cache_hits_total')).toBe(0);
    expect(await metricValue(adminPort, 'tollgate_inspect_leaf_mint_seconds_count')).toBe(0);
    expect(await metricValue(adminPort, 'tollgate_inspect_leaf_cache_entries')).toBe(0);
  });

  it('without --inspect-ca /metrics shows no inspection metrics', async () => {
    const { adminPort } = await listeningPorts(serve());
    expect(await metricValue(adminPort, 'tollgate_inspect_ca_expiry_days')).toBeNull();
    expect(await metricValue(adminPort, 'tollgate_inspect_leaf_mints_total')).toBeNull();
  });

  it('with --workers 2 every worker loads the CA and the primary reports its expiry once, not summed', async () => {
    const proc = serve('--inspect-ca', caDir, '--workers', '2');
    const { adminPort } = await listeningPorts(proc);
    await waitFor('both workers listening', async () => {
      const body = (await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).json()) as { workers?: Array<{ state: string }> };
      return body.workers?.filter((w) => w.state === 'listening').length === 2 ? true : undefined;
    });
    const days = await metricValue(adminPort, 'tollgate_inspect_ca_expiry_days');
    expect(days).toBeGreaterThan(44.9);
    expect(days).toBeLessThan(45.01);
    // Only workers hold a leaf cache: its gauge comes from them (the primary has no sample).
    expect(await metricValue(adminPort, 'tollgate_inspect_leaf_cache_entries')).toBe(0);
    expect(await metricValue(adminPort, 'tollgate_inspect_leaf_mints_total')).toBe(0);
    expect(proc.lines.filter((line) => line.msg === 'TLS inspection CA loaded')).toHaveLength(1);
    expect(proc.lines.filter((line) => line.msg === 'worker could not start')).toEqual([]);
  });
});
