import type { AuditCompletion, AuditOpen } from '../../src/audit/record-types';

/**
 * Records for the index consumer benchmark, with the skew of real traffic (as generate.ts): 400
 * destinations with Zipf popularity, 20 client addresses in 3 groups, about 9% denied, some
 * would-deny, 70% CONNECT. Built before any timing: the proxy builds them either way.
 */

const DOMAINS = ['github.com', 'npmjs.org', 'pypi.org', 'amazonaws.com', 'googleapis.com', 'docker.io', 'slack.com', 'sentry.io', 'pastebin.com', 'example-cdn.net'];
const WORDS = ['api', 'cdn', 'objects', 'uploads', 'registry', 'auth', 'static', 'hooks'];
const HOSTS = Array.from({ length: 400 }, (_, r) => (r % 20 === 19 ? `203.0.113.${r % 250}` : `${WORDS[r % WORDS.length]}${r}.${DOMAINS[r % DOMAINS.length]}`));
const CLIENTS = [
  ...Array.from({ length: 8 }, (_, i) => ({ ip: `10.0.8.${10 + i}`, groups: ['ci-runners'] })),
  ...Array.from({ length: 4 }, (_, i) => ({ ip: `10.0.12.${5 + i}`, groups: ['payments', 'prod'] })),
  ...Array.from({ length: 8 }, (_, i) => ({ ip: `10.1.${i}.20`, groups: ['dev'] })),
];

/** Deterministic (mulberry32), so runs measure the same data. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function zipfPicker(n: number, s: number, rand: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i += 1) cdf[i] = sum += 1 / Math.pow(i + 1, s);
  return () => {
    const u = rand() * sum;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export interface BenchRecord {
  open: AuditOpen;
  completion: AuditCompletion;
}

/** `count` records, one per millisecond from `startMs`. */
export function benchRecords(count: number, startMs: number): BenchRecord[] {
  const rand = random(42);
  const host = zipfPicker(HOSTS.length, 1.1, rand);
  const client = zipfPicker(CLIENTS.length, 0.8, rand);
  return Array.from({ length: count }, (_, n) => {
    const h = HOSTS[host()];
    const c = CLIENTS[client()];
    const deny = rand() < (h.endsWith('pastebin.com') ? 0.9 : 0.085);
    const connect = rand() < 0.7;
    const startedAt = new Date(startMs + n);
    const open: AuditOpen = {
      startedAt, clientIp: c.ip, clientPort: 30000 + (n % 30000), clients: c.groups, user: null,
      kind: connect ? 'connect' : 'http', method: connect ? 'CONNECT' : 'GET', scheme: connect ? null : 'http',
      host: h, port: connect ? 443 : 80, path: connect ? null : `/v1/items/${n % 1000}`,
      resolvedIp: deny ? null : `198.18.${n % 250}.7`, decision: deny ? 'deny' : 'allow', wouldDeny: !deny && rand() < 0.02,
      rule: deny ? '(default)' : 'allow-main', ruleSource: deny ? null : 'policies/10-rules.yaml:12',
      reason: deny ? `no rule matched ${h}` : 'matched rule allow-main', policyVersion: 'sha256:0123456789ab',
    };
    const completion: AuditCompletion = {
      endedAt: new Date(startedAt.getTime() + 120), status: deny ? 403 : 200,
      bytesUp: deny ? 0 : 517 + (n % 900), bytesDown: deny ? 0 : 4096 + (n % 70000), error: null,
    };
    return { open, completion };
  });
}
