import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { compileGuard, describeBlock, type Guard } from '../src/policy/guard';
import type { NetworkPolicy } from '../src/policy/types';
import {
  connectChecked,
  dialChecked,
  DialReason,
  GuardError,
  pinnedLookup,
  resolveChecked,
  type ConnectFunction,
  type Resolver,
} from '../src/proxy/dial';
import { ProxyError } from '../src/request/errors';
import type { Target } from '../src/request/target-types';

// Only loopback is ever connected to. Private and metadata answers are refused by the guard
// before any connect: the connect function below fails the test if it is called.

const ALLOW_LOOPBACK: NetworkPolicy = { allowRanges: [{ cidr: '127.0.0.0/8', source: 'test.yaml:1' }], denyRanges: [], parentRanges: [] };
const loopbackGuard: Guard = compileGuard(ALLOW_LOOPBACK, [], {});
const strictGuard: Guard = compileGuard({ allowRanges: [], denyRanges: [], parentRanges: [] }, [], {});

function nameTarget(host: string, port: number): Target {
  return { kind: 'connect', scheme: null, host, hostKind: 'name', port, path: null, search: '' };
}

function answering(...addresses: string[]): Resolver {
  return async () => addresses.map((address) => ({ address, family: net.isIPv6(address) ? 6 : 4 }));
}

const mustNotConnect: ConnectFunction = (address, port) => {
  throw new Error(`test bug: connect to ${address}:${port} attempted`);
};

/** A connect spy that really connects (loopback only) and records where. */
function recordingConnect(): { connect: ConnectFunction; calls: string[] } {
  const calls: string[] = [];
  const connect: ConnectFunction = (address, port) => {
    if (!address.startsWith('127.')) throw new Error(`test bug: non-loopback connect to ${address}`);
    calls.push(address);
    return net.connect({ host: address, port });
  };
  return { connect, calls };
}

