import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';

/**
 * No Docker engine runs here, so these tests read the files and check the properties the
 * deployment's safety rests on: the workload has no way out but the proxy, policies are
 * read-only, the admin port is on the host's loopback only, and the image runs as non-root.
 */

const ROOT = path.resolve(__dirname, '..');
const PROXY_URL = 'http://tollgate:3128';
const PROXY_ENV_VARS = ['HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy'];

interface ComposeService {
  networks?: string[] | Record<string, unknown>;
  environment?: string[] | Record<string, string | number | boolean | null>;
  volumes?: (string | { type?: string; source?: string; target?: string; read_only?: boolean })[];
  ports?: (string | number | { host_ip?: string; published?: string | number })[];
}

interface ComposeFile {
  services: Record<string, ComposeService>;
  networks?: Record<string, { internal?: boolean; ipam?: { config?: Array<{ subnet?: string }> } } | null>;
}

const compose = parse(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8')) as ComposeFile;

function networksOf(service: ComposeService): string[] {
  const { networks } = service;
  if (networks === undefined) return ['default'];
  return Array.isArray(networks) ? networks : Object.keys(networks);
}

function isInternal(network: string): boolean {
  return compose.networks?.[network]?.internal === true;
}

function environmentOf(service: ComposeService): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((entry) => {
      const eq = entry.indexOf('=');
      return eq < 0 ? [entry, ''] : [entry.slice(0, eq), entry.slice(eq + 1)];
    }));
  }
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, String(value)]));
}

/** A volume entry as `{ source, target, readOnly }`, from the short or the long syntax. */
function mounts(service: ComposeService): { source: string; target: string; readOnly: boolean }[] {
  return (service.volumes ?? []).map((volume) => {
    if (typeof volume !== 'string') {
      return { source: volume.source ?? '', target: volume.target ?? '', readOnly: volume.read_only === true };
    }
    const [source, target, options = ''] = volume.split(':');
    return { source, target, readOnly: options.split(',').includes('ro') };
  });
}

const tollgate = compose.services.tollgate;
const workload = compose.services.workload;

describe('docker-compose.yml', () => {
  it('has the tollgate and workload services', () => {
    expect(tollgate).toBeDefined();
    expect(workload).toBeDefined();
  });

  it('puts the workload only on internal networks', () => {
    const networks = networksOf(workload);
    expect(networks.length).toBeGreaterThan(0);
    for (const network of networks) expect({ network, internal: isInternal(network) }).toEqual({ network, internal: true });
    expect(workload.ports ?? []).toEqual([]);
  });

  it('declares the workloads network internal', () => {
    expect(compose.networks?.workloads?.internal).toBe(true);
  });

  it('puts tollgate on the workload network and on a non-internal one', () => {
    const networks = networksOf(tollgate);
    for (const network of networksOf(workload)) expect(networks).toContain(network);
    expect(networks.some((network) => !isInternal(network))).toBe(true);
  });

  it('points every proxy variable of the workload at tollgate', () => {
    const env = environmentOf(workload);
    for (const name of PROXY_ENV_VARS) expect({ name, value: env[name] }).toEqual({ name, value: PROXY_URL });
    expect(env.NO_PROXY).toBe('localhost,127.0.0.1');
  });

  it('mounts the policies read-only where TOLLGATE_POLICIES points', () => {
    const policiesDir = environmentOf(tollgate).TOLLGATE_POLICIES;
    expect(policiesDir).toBeTruthy();
    const mount = mounts(tollgate).find((m) => m.target === policiesDir);
    expect(mount).toEqual({ source: './policies', target: policiesDir, readOnly: true });
  });

  it('keeps the audit database on a named volume', () => {
    const dbDir = path.posix.dirname(environmentOf(tollgate).TOLLGATE_DB);
    const mount = mounts(tollgate).find((m) => m.target === dbDir);
    expect(mount?.source).toMatch(/^[a-z][a-z0-9_-]*$/);
  });

  it('publishes ports on the host loopback only, and requires an admin token', () => {
    const ports = tollgate.ports ?? [];
    expect(ports.length).toBeGreaterThan(0);
    for (const port of ports) {
      const hostIp = typeof port === 'object' ? port.host_ip : String(port).split(':')[0];
      expect(hostIp).toBe('127.0.0.1');
    }
    expect(environmentOf(tollgate).TOLLGATE_ADMIN_TOKEN).toMatch(/^\$\{TOLLGATE_ADMIN_TOKEN:\?.+\}$/);
  });
});

