import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { startProxyProcess } from './lib/children';
import type { ProxyProcess } from './lib/children';
import { processCpuSeconds } from './lib/proc-tree';

/**
 * What does TLS inspection cost? The same HTTPS requests through one `tollgate serve` process,
 * once through a rule that tunnels them (tls: any: the proxy splices bytes) and once through a
 * rule that inspects them (tls: inspect: the proxy terminates the client's TLS, decides and
 * records each request, and opens its own verified TLS connection to the origin). Measured: the
 * proxy process's CPU (utime + stime from /proc, all its threads) per request, with kept-alive
 * connections and with one new connection (so one new tunnel) per request; and the leaf cache
 * as /metrics counts it.
 * Usage: npm run bench:inspect [-- --requests N] [--concurrency C] [--cli PATH] [--out FILE]
 */

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const WARM_UP = 200;
/** Group commit holds completions for up to 20 ms: the CPU window closes after they are written. */
const SETTLE_MS = 300;
const BODY = 'x'.repeat(1024);

interface Options {
  requests: number;
  concurrency: number;
  cli: string;
  out: string;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: { requests: { type: 'string' }, concurrency: { type: 'string' }, cli: { type: 'string' }, out: { type: 'string' } },
    strict: true,
  });
  const whole = (text: string | undefined, fallback: number, flag: string): number => {
    const value = Number(text ?? fallback);
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${flag}: expected a whole number from 1, got "${text}"`);
    return value;
  };
  const cli = path.resolve(values.cli ?? path.join(REPO_ROOT, 'dist', 'cli.js'));
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run "npm run build" first`);
  return {
    requests: whole(values.requests, 3000, 'requests'),
    concurrency: whole(values.concurrency, 8, 'concurrency'),
    cli,
    out: path.resolve(values.out ?? path.join(REPO_ROOT, 'bench', 'results', 'inspect.md')),
  };
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** The origin's own throwaway CA and a certificate for both loopback addresses (given to --inspect-trust). */
function originPki(dir: string): { caFile: string; key: string; cert: string } {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=bench origin CA', '-keyout', 'origin-ca-key.pem', '-out', 'origin-ca.pem',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  writeFileSync(path.join(dir, 'origin.ext'), 'subjectAltName=IP:127.0.0.1,IP:127.0.0.2\nextendedKeyUsage=serverAuth\n');
  openssl(['req', ...ec, '-subj', '/CN=bench origin', '-keyout', 'origin-key.pem', '-out', 'origin.csr'], dir);
  openssl(['x509', '-req', '-in', 'origin.csr', '-CA', 'origin-ca.pem', '-CAkey', 'origin-ca-key.pem', '-set_serial', '7', '-days', '1',
    '-out', 'origin.pem', '-extfile', 'origin.ext'], dir);
  const read = (name: string): string => readFileSync(path.join(dir, name), 'utf8');
  return { caFile: path.join(dir, 'origin-ca.pem'), key: read('origin-key.pem'), cert: read('origin.pem') };
}

/** One HTTPS origin per loopback address: 127.0.0.1 is inspected, 127.0.0.2 tunnelled (policy below). */
async function startOrigins(key: string, cert: string): Promise<{ inspected: number; tunnelled: number; close(): void }> {
  const servers = ['127.0.0.1', '127.0.0.2'].map((host) => ({ host, server: https.createServer({ key, cert }, (req, res) => {
    req.resume();
    res.end(BODY);
  }) }));
  const ports = await Promise.all(servers.map(({ host, server }) => new Promise<number>((resolve) => {
    server.listen(0, host, () => resolve((server.address() as import('node:net').AddressInfo).port));
  })));
  return { inspected: ports[0], tunnelled: ports[1], close: () => servers.forEach(({ server }) => server.close()) };
}

const POLICY = `version: 1
settings:
  default: deny
network:
  allow_ranges: [127.0.0.0/8]
rules:
  - name: inspected
    action: allow
    hosts: [127.0.0.1]
    ports: any
    tls: inspect
  - name: tunnelled
    action: allow
    hosts: [127.0.0.2]
    ports: any
`;

