import { Agent as HttpAgent, createServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent as UndiciAgent } from 'undici';
import type { Dispatcher } from 'undici';

/**
 * The floor under bench/client-ceiling.ts: a forward proxy for absolute-URI GETs with nothing but
 * a node:http server and one upstream client, no policy, no audit. argv[2] picks the client:
 *   node             http.request with a keep-alive http.Agent
 *   undici-dispatch  undici Agent.dispatch with a handler that writes to the response
 *   undici-request   undici Agent.request, body piped to the response
 *   undici-stream    undici Agent.stream, the response as the factory's Writable
 * Hop-by-hop headers are dropped the same way for all. Prints `{"port":N}` once listening and
 * exits when its parent closes stdin (as bench/lib/http-origin.ts).
 */

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

function endToEnd(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (!HOP_BY_HOP.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
  return out;
}

function endToEndBuffers(raw: Buffer[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toString('latin1');
    if (!HOP_BY_HOP.has(name.toLowerCase())) out.push(name, raw[i + 1].toString('latin1'));
  }
  return out;
}

function fail(res: ServerResponse): void {
  if (res.headersSent) res.destroy();
  else res.writeHead(502).end();
}

type Forward = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

function viaNode(): Forward {
  const agent = new HttpAgent({ keepAlive: true, scheduling: 'lifo' });
  return (req, res, url) => {
    const headers = ['Host', url.host, ...endToEnd(req.rawHeaders)];
    const up = httpRequest({ host: url.hostname, port: url.port || 80, method: req.method, path: url.pathname + url.search, headers, setHost: false, agent });
    up.on('response', (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, endToEnd(upRes.rawHeaders));
      upRes.pipe(res);
    });
    up.on('error', () => fail(res));
    req.pipe(up);
  };
}

function viaDispatch(agent: UndiciAgent): Forward {
  return (req, res, url) => {
    const handler: Dispatcher.DispatchHandler = {
      onConnect: () => undefined,
      onHeaders: (status, raw, resume) => {
        res.writeHead(status, endToEndBuffers(raw as unknown as Buffer[]));
        res.on('drain', resume);
        return true;
      },
      onData: (chunk) => res.write(chunk),
      onComplete: () => void res.end(),
      onError: () => fail(res),
    };
    const headers = ['host', url.host, ...endToEnd(req.rawHeaders)];
    agent.dispatch({ origin: url.origin, path: url.pathname + url.search, method: req.method as Dispatcher.HttpMethod, headers }, handler);
  };
}

function viaRequest(agent: UndiciAgent): Forward {
  return (req, res, url) => {
    const headers = ['host', url.host, ...endToEnd(req.rawHeaders)];
    agent.request({ origin: url.origin, path: url.pathname + url.search, method: req.method as Dispatcher.HttpMethod, headers }).then(
      (up) => {
        res.writeHead(up.statusCode, endToEndObject(up.headers));
        up.body.pipe(res);
      },
      () => fail(res),
    );
  };
}

function endToEndObject(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

function viaStream(agent: UndiciAgent): Forward {
  return (req, res, url) => {
    const headers = ['host', url.host, ...endToEnd(req.rawHeaders)];
    const options = { origin: url.origin, path: url.pathname + url.search, method: req.method as Dispatcher.HttpMethod, headers };
    agent
      .stream(options, ({ statusCode, headers: upHeaders }) => {
        res.writeHead(statusCode, endToEndObject(upHeaders));
        return res;
      })
      .catch(() => fail(res));
  };
}

function pick(kind: string | undefined): Forward {
  if (kind === 'node') return viaNode();
  const agent = new UndiciAgent({ keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000 });
  if (kind === 'undici-dispatch') return viaDispatch(agent);
  if (kind === 'undici-request') return viaRequest(agent);
  if (kind === 'undici-stream') return viaStream(agent);
  throw new Error(`bare-proxy: unknown client "${kind}"`);
}

const forward = pick(process.argv[2]);
const server = createServer({ keepAliveTimeout: 120_000, requestTimeout: 0 }, (req, res) => {
  let url: URL;
  try {
    url = new URL(req.url ?? '');
  } catch {
    return void res.writeHead(400).end();
  }
  forward(req, res, url);
});
server.on('clientError', (_err, socket) => socket.destroy());
server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
