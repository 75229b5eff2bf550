import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * A throwaway certificate authority and a server certificate it signed (SAN IP:127.0.0.1 and
 * DNS:localhost), made with openssl, for a PostgreSQL server with ssl=on. When the tests run as
 * root the server runs as `postgres` (postgres-server.ts), which must own its key (mode 0600).
 */
export interface ThrowawayCa {
  caCert: string;
  serverCert: string;
  serverKey: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

export function makeCa(dir: string, name: string): string {
  fs.mkdirSync(dir, { recursive: true });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-keyout', `${name}-key.pem`, '-out', `${name}.pem`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return path.join(dir, `${name}.pem`);
}

/** A CA in `dir` and a server certificate signed by it. */
export function makeServerCertificate(dir: string): ThrowawayCa {
  const caCert = makeCa(dir, 'ca');
  fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server-key.pem', '-out', 'server.csr'], dir);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '2',
    '-out', 'server.pem', '-extfile', 'san.ext'], dir);
  const serverKey = path.join(dir, 'server-key.pem');
  fs.chmodSync(serverKey, 0o600);
  fs.chmodSync(dir, 0o755);
  if (typeof process.getuid === 'function' && process.getuid() === 0) {
    execFileSync('chown', ['postgres:postgres', serverKey, path.join(dir, 'server.pem')]);
  }
  return { caCert, serverCert: path.join(dir, 'server.pem'), serverKey };
}
