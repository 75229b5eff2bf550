import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { SecureContext } from 'node:tls';
import type { Inspection } from '../../src/inspect/types';
import { listenOn } from './proxy-harness';

/**
 * Throwaway certificate authorities made with the openssl CLI (ECDSA P-256), for TLS-inspection
 * tests: one the proxy inspects with (a test-only Inspection that mints a leaf per host and
 * counts the mints), and one an HTTPS origin's certificates come from (given to the proxy as
 * upstream trust, as --inspect-trust would).
 */

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

export interface TestCa {
  readonly dir: string;
  /** The CA certificate, PEM. */
  readonly pem: string;
  readonly file: string;
  /** A key and certificate for `names` (DNS names or IP literals), signed by this CA. */
  issue(names: readonly string[], options?: { days?: number }): { key: string; cert: string };
  remove(): void;
}

let serial = 0;

export function makeTestCa(name: string): TestCa {
  const dir = mkdtempSync(path.join(tmpdir(), `tollgate-${name}-`));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  const file = path.join(dir, 'ca.pem');
  return {
    dir,
    file,
    pem: readFileSync(file, 'utf8'),
    issue: (names, options = {}) => {
      serial += 1;
      const base = `leaf-${serial}`;
      const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      writeFileSync(path.join(dir, `${base}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
      openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${names[0]}`, '-keyout', `${base}-key.pem`, '-out', `${base}.csr`], dir);
      openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-set_serial', String(1000 + serial),
        '-days', String(options.days ?? 1), '-out', `${base}.pem`, '-extfile', `${base}.ext`], dir);
      return { key: readFileSync(path.join(dir, `${base}-key.pem`), 'utf8'), cert: readFileSync(path.join(dir, `${base}.pem`), 'utf8') };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A test-only Inspection over a TestCa: one leaf per host, minted on first use. */
export interface TestInspection extends Inspection {
  /** Leaves minted so far (cache misses). */
  mints(): number;
}

export function testInspection(ca: TestCa, upstreamTrust: readonly string[]): TestInspection {
  const cache = new Map<string, Promise<SecureContext>>();
  let mints = 0;
  return {
    upstreamTrust,
    mints: () => mints,
    contextFor: (host) => {
      let context = cache.get(host);
      if (context === undefined) {
        mints += 1;
        const { key, cert } = ca.issue([host]);
        context = Promise.resolve(tls.createSecureContext({ key, cert }));
        cache.set(host, context);
      }
      return context;
    },
  };
}

export interface HttpsOrigin {
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

/** A local HTTPS origin on 127.0.0.1:0 with a certificate for `names` from `ca`. */
export async function startHttpsOrigin(
  ca: TestCa,
  names: readonly string[],
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  options: { key?: string; cert?: string } = {},
): Promise<HttpsOrigin> {
  const identity = options.key !== undefined && options.cert !== undefined ? { key: options.key, cert: options.cert } : ca.issue(names);
  const server = createServer({ ...identity }, handler) as unknown as Server;
  const port = await listenOn(server);
  return {
    port,
    server,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