interface Load {
  label: string;
  url: string;
  /** The CA the client trusts for this origin: the inspection CA, or the origin's own. */
  ca: string;
  keepAlive: boolean;
}

interface LoadResult {
  label: string;
  requests: number;
  failures: number;
  seconds: number;
  cpuSeconds: number;
  p50Ms: number;
  /** CONNECTs decided during the load (tollgate_requests_total{kind="connect"}). */
  tunnels: number | null;
}

function request(agent: HttpsProxyAgent<string>, load: Load): Promise<number> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    // https-proxy-agent drops `host` from the TLS options, so Node would check the certificate against "localhost".
    const checkServerIdentity = (_host: string, cert: tls.PeerCertificate): Error | undefined => tls.checkServerIdentity(new URL(load.url).hostname, cert);
    const req = https.request(load.url, { agent, ca: load.ca, checkServerIdentity }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - started) / 1e6) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * `count` requests, `concurrency` at a time. Without keep-alive each request gets an agent of its
 * own: Node's agent hands a finished socket to a queued request even with keepAlive off.
 */
async function drive(proxyPort: number, load: Load, count: number, concurrency: number): Promise<{ latencies: number[]; failures: number }> {
  const proxyUrl = `http://127.0.0.1:${proxyPort}`;
  const shared = new HttpsProxyAgent(proxyUrl, { keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let failures = 0;
  let firstFailure: string | null = null;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      next += 1;
      const agent = load.keepAlive ? shared : new HttpsProxyAgent(proxyUrl);
      try {
        latencies.push(await request(agent, load));
        if (agent !== shared) agent.destroy();
      } catch (err) {
        failures += 1;
        firstFailure ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  shared.destroy();
  if (firstFailure !== null) process.stderr.write(`${load.label}: ${failures} failed, the first with: ${firstFailure}\n`);
  return { latencies, failures };
}

async function measure(proxy: ProxyProcess, load: Load, options: Options): Promise<LoadResult> {
  await drive(proxy.port, load, WARM_UP, options.concurrency);
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const connects = (): Promise<number | null> => metric(proxy.adminPort, 'tollgate_requests_total{kind="connect",decision="allow"}');
  const tunnelsBefore = await connects();
  const cpuBefore = processCpuSeconds(proxy.pid);
  const started = Date.now();
  const { latencies, failures } = await drive(proxy.port, load, options.requests, options.concurrency);
  const seconds = (Date.now() - started) / 1000;
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
  const cpuSeconds = processCpuSeconds(proxy.pid) - cpuBefore;
  const tunnelsAfter = await connects();
  latencies.sort((a, b) => a - b);
  const tunnels = tunnelsBefore === null || tunnelsAfter === null ? null : tunnelsAfter - tunnelsBefore;
  return { label: load.label, requests: options.requests, failures, seconds, cpuSeconds, p50Ms: latencies[Math.floor(latencies.length / 2)] ?? NaN, tunnels };
}

async function metric(adminPort: number | null, name: string): Promise<number | null> {
  if (adminPort === null) return null;
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined && !name.includes('{')) return null;
  return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1));
}

interface LeafCounts {
  mints: number | null;
  hits: number | null;
  mintSecondsSum: number | null;
}

async function leafCounts(adminPort: number | null): Promise<LeafCounts> {
  return {
    mints: await metric(adminPort, 'tollgate_inspect_leaf_mints_total'),
    hits: await metric(adminPort, 'tollgate_inspect_leaf_cache_hits_total'),
    mintSecondsSum: await metric(adminPort, 'tollgate_inspect_leaf_mint_seconds_sum'),
  };
}

const fixed = (value: number, digits: number): string => (Number.isFinite(value) ? value.toFixed(digits) : '—');

