/**
 * The load generator's HTTP and SSE client for the v1 contract, on node:http with keep-alive
 * sockets (fetch costs several times more CPU per request, and this process has one core for
 * all the clients of a run). The transport floor speaks the same contract, so every HTTP
 * workload runs unchanged against patchbay and against the floor.
 */
import { Agent, request as httpRequest, type IncomingMessage } from 'node:http';

export interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: replies are read loosely by the workloads
  json: any;
}

export class HttpClient {
  readonly agent: Agent;
  private readonly host: string;
  private readonly port: number;

  constructor(
    readonly base: string,
    public token = '',
    maxSockets = 256,
  ) {
    const u = new URL(base);
    this.host = u.hostname;
    this.port = Number(u.port);
    this.agent = new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'fifo' });
  }

  static async signIn(base: string, maxSockets = 256): Promise<HttpClient> {
    const c = new HttpClient(base, '', maxSockets);
    const r = await c.call('POST', '/v1/auth/anonymous');
    if (r.status !== 200) throw new Error(`sign-in failed: ${r.status} ${JSON.stringify(r.json)}`);
    c.token = r.json.token as string;
    return c;
  }

  /** The user id in the token (its `sub`), without verifying it. */
  get userId(): string {
    const payload = this.token.split('.')[1] ?? '';
    return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')).sub as string;
  }

  call(method: string, path: string, body?: unknown): Promise<Reply> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (text !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(text));
    }
    return new Promise<Reply>((resolve, reject) => {
      const req = httpRequest({ host: this.host, port: this.port, method, path, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = raw === '' ? undefined : JSON.parse(raw);
          } catch {
            json = raw;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(text);
    });
  }

  /** POST/GET that must succeed (2xx); throws with the body otherwise. */
  async ok(method: string, path: string, body?: unknown): Promise<Reply['json']> {
    const r = await this.call(method, path, body);
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  }

  /** `type`: the scope's type (the `validated` variant's configuration has a schema for the write workloads' types). */
  createScope(state: unknown, id?: string, type?: string): Promise<{ id: string }> {
    return this.ok('POST', '/v1/scopes', { state, ...(id === undefined ? {} : { id }), ...(type === undefined ? {} : { type }) });
  }

  patch(id: string, patch: unknown[], ii?: number): Promise<{ ii: number }> {
    return this.ok('POST', `/v1/scopes/${encodeURIComponent(id)}/patches`, ii === undefined ? { patch } : { ii, patch });
  }

  close(): void {
    this.agent.destroy();
  }
}

export interface SseEvent {
  type: string;
  id: string | undefined;
  data: string;
}

/**
 * One SSE stream (GET .../events), parsed incrementally. `onEvent` runs for every event as it is
 * parsed; `ready` resolves when the response headers arrive. Its own socket (no agent pooling).
 */
export class SseStream {
  readonly ready: Promise<void>;
  private req: ReturnType<typeof httpRequest> | undefined;
  private buf = '';
  closed = false;

  constructor(base: string, token: string, path: string, onEvent: (e: SseEvent) => void, headers: Record<string, string> = {}) {
    const u = new URL(base);
    this.ready = new Promise<void>((resolve, reject) => {
      this.req = httpRequest(
        {
          host: u.hostname,
          port: Number(u.port),
          method: 'GET',
          path,
          headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...headers },
          agent: false,
        },
        (res: IncomingMessage) => {
          if (res.statusCode !== 200) {
            reject(new Error(`SSE ${path}: ${res.statusCode}`));
            res.resume();
            return;
          }
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => this.feed(chunk, onEvent));
          res.on('error', () => {});
          resolve();
        },
      );
      this.req.on('error', (err) => {
        if (!this.closed) reject(err);
      });
      this.req.end();
    });
  }

  private feed(chunk: string, onEvent: (e: SseEvent) => void): void {
    const buf = this.buf + chunk;
    let start = 0;
    let end = buf.indexOf('\n\n');
    while (end >= 0) {
      const block = buf.slice(start, end);
      start = end + 2;
      end = buf.indexOf('\n\n', start);
      let type = 'message';
      let id: string | undefined;
      let data = '';
      let any = false;
      for (const line of block.split('\n')) {
        if (line.startsWith('data: ')) {
          data = data === '' ? line.slice(6) : `${data}\n${line.slice(6)}`;
          any = true;
        } else if (line.startsWith('event: ')) type = line.slice(7);
        else if (line.startsWith('id: ')) id = line.slice(4);
      }
      if (any) onEvent({ type, id, data });
    }
    this.buf = buf.slice(start);
  }

  close(): void {
    this.closed = true;
    this.req?.destroy();
  }
}
