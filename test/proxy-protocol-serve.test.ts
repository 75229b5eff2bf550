import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { connect } from 'node:net';
import { resolveServeConfig } from '../src/config';
import { ConfigError } from '../src/config-error';
import { readDescriptorLimit } from '../src/descriptors';
import { parseRange } from '../src/policy/ip-range';
import { proxyPeerOverlaps } from '../src/proxy/proxy-protocol-accept';
import { startOrigin } from './helpers/proxy-harness';
import type { Origin } from './helpers/proxy-harness';
import { listeningPorts, serveArgs, serveFolder, spawnServe } from './helpers/serve-process';
import type { ServeFolder, ServeProcess } from './helpers/serve-process';
import type { AuditRecordJson } from '../src/audit/record-types';
import { v2 } from './helpers/proxy-protocol-headers';
import { workloadsPolicy } from './helpers/policies';
import { waitFor } from './helpers/fleet-ship';

/** `serve --proxy-protocol-from` as an operator runs it: the option, the warning, the record through the audit log. */

const LIMIT = readDescriptorLimit();

const range = (text: string): ReturnType<typeof parseRange> & { ok: true } => {
  const parsed = parseRange(text);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed;
};

describe('--proxy-protocol-from, the option', () => {
  test('off by default; a list from the flag or TOLLGATE_PROXY_PROTOCOL_FROM; a bad range names the fix', () => {
    expect(resolveServeConfig({}, {}, LIMIT).proxyProtocolFrom).toEqual([]);
    const fromFlag = resolveServeConfig({ proxyProtocolFrom: '10.0.0.0/8, 2001:db8::/32,192.0.2.7' }, {}, LIMIT);
    expect(fromFlag.proxyProtocolFrom.map((r) => r.cidr)).toEqual(['10.0.0.0/8', '2001:db8::/32', '192.0.2.7/32']);
    const fromEnv = resolveServeConfig({}, { TOLLGATE_PROXY_PROTOCOL_FROM: '172.16.0.0/12' }, LIMIT);
    expect(fromEnv.proxyProtocolFrom.map((r) => r.cidr)).toEqual(['172.16.0.0/12']);
    expect(() => resolveServeConfig({ proxyProtocolFrom: '10.0.0.1/8' }, {}, LIMIT)).toThrow(ConfigError);
    expect(() => resolveServeConfig({ proxyProtocolFrom: '10.0.0.1/8' }, {}, LIMIT)).toThrow(/--proxy-protocol-from: .*did you mean "10.0.0.0\/8"/);
    expect(() => resolveServeConfig({ proxyProtocolFrom: 'lb.internal' }, {}, LIMIT)).toThrow(/--proxy-protocol-from/);
  });

  test('overlaps with client group sources are found both ways, and only those', () => {
    const groups = [
      { name: 'ci', source: 'p.yaml:3', sources: [range('10.8.0.0/16').range] },
      { name: 'office', source: 'p.yaml:6', sources: [range('192.168.0.0/16').range, range('2001:db8::5').range] },
    ];
    expect(proxyPeerOverlaps([range('10.0.0.0/8').range], groups)).toEqual([{ from: '10.0.0.0/8', group: 'ci', source: 'p.yaml:3', range: '10.8.0.0/16' }]);
    expect(proxyPeerOverlaps([range('10.8.1.2').range], groups).map((o) => o.group)).toEqual(['ci']);
    expect(proxyPeerOverlaps([range('2001:db8::/64').range], groups).map((o) => o.range)).toEqual(['2001:db8::5/128']);
    expect(proxyPeerOverlaps([range('10.9.0.0/16').range, range('172.16.0.0/12').range], groups)).toEqual([]);
  });
});

const POLICY = workloadsPolicy(['10.1.0.0/16'], '127.0.0.1');

