import type { AuditCompletion, AuditOpen } from '../../src/audit/record-types';
import { seededRandom } from '../lib/seeded-random';
import { CLIENTS, zipfPicker } from './traffic-skew';

/**
 * Records for the index consumer benchmark, with the skew of real traffic (as generate.ts): 400
 * destinations with Zipf popularity, 20 client addresses in 3 groups (traffic-skew.ts), about 9% denied, some
 * would-deny, 70% CONNECT. Built before any timing: the proxy builds them either way.
 */

const DOMAINS = ['github.com', 'npmjs.org', 'pypi.org', 'amazonaws.com', 'googleapis.com', 'docker.io', 'slack.com', 'sentry.io', 'pastebin.com', 'example-cdn.net'];
const WORDS = ['api', 'cdn', 'objects', 'uploads', 'registry', 'auth', 'static', 'hooks'];
const HOSTS = Array.from({ length: 400 }, (_, r) => (r % 20 === 19 ? `203.0.113.${r % 250}` : `${WORDS[r % WORDS.length]}${r}.${DOMAINS[r % DOMAINS.length]}`));

export interface BenchRecord {
  open: AuditOpen;
  completion: AuditCompletion;
}

/** `count` records, one per millisecond from `startMs`. */
export function benchRecords(count: number, startMs: number): BenchRecord[] {
  const rand = seededRandom(42);
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