describe('Dockerfile', () => {
  const lines = fs
    .readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));

  it('is a multi-stage build', () => {
    expect(lines.filter((line) => /^FROM\s/i.test(line)).length).toBeGreaterThanOrEqual(2);
  });

  it('runs the final stage as a non-root user', () => {
    const finalStage = lines.slice(lines.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true));
    const users = finalStage.filter((line) => /^USER\s/i.test(line));
    expect(users.length).toBeGreaterThan(0);
    const user = users[users.length - 1].split(/\s+/)[1].split(':')[0];
    expect(['root', '0']).not.toContain(user);
  });

  it('ships what the runtime reads next to dist/', () => {
    for (const dir of ['dist', 'migrations', 'web-admin', 'node_modules']) {
      expect(lines.some((line) => new RegExp(`^COPY\\s.*\\s\\./${dir}$`).test(line))).toBe(true);
    }
  });
});

describe('docker-compose.fleet.yml', () => {
  // merge: compose resolves YAML merge keys (<<), which the fleet file uses for what the replicas share.
  const fleet = parse(fs.readFileSync(path.join(ROOT, 'docker-compose.fleet.yml'), 'utf8'), { merge: true }) as ComposeFile & {
    services: Record<string, ComposeService & { command?: string[]; secrets?: string[]; image?: string }>;
  };
  const internal = (network: string): boolean => fleet.networks?.[network]?.internal === true;
  const replicas = Object.entries(fleet.services).filter(([name]) => name.startsWith('tollgate-'));

  it('has two replicas, PostgreSQL, the console and a workload', () => {
    expect(replicas.length).toBeGreaterThanOrEqual(2);
    for (const name of ['postgres', 'console', 'workload']) expect(fleet.services[name]).toBeDefined();
  });

  it('gives every replica its own node name and its own audit volume', () => {
    const nodes = replicas.map(([, service]) => environmentOf(service).TOLLGATE_NODE);
    expect(new Set(nodes).size).toBe(replicas.length);
    const volumes = replicas.map(([, service]) => mounts(service).find((m) => m.target === path.posix.dirname(environmentOf(service).TOLLGATE_DB))?.source);
    expect(new Set(volumes).size).toBe(replicas.length);
  });

  it('passes the audit URL as a secret file, never as a flag or a variable holding a password', () => {
    for (const [, service] of replicas) {
      const env = environmentOf(service);
      expect(env.TOLLGATE_AUDIT_URL).toBeUndefined();
      expect(env.TOLLGATE_AUDIT_URL_FILE).toBe('/run/secrets/audit_url');
      expect(service.secrets).toContain('audit_url');
    }
    const console = fleet.services.console;
    expect(console.command).toContain('--audit-url-file');
    expect(JSON.stringify(fleet.services)).not.toMatch(/postgres:\/\/[^@\s]*:[^@\s]*@/);
  });

  it('keeps PostgreSQL and the workloads on internal networks, PostgreSQL unpublished', () => {
    expect(fleet.services.postgres.ports ?? []).toEqual([]);
    for (const network of networksOf(fleet.services.postgres)) expect(internal(network)).toBe(true);
    for (const network of networksOf(fleet.services.workload)) expect(internal(network)).toBe(true);
  });

  it('publishes the console on the host loopback only, with a token', () => {
    const console = fleet.services.console;
    for (const port of console.ports ?? []) expect(String(port).split(':')[0]).toBe('127.0.0.1');
    expect(environmentOf(console).TOLLGATE_ADMIN_TOKEN).toMatch(/^\$\{TOLLGATE_ADMIN_TOKEN:\?.+\}$/);
  });

  describe('HAProxy in front: workload -> haproxy -> replicas, PROXY v2', () => {
    const haproxy = fleet.services.haproxy;
    const onNetwork = (network: string): string[] =>
      Object.entries(fleet.services).filter(([, service]) => networksOf(service).includes(network)).map(([name]) => name).sort();
    const workloadNetworks = networksOf(fleet.services.workload);
    const configMount = mounts(haproxy ?? {}).find((m) => m.target === '/usr/local/etc/haproxy/haproxy.cfg');
    const config = configMount === undefined ? '' : fs.readFileSync(path.join(ROOT, configMount.source), 'utf8');
    const serverLines = config.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter((l) => /^server\s/.test(l));
    /** The networks HAProxy shares with the replicas (not the workloads'). */
    const balancerNetworks = networksOf(haproxy ?? {}).filter((n) => !workloadNetworks.includes(n));

    it('is the only service on the workloads network besides the workload, answering as tollgate', () => {
      expect(haproxy?.image).toMatch(/^haproxy:2\.6/);
      expect(workloadNetworks.length).toBeGreaterThan(0);
      for (const network of workloadNetworks) expect(onNetwork(network)).toEqual(['haproxy', 'workload']);
      const nets = haproxy?.networks as Record<string, { aliases?: string[] } | null>;
      expect(workloadNetworks.some((n) => nets[n]?.aliases?.includes('tollgate'))).toBe(true);
      for (const name of PROXY_ENV_VARS) expect(environmentOf(fleet.services.workload)[name]).toBe(PROXY_URL);
    });

    it('takes the replicas off the workloads network', () => {
      for (const [, service] of replicas) for (const network of workloadNetworks) expect(networksOf(service)).not.toContain(network);
    });

    it('mounts its config read-only, and every server line is a replica sent PROXY v2, health checks too', () => {
      expect(configMount?.readOnly).toBe(true);
      expect(config).toMatch(/^\s*mode tcp\b/m);
      expect(serverLines.map((l) => l.split(/\s+/)[2]).sort()).toEqual(replicas.map(([name]) => `${name}:3128`).sort());
      for (const line of serverLines) expect(line.split(/\s+/)).toEqual(expect.arrayContaining(['send-proxy-v2', 'check-send-proxy']));
    });

    it("lets replicas take PROXY headers only from the balancer network's fixed subnet, which holds only HAProxy and the replicas", () => {
      expect(balancerNetworks).toHaveLength(1);
      const [balancer] = balancerNetworks;
      expect(onNetwork(balancer)).toEqual(['haproxy', ...replicas.map(([name]) => name)].sort());
      expect(internal(balancer)).toBe(true);
      const subnets = fleet.networks?.[balancer]?.ipam?.config?.map((c) => c.subnet) ?? [];
      expect(subnets).toHaveLength(1);
      for (const [, service] of replicas) {
        const command = service.command ?? [];
        const at = command.indexOf('--proxy-protocol-from');
        expect(at).toBeGreaterThan(0);
        for (const cidr of command[at + 1].split(',')) expect(cidrWithin(cidr, subnets[0] ?? '')).toBe(true);
      }
    });
  });
});

function ipv4ToNumber(ip: string): number | null {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return null;
  return parts.reduce((n, p) => n * 256 + p, 0);
}

/** True when the IPv4 range `inner` lies wholly inside `outer`. */
function cidrWithin(inner: string, outer: string): boolean {
  const parse = (cidr: string): { base: number; bits: number } | null => {
    const [ip, bits = '32'] = cidr.split('/');
    const base = ipv4ToNumber(ip);
    const n = Number(bits);
    return base === null || !Number.isInteger(n) || n < 0 || n > 32 ? null : { base, bits: n };
  };
  const a = parse(inner);
  const b = parse(outer);
  if (a === null || b === null || a.bits < b.bits) return false;
  const size = 2 ** (32 - b.bits);
  return Math.floor(a.base / size) === Math.floor(b.base / size);
}
