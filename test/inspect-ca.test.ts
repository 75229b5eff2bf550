import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { webcrypto, X509Certificate } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { InspectCaError, LEAF_CACHE_SIZE, LeafIssuer, LeafRefusedError, loadInspectCa, loadInspection, loadUpstreamTrust } from '../src/inspect/ca';
import type { LeafIssuerOptions } from '../src/inspect/ca';
import { CLOCK_SKEW_MS } from '../src/inspect/ca-create';
import { LEAF_VALIDITY_MS, leafNameOf, mintLeaf, newLeafKey } from '../src/inspect/leaf';
import { parsePermitDomain, permitsHost } from '../src/inspect/name-constraints';
import { x509 } from '../src/inspect/x509';
import { createMetrics } from '../src/metrics';
import { createLogger } from '../src/log';
import { openInspection } from '../src/serve-inspect';
import { makeCa } from './helpers/throwaway-ca';
import { handshake, writeCaFolder } from './helpers/inspect-ca';
import type { CaFolder } from './helpers/inspect-ca';
import { testServeConfig } from './helpers/serve-config';

interface LeafCounts { mints: number; hits: number; joined: number; cached: number }

/** An issuer whose observer tallies contextFor's outcomes as the metrics do; stats() adds the cache's size. */
async function countedIssuer(dir: string, options: LeafIssuerOptions = {}): Promise<{ issuer: LeafIssuer; stats: () => LeafCounts }> {
  const counts = { mints: 0, hits: 0, joined: 0 };
  const observer = {
    minted: (): void => { counts.mints += 1; },
    hit: (how: 'hit' | 'joined'): void => { counts[how === 'hit' ? 'hits' : 'joined'] += 1; },
  };
  const issuer = await loadInspection(dir, null, { ...options, observer });
  return { issuer, stats: () => ({ ...counts, cached: issuer.stats().cached }) };
}

/** The base64 body of a PEM key, line by line: none of it may appear in any message. */
function keyLines(pem: string): string[] {
  return pem.split('\n').filter((line) => line.length > 0 && !line.startsWith('-----'));
}