describe('serve --proxy-protocol-from (a process)', () => {
  let folder: ServeFolder;
  let proc: ServeProcess;
  let origin: Origin;
  let proxyPort: number;
  let adminPort: number;
  beforeAll(async () => {
    origin = await startOrigin((req, res) => res.end(`origin saw ${req.url}`));
    folder = serveFolder('tollgate-pp-serve-', POLICY);
    proc = spawnServe(serveArgs(folder, '--proxy-protocol-from', '127.0.0.1/32,10.0.0.0/8'));
    ({ proxyPort, adminPort } = await listeningPorts(proc));
  });
  afterAll(async () => {
    proc.child.kill('SIGTERM');
    await proc.exited;
    await origin.close();
    folder.remove();
  });

  test('warns once at start that a --proxy-protocol-from range overlaps a client group', () => {
    const warnings = proc.lines.filter((l) => l.msg.startsWith('--proxy-protocol-from overlaps'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0].overlaps).toEqual([{ from: '10.0.0.0/8', group: 'workloads', source: 'policy.yaml:7', range: '10.1.0.0/16' }]);
  });

  test('the record, through the audit log and its index, names the header\'s client and the load balancer', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const socket = connect({ port: proxyPort, host: '127.0.0.1' }, () => {
        socket.write(Buffer.concat([
          v2('PROXY', { ip: '10.1.2.3', port: 45678 }),
          Buffer.from(`GET http://127.0.0.1:${origin.port}/served HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 'latin1'),
        ]));
      });
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      socket.on('error', reject);
    });
    expect(text).toContain('origin saw /served');
    const record = await waitFor('the /served record completed', async () => {
      const page = (await (await fetch(`http://127.0.0.1:${adminPort}/api/requests?limit=5`)).json()) as { items: AuditRecordJson[] };
      const found = page.items.find((r) => r.path === '/served');
      return found?.ended_at == null ? undefined : found;
    }, 20_000);
    expect(record).toMatchObject({ client_ip: '10.1.2.3', client_port: 45678, peer_ip: '127.0.0.1', clients: ['workloads'], status: 200 });
    const csv = await (await fetch(`http://127.0.0.1:${adminPort}/api/requests/export?format=csv`)).text();
    expect(csv.split('\r\n')[0]).toContain('client_port,peer_ip,clients');
  });

  test('/metrics counts refused headers by reason', async () => {
    await new Promise<void>((resolve) => {
      const socket = connect({ port: proxyPort, host: '127.0.0.1' }, () => socket.write('GET / HTTP/1.1\r\n\r\n'));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve());
      socket.resume();
    });
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metrics).toMatch(/^tollgate_proxy_protocol_refused_total\{reason="missing"\} 1$/m);
    expect(metrics).toMatch(/^tollgate_proxy_protocol_refused_total\{reason="unexpected"\} 0$/m);
  });
  test('a reload that puts another group inside a listed range warns again; one that changes nothing does not', async () => {
    const before = proc.lines.length;
    writeFileSync(path.join(folder.policies, 'policy.yaml'), POLICY.replace('    sources: [10.1.0.0/16]\n', '    sources: [10.1.0.0/16]\n  batch:\n    sources: [10.2.0.0/16]\n'));
    proc.child.kill('SIGHUP');
    const warning = await proc.waitForLogStarting('--proxy-protocol-from overlaps', before);
    expect((warning.overlaps as Array<{ group: string }>).map((o) => o.group).sort()).toEqual(['batch', 'workloads']);
    // Two more reloads of the same policy: the second one's 'policy loaded' line comes after anything
    // the first one logged, so a repeated warning would be there by then.
    const quiet = proc.lines.length;
    proc.child.kill('SIGHUP');
    const first = await proc.waitForLog('policy loaded', quiet);
    proc.child.kill('SIGHUP');
    await proc.waitForLog('policy loaded', proc.lines.indexOf(first) + 1);
    expect(proc.lines.slice(quiet).filter((l) => l.msg.startsWith('--proxy-protocol-from overlaps'))).toEqual([]);
  });
});
