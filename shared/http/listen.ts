/**
 * Serving a handler on a plain Node http.Server, and stopping on a signal: what `npm start`,
 * `npm run dev:cloud` and the local stand-ins' CLIs share.
 *
 * Timeouts suited to an API: headers within PATCHBAY_HEADERS_TIMEOUT_MS; a body within
 * PATCHBAY_BODY_TIMEOUT_MS (enforced by the body reader, which answers a JSON 408; Node's
 * `requestTimeout`, a little later, is the backstop). Neither cuts an SSE stream: Node's request
 * timeouts end once the request (a GET without a body) is received, and sockets have no idle
 * timeout; a stream ends at PATCHBAY_SSE_MAX_MS.
 */
import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { type Config, ConfigError } from '../config.js';

export type ServerTimeouts = Pick<Config, 'headersTimeoutMs' | 'bodyTimeoutMs'>;

/** The http.Server options for these timeouts. */
export function serverOptions(t: ServerTimeouts): ServerOptions {
  return {
    headersTimeout: t.headersTimeoutMs,
    // Later than the body reader's own limit, so a slow body gets its JSON 408 from there.
    requestTimeout: t.headersTimeoutMs + 2 * t.bodyTimeoutMs,
    // How often Node checks both (its default, 30 s, would stretch a short timeout).
    connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(t.headersTimeoutMs / 4))),
  };
}

export interface Listening {
  server: Server;
  /** The bound port (the real one when 0 was asked for). */
  port: number;
  /** Stops accepting, drops open connections (SSE streams included), resolves when closed. */
  close(): Promise<void>;
}

export async function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => unknown,
  port: number,
  host: string,
  timeouts: ServerTimeouts,
): Promise<Listening> {
  const server = createServer(serverOptions(timeouts), (req, res) => void handler(req, res));
  server.keepAliveTimeout = 65_000; // longer than common load balancers' idle timeout
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE' ? new ConfigError(`PORT: port ${port} is already in use on ${host}; stop what listens there or choose another port`) : err,
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const addr = server.address();
  return {
    server,
    port: typeof addr === 'object' && addr ? addr.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * On the first SIGINT or SIGTERM: `close()`, then exit 0 (1 if closing failed). Later signals are
 * ignored while closing: Ctrl-C under `npm run` delivers SIGINT twice (the terminal signals the
 * whole process group, and npm forwards its own copy to the script), and a second signal left to
 * its default action would kill the process before it stops what it started.
 */
export function exitOnSignal(close: () => Promise<void>): void {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    close().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