async function expectProxyError(promise: Promise<unknown>, status: number, code: string): Promise<ProxyError> {
  const err: unknown = await promise.then(
    () => new Error('expected a rejection'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProxyError);
  const proxyError = err as ProxyError;
  expect({ status: proxyError.status, code: proxyError.code }).toEqual({ status, code });
  return proxyError;
}

let server: net.Server;
let serverPort: number;

beforeAll(async () => {
  server = net.createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverPort = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function closedLoopbackPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe('resolveChecked: the guard refuses before any connect', () => {
  const options = (resolver: Resolver) => ({ resolver, dnsTimeoutMs: 1000, connectTimeoutMs: 1000, connect: mustNotConnect });

  test.each([
    { name: 'private answer', answer: '10.0.0.5', range: '10.0.0.0/8', label: 'private' },
    { name: 'metadata answer', answer: '169.254.169.254', range: '169.254.0.0/16', label: 'link-local' },
    { name: 'IPv4-mapped IPv6 answer', answer: '::ffff:10.0.0.1', range: '10.0.0.0/8', label: 'private' },
    { name: 'AWS IPv6 metadata answer', answer: 'fd00:ec2::254', range: 'fc00::/7', label: 'unique local' },
  ])('$name ($answer) → 403 GuardError', async ({ answer, range, label }) => {
    const dial = dialChecked(nameTarget('evil.example', 443), strictGuard, options(answering(answer)));
    const err = await expectProxyError(dial, 403, 'denied');
    expect(err).toBeInstanceOf(GuardError);
    const block = (err as GuardError).block;
    expect(block).toEqual({ address: answer, range, label });
    expect(err.reason).toBe(describeBlock(block));
  });

  test('the reason names address and range', async () => {
    const err = await expectProxyError(resolveChecked(nameTarget('a.example', 443), strictGuard, answering('10.0.0.5'), 1000), 403, 'denied');
    expect(err.reason).toBe('destination 10.0.0.5 is in blocked range 10.0.0.0/8 (private)');
  });

  test('an IP-literal target skips DNS and is guarded', async () => {
    const resolver = jest.fn(answering('127.0.0.1'));
    const target: Target = { ...nameTarget('169.254.169.254', 80), hostKind: 'ipv4' };
    await expectProxyError(resolveChecked(target, loopbackGuard, resolver, 1000), 403, 'denied');
    const allowed: Target = { ...nameTarget('::ffff:127.0.0.1', 80), hostKind: 'ipv6' };
    await expect(resolveChecked(allowed, loopbackGuard, resolver, 1000)).resolves.toEqual({ addresses: ['::ffff:127.0.0.1'] });
    expect(resolver).not.toHaveBeenCalled();
  });

  test("the proxy's own listener is refused even with loopback allowed", async () => {
    const guard = compileGuard(ALLOW_LOOPBACK, [{ host: '127.0.0.1', port: serverPort }], {});
    const dial = dialChecked(nameTarget('self.example', serverPort), guard, options(answering('127.0.0.1')));
    expect((await expectProxyError(dial, 403, 'denied')).reason).toMatch(/the proxy's own listener/);
  });
});

describe('resolve once, connect only to what passed', () => {
  test('rebinding: the resolver is asked once and the connect goes to the checked address', async () => {
    const answers = ['127.0.0.1', '169.254.169.254'];
    let calls = 0;
    const rebinding: Resolver = async () => [{ address: answers[Math.min(calls++, 1)], family: 4 }];
    const spy = recordingConnect();
    const target = nameTarget('rebind.example', serverPort);
    const { socket, address } = await dialChecked(target, loopbackGuard, {
      resolver: rebinding,
      dnsTimeoutMs: 1000,
      connectTimeoutMs: 2000,
      connect: spy.connect,
    });
    socket.destroy();
    expect(calls).toBe(1);
    expect(address).toBe('127.0.0.1');
    expect(spy.calls).toEqual(['127.0.0.1']);
  });

  test('mixed answers: only the allowed address is returned and connected to', async () => {
    const resolver = answering('10.0.0.1', '127.0.0.1', '169.254.169.254');
    const { addresses } = await resolveChecked(nameTarget('mixed.example', serverPort), loopbackGuard, resolver, 1000);
    expect(addresses).toEqual(['127.0.0.1']);
    const spy = recordingConnect();
    const { socket } = await connectChecked(addresses, serverPort, 2000, spy.connect);
    socket.destroy();
    expect(spy.calls).toEqual(['127.0.0.1']);
  });

  test('duplicate answers are tried once', async () => {
    const { addresses } = await resolveChecked(nameTarget('dup.example', 80), loopbackGuard, answering('127.0.0.1', '127.0.0.1'), 1000);
    expect(addresses).toEqual(['127.0.0.1']);
  });
});

describe('DNS failures', () => {
  afterEach(() => jest.useRealTimers());

  test.each(['ENOTFOUND', 'ENODATA', 'EAI_AGAIN'])('%s → 502 dns_failed', async (code) => {
    const failing: Resolver = async () => {
      throw Object.assign(new Error(`getaddrinfo ${code}`), { code });
    };
    const err = await expectProxyError(resolveChecked(nameTarget('nx.example', 443), strictGuard, failing, 1000), 502, 'dns_failed');
    expect(err.reason).toBe(DialReason.dnsFailed('nx.example', code));
  });

  test('an empty answer → 502 dns_failed', async () => {
    await expectProxyError(resolveChecked(nameTarget('empty.example', 443), strictGuard, answering(), 1000), 502, 'dns_failed');
  });

  test('a resolver that never answers → 504 dns_timeout, timer cleared', async () => {
    jest.useFakeTimers();
    const hanging: Resolver = () => new Promise(() => undefined);
    const pending = resolveChecked(nameTarget('slow.example', 443), strictGuard, hanging, 50);
    const settled = expectProxyError(pending, 504, 'dns_timeout');
    await jest.advanceTimersByTimeAsync(50);
    const err = await settled;
    expect(err.reason).toBe(DialReason.dnsTimeout('slow.example', 50));
    expect(jest.getTimerCount()).toBe(0);
  });

  test('a successful lookup leaves no timer behind', async () => {
    jest.useFakeTimers();
    await resolveChecked(nameTarget('ok.example', 80), loopbackGuard, answering('127.0.0.1'), 5000);
    expect(jest.getTimerCount()).toBe(0);
  });
});

describe('connectChecked', () => {
  test('connects to a real local server, with no delay and only a no-op error listener left', async () => {
    const { socket, address } = await connectChecked(['127.0.0.1'], serverPort, 2000);
    socket.on('error', () => undefined);
    expect(address).toBe('127.0.0.1');
    expect(socket.remoteAddress).toBe('127.0.0.1');
    expect(socket.listenerCount('connect')).toBe(0);
    expect(socket.listenerCount('error')).toBe(2);
    const echoed = new Promise<string>((resolve) => socket.once('data', (chunk: Buffer) => resolve(chunk.toString())));
    socket.write('ping');
    expect(await echoed).toBe('ping');
    socket.destroy();
  });

  test('connection refused on a closed loopback port → 502 connect_refused', async () => {
    const port = await closedLoopbackPort();
    const err = await expectProxyError(connectChecked(['127.0.0.1'], port, 2000), 502, 'connect_refused');
    expect(err.reason).toBe(DialReason.connectRefused(`127.0.0.1:${port}`));
  });

  test('after a refused address the next checked address is tried', async () => {
    const spy = recordingConnect();
    // The server listens on 127.0.0.1 only, so 127.0.0.2 refuses.
    const { socket, address } = await connectChecked(['127.0.0.2', '127.0.0.1'], serverPort, 2000, spy.connect);
    socket.destroy();
    expect(spy.calls).toEqual(['127.0.0.2', '127.0.0.1']);
    expect(address).toBe('127.0.0.1');
  });

  test('a connect that never completes → 504 connect_timeout and the socket is destroyed', async () => {
    const sockets: net.Socket[] = [];
    const hanging: ConnectFunction = () => {
      const socket = new net.Socket();
      sockets.push(socket);
      return socket;
    };
    const err = await expectProxyError(connectChecked(['127.0.0.1', '::1'], 9, 60, hanging), 504, 'connect_timeout');
    expect(err.reason).toMatch(/^connection to \[::1\]:9 timed out after \d+ ms$/);
    expect(sockets).toHaveLength(2);
    expect(sockets.every((s) => s.destroyed)).toBe(true);
  });

  test('a connect function that throws → 502 connect_failed', async () => {
    const throwing: ConnectFunction = () => {
      throw Object.assign(new Error('boom'), { code: 'EMFILE' });
    };
    const err = await expectProxyError(connectChecked(['127.0.0.1'], 1, 100, throwing), 502, 'connect_failed');
    expect(err.reason).toBe(DialReason.connectFailed('127.0.0.1:1', 'EMFILE'));
  });

  test('no addresses → 502 without connecting', async () => {
    await expectProxyError(connectChecked([], 1, 100, mustNotConnect), 502, 'connect_failed');
  });
});

describe('pinnedLookup', () => {
  test('answers the checked address in both callback shapes', () => {
    const lookup = pinnedLookup('::1');
    const single = jest.fn();
    const all = jest.fn();
    lookup('anything.example', {}, single);
    lookup('anything.example', { all: true }, all);
    expect(single).toHaveBeenCalledWith(null, '::1', 6);
    expect(all).toHaveBeenCalledWith(null, [{ address: '::1', family: 6 }]);
    expect(() => pinnedLookup('example.com')).toThrow();
  });

  test('http.request with a name reaches the pinned address and sends the name as Host', async () => {
    const origin = http.createServer((req, res) => res.end(req.headers.host));
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    const { port } = origin.address() as AddressInfo;
    const agent = new http.Agent({ keepAlive: false });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = http.request({ host: 'pinned.invalid', port, agent, lookup: pinnedLookup('127.0.0.1') }, (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.end();
      });
      expect(body).toBe(`pinned.invalid:${port}`);
    } finally {
      agent.destroy();
      await new Promise<void>((resolve) => origin.close(() => resolve()));
    }
  });
});
