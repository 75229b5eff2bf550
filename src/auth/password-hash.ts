import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * Salted scrypt password hashes in PHC string form: `$scrypt$ln=14,r=8,p=1$<salt>$<hash>`
 * (base64, no padding). ln=14 (N=16384, 16 MiB, tens of milliseconds) is the cost the scrypt
 * paper and OWASP suggest for interactive logins; proxies cache successful checks (see
 * credential-cache.ts) so a workload pays it once per credential and TTL, not per request.
 */
export interface ScryptParams {
  readonly ln: number;
  readonly r: number;
  readonly p: number;
}

export const DEFAULT_SCRYPT: ScryptParams = { ln: 14, r: 8, p: 1 };
const KEY_LENGTH = 32;
const SALT_LENGTH = 16;
const PHC = /^\$scrypt\$ln=([0-9]{1,2}),r=([0-9]{1,2}),p=([0-9]{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

export interface ParsedHash {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly hash: Buffer;
}

function derive(password: string, salt: Buffer, params: ScryptParams, length: number): Promise<Buffer> {
  const N = 2 ** params.ln;
  // Node refuses above maxmem (32 MiB by default); give scrypt what these parameters need.
  const maxmem = 128 * N * params.r * params.p + 1024 * 1024;
  return new Promise((resolve, reject) => {
    scrypt(password, salt, length, { N, r: params.r, p: params.p, maxmem }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

const b64 = (buffer: Buffer): string => buffer.toString('base64').replace(/=+$/, '');

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LENGTH);
  const hash = await derive(password, salt, params, KEY_LENGTH);
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`;
}

/** Null when the text is not a hash this version can check (the users file reports it). */
export function parseHash(text: string): ParsedHash | null {
  const match = PHC.exec(text);
  if (!match) return null;
  const params = { ln: Number(match[1]), r: Number(match[2]), p: Number(match[3]) };
  if (params.ln < 10 || params.ln > 20 || params.r < 1 || params.p < 1) return null;
  const hash = Buffer.from(match[5], 'base64');
  if (hash.length < 16) return null;
  return { params, salt: Buffer.from(match[4], 'base64'), hash };
}

/** Constant-time check of a password against a parsed hash. */
export async function verifyPassword(password: string, stored: ParsedHash): Promise<boolean> {
  const candidate = await derive(password, stored.salt, stored.params, stored.hash.length);
  return timingSafeEqual(candidate, stored.hash);
}
