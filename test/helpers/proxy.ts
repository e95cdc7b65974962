/**
 * A real HTTP proxy for tests (node:http over real sockets) in front of a test server. It passes
 * every request through and counts what it carries: TCP connections from clients, and SSE
 * responses open at once. With `buffer` on, it holds back the body of every `text/event-stream`
 * response until the response ends, as a proxy that buffers does (the headers pass): a client
 * then sees a stream on which nothing arrives. `stop()` cuts every connection and refuses new ones,
 * as a server process that went away does, and `resume()` listens again on the same port. With
 * `gateway` set to a status, it answers every request itself with that status and an HTML page,
 * as a load balancer that cannot reach the server does.
 */
import { createServer, request as forward, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TestProxy {
  url: string;
  /** Client connections accepted so far. */
  connections: number;
  /** SSE responses open now, ever opened, and the most open at once. */
  streamsOpen: number;
  streamsTotal: number;
  streamsMax: number;
  /** Hold back SSE bodies until their response ends (can be switched at any time; applies to streams opened after). */
  buffer: boolean;
  /** Answer every request with this status (text/html) instead of passing it on; `cut()` ends the open ones. */
  gateway: number | undefined;
  /** Cuts every open connection (the proxy goes on listening). */
  cut(): void;
  close(): Promise<void>;
  /** Cuts every connection and stops listening (connections are refused) until `resume()`. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  resume(): Promise<void>;
}

export async function startProxy(target: string, opts: { buffer?: boolean } = {}): Promise<TestProxy> {
  const to = new URL(target);
  const proxy: TestProxy = {
    url: '',
    connections: 0,
    streamsOpen: 0,
    streamsTotal: 0,
    streamsMax: 0,
    buffer: opts.buffer ?? false,
    gateway: undefined,
    cut: () => {},
    close: async () => {},
    stop: async () => {},
    resume: async () => {},
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (proxy.gateway !== undefined) {
      req.resume();
      res.writeHead(proxy.gateway, { 'content-type': 'text/html' });
      res.end('<html><body>no healthy upstream</body></html>');
      return;
    }
    const out = forward({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      const sse = (up.headers['content-type'] ?? '').startsWith('text/event-stream');
      const { 'content-length': _, ...headers } = up.headers;
      res.writeHead(up.statusCode ?? 502, sse ? headers : up.headers);
      if (!sse) return void up.pipe(res);
      proxy.streamsOpen++;
      proxy.streamsTotal++;
      proxy.streamsMax = Math.max(proxy.streamsMax, proxy.streamsOpen);
      const buffered = proxy.buffer;
      const held: Buffer[] = [];
      up.on('data', (chunk: Buffer) => {
        if (buffered) held.push(chunk);
        else res.write(chunk);
      });
      up.on('end', () => {
        for (const c of held) res.write(c);
        res.end();
      });
      res.on('close', () => {
        proxy.streamsOpen--;
        up.destroy();
      });
    });
    out.on('error', () => res.destroy());
    res.on('close', () => out.destroy()); // the client left (or the answer is complete)
    req.pipe(out);
  });
  server.on('connection', () => proxy.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const port = (server.address() as AddressInfo).port;
  let listening = true;
  proxy.close = async () => {
    if (!listening) return;
    listening = false;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  proxy.stop = proxy.close;
  proxy.cut = () => server.closeAllConnections();
  proxy.resume = async () => {
    if (listening) return;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    listening = true;
  };
  return proxy;
}
