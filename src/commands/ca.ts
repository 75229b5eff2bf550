import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseWholeNumber } from '../config';
import { createCa } from '../inspect/ca-create';
import { CA_CERT_FILE, CA_KEY_FILE } from '../inspect/ca-load';
import { parsePermitDomain } from '../inspect/name-constraints';

/**
 * 365 days: a yearly rotation a team can put in its calendar, shorter than the 825 days Apple
 * platforms accept for any TLS certificate they are shown, and long enough that rolling ca.pem out
 * to every workload is not a monthly chore. --days changes it.
 */
const DEFAULT_CA_DAYS = 365;
const MAX_CA_DAYS = 3650;

function defaultCaName(): string {
  return `tollgate inspection CA (${os.hostname()})`;
}

export const INIT_HELP = `usage: tollgate ca init --out DIR [--name CN] [--days N] [--permit DOMAIN ...]

Create the certificate authority TLS inspection signs its leaf certificates with (serve
--inspect-ca DIR): DIR/${CA_CERT_FILE} (the certificate, mode 0644: install it on the workloads) and
DIR/${CA_KEY_FILE} (its ECDSA P-256 key, mode 0600: keep it on the proxy only). Existing files are
never overwritten. DIR is created (mode 0700) when missing.

  --out DIR          where to write the two files (required)
  --name CN          the CA's common name (default "tollgate inspection CA (<host name>)")
  --days N           validity in days, 1 to ${MAX_CA_DAYS} (default ${DEFAULT_CA_DAYS})
  --permit DOMAIN    may be repeated: the CA can only ever vouch for these domains and the names
                     under them (a critical X.509 name constraint, enforced by the clients; no
                     IP address is permitted); ".example.com" permits the names under it only

Exit 0 written, 1 the files exist or cannot be written, 2 bad input.
`;

interface InitArgs {
  dir: string;
  name: string;
  days: number;
  permit: string[];
}

function initArgs(args: string[]): InitArgs | number {
  const fail = (message: string): number => {
    process.stderr.write(`tollgate ca init: ${message}\n\n${INIT_HELP}`);
    return 2;
  };
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args, allowPositionals: true, strict: true,
      options: {
        out: { type: 'string' }, name: { type: 'string' }, days: { type: 'string' },
        permit: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    return fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(INIT_HELP);
    return 0;
  }
  if (positionals.length > 0) return fail(`unexpected argument "${positionals[0]}"`);
  if (values.out === undefined || values.out === '') return fail('--out DIR is required');
  const name = values.name ?? defaultCaName();
  if (name.trim() === '' || name.length > 64 || /[\u0000-\u001f\u007f]/.test(name)) return fail('--name: expected a printable name of 1 to 64 characters');
  let days: number;
  let permit: string[];
  try {
    days = parseWholeNumber(values.days ?? String(DEFAULT_CA_DAYS), '--days', 1, MAX_CA_DAYS);
    permit = [...new Set((values.permit ?? []).map(parsePermitDomain))];
  } catch (err) {
    return fail((err as Error).message);
  }
  return { dir: values.out, name, days, permit };
}

/**
 * Write one file that must not exist yet, created with its mode (open's O_EXCL and mode, never a
 * chmod afterwards: the key is never readable by others, not even for a moment).
 */
function writeNew(file: string, text: string, mode: number): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** `tollgate ca init` */
export async function runCaInit(args: string[]): Promise<number> {
  const parsed = initArgs(args);
  if (typeof parsed === 'number') return parsed;
  const certFile = path.join(parsed.dir, CA_CERT_FILE);
  const keyFile = path.join(parsed.dir, CA_KEY_FILE);
  const existing = [certFile, keyFile].filter((file) => fs.existsSync(file));
  if (existing.length > 0) {
    process.stderr.write(`tollgate ca init: refusing to overwrite ${existing.join(' and ')}; move ${existing.length > 1 ? 'them' : 'it'} away first (a CA in use is replaced only with a rollout)\n`);
    return 1;
  }
  const ca = await createCa({ name: parsed.name, days: parsed.days, permit: parsed.permit, now: new Date() });
  try {
    fs.mkdirSync(parsed.dir, { recursive: true, mode: 0o700 });
    writeNew(keyFile, ca.keyPem, 0o600);
    try {
      writeNew(certFile, ca.certPem, 0o644);
    } catch (err) {
      // A key without its certificate is useless, and would make the next run refuse to overwrite.
      fs.rmSync(keyFile, { force: true });
      throw err;
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    process.stderr.write(`tollgate ca init: cannot write into ${parsed.dir} (${code ?? (err as Error).message})\n`);
    return 1;
  }
  const cert = new X509Certificate(ca.certPem);
  process.stdout.write(
    `wrote ${certFile} (certificate, 0644) and ${keyFile} (private key, 0600)\n` +
      `  subject:     CN=${parsed.name}\n` +
      `  valid until: ${new Date(cert.validTo).toISOString()} (${parsed.days} days)\n` +
      `  permits:     ${parsed.permit.length > 0 ? parsed.permit.join(', ') : 'any name (no --permit constraints)'}\n` +
      `  SHA-256:     ${cert.fingerprint256}\n` +
      `next: serve --inspect-ca ${parsed.dir}, and install ${certFile} on the workloads (docs/operations.md: TLS inspection roll-out)\n`,
  );
  return 0;
}