function render(results: LoadResult[], leaves: LeafCounts, options: Options): string {
  const perRequest = (r: LoadResult): number => (r.cpuSeconds / r.requests) * 1e3;
  const byLabel = new Map(results.map((r) => [r.label, r]));
  const ratio = (a: string, b: string): string => {
    const x = byLabel.get(a);
    const y = byLabel.get(b);
    return x && y ? `${fixed(perRequest(x) / perRequest(y), 1)}×` : '—';
  };
  const lookups = (leaves.mints ?? 0) + (leaves.hits ?? 0);
  const lines = [
    '# TLS inspection: CPU per request, inspected vs tunnelled',
    '',
    `\`npm run bench:inspect\` on ${new Date().toISOString().slice(0, 10)}: ${options.requests} HTTPS GETs per load (1 KiB answer), ${options.concurrency} at a time, ` +
      `through one \`tollgate serve\` process (no --workers) with an audit record per request; Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'} ` +
      '(shared with the origin and the client: the CPU column is the proxy process alone, from /proc).',
    '',
    '| load | CPU ms / request | requests / s | p50 latency ms | tunnels opened | failures |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...results.map((r) => `| ${r.label} | ${fixed(perRequest(r), 3)} | ${fixed(r.requests / r.seconds, 0)} | ${fixed(r.p50Ms, 2)} | ${r.tunnels ?? '—'} | ${r.failures} |`),
    '',
    `Inspected ÷ tunnelled CPU per request: ${ratio('inspected, kept-alive', 'tunnelled, kept-alive')} kept-alive, ` +
      `${ratio('inspected, new connection each', 'tunnelled, new connection each')} with a new connection (tunnel) per request.`,
    '',
    `Leaf cache over the whole run (/metrics): ${leaves.mints ?? '—'} mint(s), ${leaves.hits ?? '—'} hit(s)` +
      (lookups > 0 ? `: hit rate ${fixed(((leaves.hits ?? 0) / lookups) * 100, 2)}%` : '') +
      (leaves.mints && leaves.mintSecondsSum !== null ? `; mean mint ${fixed((leaves.mintSecondsSum / leaves.mints) * 1e3, 2)} ms (a cold first mint; bench:inspect-mint measures minting).` : '.'),
    '',
    'Kept-alive, a tunnelled request costs the proxy only the relay of its bytes (spliced; the one record is the tunnel\'s), ' +
      'while an inspected one is decrypted, parsed, decided, recorded and encrypted again on a second connection. With a new connection per ' +
      'request both pay for the CONNECT and its record; inspection adds two TLS handshakes (the client\'s, with a cached leaf, and its own to the origin).',
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-bench-inspect-'));
  let proxy: ProxyProcess | null = null;
  let origins: { inspected: number; tunnelled: number; close(): void } | null = null;
  try {
    const pki = originPki(dir);
    origins = await startOrigins(pki.key, pki.cert);
    const caDir = path.join(dir, 'inspect-ca');
    execFileSync(process.execPath, [options.cli, 'ca', 'init', '--out', caDir], { stdio: 'pipe' });
    mkdirSync(path.join(dir, 'policies'));
    writeFileSync(path.join(dir, 'policies', 'bench.yaml'), POLICY);
    proxy = await startProxyProcess({
      cli: options.cli,
      nodeArgs: [],
      serveArgs: ['--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policies', path.join(dir, 'policies'), '--db', path.join(dir, 'audit.db'),
        '--inspect-ca', caDir, '--inspect-trust', pki.caFile],
    });
    const inspectCa = readFileSync(path.join(caDir, 'ca.pem'), 'utf8');
    const originCa = readFileSync(pki.caFile, 'utf8');
    const loads: Load[] = [
      { label: 'tunnelled, kept-alive', url: `https://127.0.0.2:${origins.tunnelled}/`, ca: originCa, keepAlive: true },
      { label: 'inspected, kept-alive', url: `https://127.0.0.1:${origins.inspected}/`, ca: inspectCa, keepAlive: true },
      { label: 'tunnelled, new connection each', url: `https://127.0.0.2:${origins.tunnelled}/`, ca: originCa, keepAlive: false },
      { label: 'inspected, new connection each', url: `https://127.0.0.1:${origins.inspected}/`, ca: inspectCa, keepAlive: false },
    ];
    const results: LoadResult[] = [];
    for (const load of loads) {
      process.stderr.write(`${load.label}...\n`);
      results.push(await measure(proxy, load, options));
    }
    const report = render(results, await leafCounts(proxy.adminPort), options);
    mkdirSync(path.dirname(options.out), { recursive: true });
    writeFileSync(options.out, report);
    process.stdout.write(report);
  } finally {
    await proxy?.stop();
    origins?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