async function refusal(run: () => Promise<unknown>): Promise<Error> {
  try {
    await run();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a refusal');
}

describe('loadInspectCa refuses a CA it must not serve with', () => {
  const folders: CaFolder[] = [];
  const fresh = async (request = {}): Promise<CaFolder> => {
    const folder = await writeCaFolder(request);
    folders.push(folder);
    return folder;
  };
  afterAll(() => folders.forEach((f) => f.remove()));

  it('loads a good CA: P-256, its expiry, no constraints, its fingerprint', async () => {
    const folder = await fresh({ days: 30 });
    const ca = await loadInspectCa(folder.dir);
    expect(ca.signingAlgorithm).toEqual({ name: 'ECDSA', hash: 'SHA-256' });
    expect(Math.round((ca.notAfter.getTime() - Date.now()) / 86_400_000)).toBe(30);
    expect(ca.constraints).toBeNull();
    expect(ca.fingerprint).toBe(new X509Certificate(folder.certPem).fingerprint256);
    expect(ca.signingKey.extractable).toBe(false);
  });

  it.each([0o644, 0o640, 0o604, 0o620, 0o602])('a key file with mode %o (group or others may read or write it)', async (mode) => {
    const folder = await fresh();
    fs.chmodSync(folder.keyFile, mode);
    const err = await refusal(() => loadInspectCa(folder.dir));
    expect(err).toBeInstanceOf(InspectCaError);
    expect(err.message).toContain(folder.keyFile);
    expect(err.message).toContain(`mode 0${mode.toString(8)}`);
    expect(err.message).toContain('chmod 600');
    for (const line of keyLines(folder.keyPem)) expect(err.message).not.toContain(line);
  });

  it('accepts 0400 (read-only owner), as a Kubernetes secret with defaultMode 0400 gives', async () => {
    const folder = await fresh();
    fs.chmodSync(folder.keyFile, 0o400);
    await expect(loadInspectCa(folder.dir)).resolves.toBeDefined();
  });

  it('a missing certificate or key file, naming the file and ca init', async () => {
    const noKey = await fresh();
    fs.rmSync(noKey.keyFile);
    expect((await refusal(() => loadInspectCa(noKey.dir))).message).toBe(`${noKey.keyFile}: missing; create the CA with: tollgate ca init --out ${noKey.dir}`);
    const noCert = await fresh();
    fs.rmSync(noCert.certFile);
    expect((await refusal(() => loadInspectCa(noCert.dir))).message).toContain(`${noCert.certFile}: missing`);
    expect((await refusal(() => loadInspectCa(path.join(os.tmpdir(), 'no-such-tollgate-ca')))).message).toContain('missing');
  });

  it('a key that does not match the certificate', async () => {
    const folder = await fresh();
    const other = await fresh();
    fs.writeFileSync(folder.keyFile, other.keyPem);
    const err = await refusal(() => loadInspectCa(folder.dir));
    expect(err.message).toBe(`${folder.keyFile}: the key does not match the certificate in ${folder.certFile}`);
    for (const line of [...keyLines(folder.keyPem), ...keyLines(other.keyPem)]) expect(err.message).not.toContain(line);
  });

  it('a key file that is no key, without echoing what it holds', async () => {
    const folder = await fresh();
    const secretish = 'c2VjcmV0IGJ5dGVzIHRoYXQgbXVzdCBuZXZlciBiZSBlY2hvZWQ=';
    fs.writeFileSync(folder.keyFile, `-----BEGIN PRIVATE KEY-----\n${secretish}\n-----END PRIVATE KEY-----\n`);
    const err = await refusal(() => loadInspectCa(folder.dir));
    expect(err.message).toMatch(/ca-key\.pem: not an unencrypted PEM private key/);
    expect(err.message).not.toContain(secretish);
  });

  it('a certificate that is not a CA', async () => {
    const folder = await fresh();
    // A self-signed certificate over the same key, CA:FALSE: the key matches, the role does not.
    const key = await x509.PemConverter.decodeFirst(folder.keyPem);
    const privateKey = await webcrypto.subtle.importKey('pkcs8', key, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign']);
    const publicKey = await new x509.X509Certificate(folder.certPem).publicKey.export();
    const leafish = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=not a CA', keys: { privateKey, publicKey }, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
    });
    fs.writeFileSync(folder.certFile, leafish.toString('pem'));
    expect((await refusal(() => loadInspectCa(folder.dir))).message).toBe(`${folder.certFile}: not a CA certificate (basicConstraints CA:TRUE is missing)`);
  });

  it('an expired CA, and one not valid yet', async () => {
    const expired = await fresh({ now: new Date(Date.now() - 3 * 86_400_000), days: 2 });
    expect((await refusal(() => loadInspectCa(expired.dir))).message).toMatch(/ca\.pem: the CA expired on \d{4}-.*create a new one/);
    const future = await fresh({ now: new Date(Date.now() + 86_400_000), days: 30 });
    expect((await refusal(() => loadInspectCa(future.dir))).message).toMatch(/not valid before .*clock/);
  });

  it('a damaged or empty certificate file', async () => {
    const folder = await fresh();
    fs.writeFileSync(folder.certFile, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect((await refusal(() => loadInspectCa(folder.dir))).message).toBe(`${folder.certFile}: holds a damaged PEM certificate`);
    fs.writeFileSync(folder.certFile, 'nothing here\n');
    expect((await refusal(() => loadInspectCa(folder.dir))).message).toBe(`${folder.certFile}: holds no PEM certificate`);
  });

  it('loads a team\'s own RSA CA (openssl) and mints leaves it signs', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-rsa-ca-'));
    try {
      makeCa(dir, 'ca');
      fs.chmodSync(path.join(dir, 'ca-key.pem'), 0o600);
      const issuer = await loadInspection(dir, null);
      expect(issuer.ca.signingAlgorithm.name).toBe('RSASSA-PKCS1-v1_5');
      const result = await handshake(await issuer.contextFor('rsa.example'), 'rsa.example', fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8'));
      expect(result.ok).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a CA with a P-384 key (openssl)', () => {
  it('signs leaves with ECDSA SHA-384 that a client accepts', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-p384-ca-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp384r1', '-nodes', '-days', '2', '-subj', '/CN=p384',
        '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'], { cwd: dir, stdio: 'pipe' });
      fs.chmodSync(path.join(dir, 'ca-key.pem'), 0o600);
      const issuer = await loadInspection(dir, null);
      expect(issuer.ca.signingAlgorithm).toEqual({ name: 'ECDSA', hash: 'SHA-384' });
      const result = await handshake(await issuer.contextFor('p384.example'), 'p384.example', fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8'));
      if (!result.ok) throw new Error(result.message);
      expect(result.peer.subjectaltname).toBe('DNS:p384.example');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('leaf certificates', () => {
  let folder: CaFolder;
  beforeAll(async () => {
    folder = await writeCaFolder();
  });
  afterAll(() => folder.remove());

  it('are ECDSA P-256, SAN and CN = the host, not a CA, serverAuth, 24 h backdated 5 min; a real client trusting the CA accepts them', async () => {
    const issuer = await loadInspection(folder.dir, null);
    const before = Date.now();
    const context = await issuer.contextFor('api.github.com');
    const result = await handshake(context, 'api.github.com', folder.certPem);
    if (!result.ok) throw new Error(result.message);
    expect(result.body).toBe('hello over inspected TLS');
    expect(result.peer.subjectaltname).toBe('DNS:api.github.com');
    expect(result.peer.subject.CN).toBe('api.github.com');
    // The chain served: the leaf, then the CA.
    expect(result.chainLength).toBe(2);
    const leaf = new X509Certificate(result.peer.raw);
    expect(leaf.ca).toBe(false);
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(leaf.checkIssued(new X509Certificate(folder.certPem))).toBe(true);
    const notBefore = new Date(leaf.validFrom).getTime();
    const notAfter = new Date(leaf.validTo).getTime();
    // Certificates hold whole seconds.
    expect(Math.abs(notBefore - (before - CLOCK_SKEW_MS))).toBeLessThan(5000);
    expect(Math.abs(notAfter - (before + LEAF_VALIDITY_MS))).toBeLessThan(5000);
  });

  it('for another host fail the client\'s identity check; a client not trusting the CA refuses them', async () => {
    const issuer = await loadInspection(folder.dir, null);
    const context = await issuer.contextFor('api.github.com');
    const wrongName = await handshake(context, 'gist.github.com', folder.certPem);
    expect(wrongName).toMatchObject({ ok: false, code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    const other = await writeCaFolder();
    try {
      const untrusted = await handshake(context, 'api.github.com', other.certPem);
      // The chain served ends in our CA, which this client does not trust.
      expect(untrusted).toMatchObject({ ok: false, code: 'SELF_SIGNED_CERT_IN_CHAIN' });
    } finally {
      other.remove();
    }
  });

  it.each([
    ['127.0.0.1', 'IP Address:127.0.0.1'],
    ['::1', 'IP Address:0:0:0:0:0:0:0:1'],
    ['[::1]', 'IP Address:0:0:0:0:0:0:0:1'],
  ])('for the IP literal %s carry an IP SAN the client matches', async (host, san) => {
    const issuer = await loadInspection(folder.dir, null);
    const result = await handshake(await issuer.contextFor(host), host.replace(/^\[|\]$/g, ''), folder.certPem);
    if (!result.ok) throw new Error(result.message);
    expect(result.peer.subjectaltname).toBe(san);
  });

  it('for a name longer than a CN may be have an empty subject and a critical SAN', async () => {
    const issuer = await loadInspection(folder.dir, null);
    const host = `${'a'.repeat(60)}.${'b'.repeat(20)}.example`;
    const result = await handshake(await issuer.contextFor(host), host, folder.certPem);
    if (!result.ok) throw new Error(result.message);
    expect(result.peer.subjectaltname).toBe(`DNS:${host}`);
    expect(result.peer.subject).toEqual({});
  });

  it('are refused for what is no host: a wildcard, an empty string, a label too long, an address in another spelling', async () => {
    const { issuer, stats } = await countedIssuer(folder.dir);
    for (const host of ['*.example.com', '', `${'a'.repeat(64)}.example`, 'a b.example', 'exa$mple.com', '127.1', '10.0.0.1/8']) {
      const err = await refusal(() => issuer.contextFor(host));
      expect(err).toBeInstanceOf(LeafRefusedError);
      expect((err as LeafRefusedError).code).toBe('inspect_invalid_host');
    }
    expect(stats().mints).toBe(0);
  });

  it('share one key (shared mode, the default) or get one each (per-leaf)', async () => {
    const spki = async (issuer: LeafIssuer, host: string): Promise<string> => {
      const result = await handshake(await issuer.contextFor(host), host, folder.certPem);
      if (!result.ok) throw new Error(result.message);
      return new X509Certificate(result.peer.raw).publicKey.export({ type: 'spki', format: 'der' }).toString('hex');
    };
    const shared = await loadInspection(folder.dir, null);
    expect(await spki(shared, 'a.example')).toBe(await spki(shared, 'b.example'));
    const perLeaf = await loadInspection(folder.dir, null, { leafKey: 'per-leaf' });
    expect(await spki(perLeaf, 'a.example')).not.toBe(await spki(perLeaf, 'b.example'));
  });

  it('never outlive their CA', async () => {
    const shortLived = await writeCaFolder({ days: 1, now: new Date(Date.now() - 23 * 3_600_000) });
    try {
      const ca = await loadInspectCa(shortLived.dir);
      const leaf = await mintLeaf(ca, { type: 'dns', value: 'x.example' }, await newLeafKey(), new Date());
      expect(leaf.notAfter.getTime()).toBe(ca.notAfter.getTime());
    } finally {
      shortLived.remove();
    }
  });
});

describe('the leaf cache', () => {
  let folder: CaFolder;
  beforeAll(async () => {
    folder = await writeCaFolder();
  });
  afterAll(() => folder.remove());

  it('is bounded (1,000 by default) and evicts the least recently used host', async () => {
    expect(LEAF_CACHE_SIZE).toBe(1000);
    const { issuer, stats } = await countedIssuer(folder.dir, { cacheSize: 3 });
    const a = await issuer.contextFor('a.example');
    await issuer.contextFor('b.example');
    await issuer.contextFor('c.example');
    // a is used again, so b is now the least recently used one.
    expect(await issuer.contextFor('a.example')).toBe(a);
    await issuer.contextFor('d.example');
    expect(stats()).toMatchObject({ mints: 4, hits: 1, cached: 3 });
    expect(await issuer.contextFor('a.example')).toBe(a);
    expect(await issuer.contextFor('c.example')).toBeDefined();
    expect(stats().mints).toBe(4);
    await issuer.contextFor('b.example');
    expect(stats()).toMatchObject({ mints: 5, cached: 3 });
  });

  it('shares one mint among concurrent calls for a host', async () => {
    const { issuer, stats } = await countedIssuer(folder.dir);
    const contexts = await Promise.all(Array.from({ length: 25 }, () => issuer.contextFor('burst.example')));
    expect(new Set(contexts).size).toBe(1);
    expect(stats()).toMatchObject({ mints: 1, joined: 24, hits: 0, cached: 1 });
    const result = await handshake(contexts[7], 'burst.example', folder.certPem);
    expect(result.ok).toBe(true);
  });

  it('mints again an hour before a leaf expires, and refuses once the CA has expired', async () => {
    let now = Date.now();
    const { issuer, stats } = await countedIssuer(folder.dir, { clock: () => new Date(now) });
    const first = await issuer.contextFor('renew.example');
    now += LEAF_VALIDITY_MS - 3_600_000 - 60_000;
    expect(await issuer.contextFor('renew.example')).toBe(first);
    now += 120_000;
    const second = await issuer.contextFor('renew.example');
    expect(second).not.toBe(first);
    expect(stats().mints).toBe(2);
    now = issuer.ca.notAfter.getTime() + 1000;
    const err = await refusal(() => issuer.contextFor('late.example'));
    expect(err).toBeInstanceOf(InspectCaError);
    expect(err.message).toMatch(/the inspection CA expired/);
    // A failed mint is not cached: the cache holds what it held.
    expect(stats()).toMatchObject({ mints: 2, cached: 1 });
  });
});

describe('name constraints (ca init --permit)', () => {
  let folder: CaFolder;
  beforeAll(async () => {
    folder = await writeCaFolder({ permit: ['example.com', '.corp.example'] });
  });
  afterAll(() => folder.remove());

  it('are read back from the CA and checked as RFC 5280 reads them', async () => {
    const ca = await loadInspectCa(folder.dir);
    expect(ca.constraints?.permittedDns).toEqual(['example.com', '.corp.example']);
    expect(ca.constraints?.excludedIp.map((r) => r.cidr)).toEqual(['0.0.0.0/0', '::/0']);
    const cases: Array<[string, boolean]> = [
      ['example.com', true], ['api.example.com', true], ['a.b.example.com', true], ['badexample.com', false],
      ['example.com.evil.org', false], ['corp.example', false], ['git.corp.example', true], ['127.0.0.1', false], ['::1', false],
    ];
    for (const [host, expected] of cases) expect([host, permitsHost(ca.constraints, host)]).toEqual([host, expected]);
  });

  it('let contextFor mint a permitted host and refuse any other, clearly', async () => {
    const issuer = await loadInspection(folder.dir, null);
    const ok = await handshake(await issuer.contextFor('api.example.com'), 'api.example.com', folder.certPem);
    expect(ok.ok).toBe(true);
    for (const host of ['github.com', '10.0.0.1', 'corp.example']) {
      const err = await refusal(() => issuer.contextFor(host));
      expect(err).toBeInstanceOf(LeafRefusedError);
      expect((err as LeafRefusedError).code).toBe('inspect_host_not_permitted');
      expect(err.message).toContain('permit example.com, .corp.example');
    }
  });

  it('are enforced by the client: a leaf the CA signs for another domain or an address is rejected in the handshake', async () => {
    const ca = await loadInspectCa(folder.dir);
    const key = await newLeafKey();
    const contextFor = async (host: string): Promise<SecureContext> => {
      const name = leafNameOf(host);
      if (name === null) throw new Error(host);
      const leaf = await mintLeaf(ca, name, key, new Date());
      return createSecureContext({ key: key.privatePem, cert: leaf.certPem + ca.chainPem });
    };
    const outside = await handshake(await contextFor('github.com'), 'github.com', folder.certPem);
    // Node has no code of its own for OpenSSL's X509_V_ERR_PERMITTED_VIOLATION: the message names it.
    expect(outside).toMatchObject({ ok: false, message: 'permitted subtree violation' });
    const address = await handshake(await contextFor('127.0.0.1'), '127.0.0.1', folder.certPem);
    expect(address).toMatchObject({ ok: false, message: 'excluded subtree violation' });
    const inside = await handshake(await contextFor('www.example.com'), 'www.example.com', folder.certPem);
    expect(inside.ok).toBe(true);
  });

  it('--permit values: punycode, a leading dot for subdomains only; wildcards and addresses refused', () => {
    expect(parsePermitDomain('Example.COM')).toBe('example.com');
    expect(parsePermitDomain('bücher.example')).toBe('xn--bcher-kva.example');
    expect(parsePermitDomain('.corp.example')).toBe('.corp.example');
    expect(() => parsePermitDomain('*.example.com')).toThrow('no wildcards; "example.com" already covers every name under it');
    expect(() => parsePermitDomain('10.0.0.0/8')).toThrow('not an address');
    expect(() => parsePermitDomain('exa mple.com')).toThrow('not a DNS domain name');
    // The URL parser would read only the name before a delimiter: refused, not shortened.
    expect(() => parsePermitDomain('example.com/x')).toThrow('not a DNS domain name');
  });
});

describe('upstream trust and metrics', () => {
  it('--inspect-trust reads every certificate of a PEM bundle, and refuses a file with none', async () => {
    const one = await writeCaFolder();
    const two = await writeCaFolder();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tollgate-trust-'));
    try {
      const bundle = path.join(dir, 'bundle.pem');
      fs.writeFileSync(bundle, `# private CAs\n${one.certPem}\n${two.certPem}`);
      const issuer = await loadInspection(one.dir, bundle);
      expect(issuer.upstreamTrust).toHaveLength(2);
      expect(new X509Certificate(issuer.upstreamTrust[1]).fingerprint256).toBe(new X509Certificate(two.certPem).fingerprint256);
      fs.writeFileSync(bundle, 'no certificates\n');
      expect(() => loadUpstreamTrust(bundle)).toThrow(`${bundle}: holds no PEM certificate`);
      expect(() => loadUpstreamTrust(path.join(dir, 'missing.pem'))).toThrow('missing (--inspect-trust)');
    } finally {
      [one, two].forEach((f) => f.remove());
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serve\'s openInspection registers the expiry gauge and counts mints, hits and mint time', async () => {
    const folder = await writeCaFolder({ days: 90 });
    try {
      const metrics = createMetrics();
      expect(await metrics.render()).not.toContain('tollgate_inspect_');
      const config = testServeConfig({ policiesDir: folder.dir, dbFile: ':memory:', inspectCa: folder.dir });
      const issuer = await openInspection(config, createLogger('silent'), metrics, 'proxy');
      if (issuer === null) throw new Error('no issuer');
      await issuer.contextFor('m.example');
      await issuer.contextFor('m.example');
      await Promise.all([issuer.contextFor('n.example'), issuer.contextFor('n.example')]);
      const text = await metrics.render();
      const value = (name: string): number => Number(/ ([0-9.e+-]+)$/.exec(text.split('\n').find((l) => l.startsWith(`${name} `)) ?? '')?.[1]);
      expect(value('tollgate_inspect_ca_expiry_days')).toBeGreaterThan(89.9);
      expect(value('tollgate_inspect_ca_expiry_days')).toBeLessThan(90.01);
      expect(value('tollgate_inspect_leaf_mints_total')).toBe(2);
      expect(value('tollgate_inspect_leaf_cache_hits_total')).toBe(2);
      expect(value('tollgate_inspect_leaf_mint_seconds_count')).toBe(2);
      expect(value('tollgate_inspect_leaf_mint_seconds_sum')).toBeGreaterThan(0);
      expect(value('tollgate_inspect_leaf_cache_entries')).toBe(2);
    } finally {
      folder.remove();
    }
  });
});
