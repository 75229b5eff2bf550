import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { listenOn } from './proxy-harness';

/** A raw TCP origin: whatever bytes a test wants a destination to send, malformed ones too. */
export interface RawOrigin {
  readonly server: Server;
  readonly port: number;
  /** Every connection the proxy opened to it, in order. */
  readonly sockets: Socket[];
  /** Resolves once `n` request lines (`... HTTP/1.x`) have arrived, over all connections. */
  requests(n: number): Promise<void>;
  /** Resolves once `n` of its connections have closed. */
  closed(n: number): Promise<void>;
}

/** A raw origin on 127.0.0.1:0 that hands each chunk a connection sends to `onData`. */
export async function startRawOrigin(onData: (socket: Socket, chunk: string) => void): Promise<RawOrigin> {
  const sockets: Socket[] = [];
  let closes = 0;
  let arrived = 0;
  const waiters: Array<() => void> = [];
  const wake = (): void => waiters.splice(0).forEach((w) => w());
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => s.destroy());
    s.on('close', () => {
      closes += 1;
      wake();
    });
    s.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      arrived += text.match(/ HTTP\/1\.[01]\r\n/g)?.length ?? 0;
      wake();
      onData(s, text);
    });
  });
  const until = (test: () => boolean): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => (test() ? resolve() : void waiters.push(check));
      check();
    });
  return {
    server,
    port: await listenOn(server),
    sockets,
    requests: (n) => until(() => arrived >= n),
    closed: (n) => until(() => closes >= n),
  };
}

/** A TCP origin on 127.0.0.1:0 that sends back every byte and ends its side when the client does. */
export async function startEchoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.on('data', (chunk) => s.write(chunk));
    s.on('end', () => s.end());
  });
  return { server, port: await listenOn(server) };
}
