/**
 * The client's HTTP transport: `fetch` with the bearer token, the domain header, and the token's
 * lifecycle. A token is a string, an async provider (asked again after a 401, e.g. an expired
 * Firebase ID token), or absent: then the client signs in anonymously (`POST /v1/auth/anonymous`)
 * once and keeps that user.
 */
import { Connection } from './connection.js';
import { errorFrom, PatchbayClientError } from './errors.js';

export type TokenProvider = () => string | Promise<string>;

export interface TransportOptions {
  url: string;
  token?: string | TokenProvider;
  /** The domain to act in when there is no browser `Origin` (sent as `X-Patchbay-Domain`; anonymous sign-in asks for it). */
  domain?: string;
  fetch?: typeof fetch;
}

export class Transport {
  readonly base: string;
  /** The `fetch` in use (options' or the global one), for requests that take no token (signed URLs). */
  readonly fetchFn: typeof fetch;
  private current: Promise<string> | undefined;
  /** The client's connection state, fed by every request here and by the streams (./connection.ts). */
  readonly conn = new Connection();

  constructor(private readonly opts: TransportOptions) {
    this.base = opts.url.replace(/\/+$/, '');
    this.fetchFn = opts.fetch ?? ((input, init) => fetch(input, init));
  }

  /** The current token (signing in or asking the provider the first time). */
  token(): Promise<string> {
    this.current ??= this.obtain();
    // A failed sign-in is not remembered: the next call tries again.
    this.current.catch(() => {
      this.current = undefined;
    });
    return this.current;
  }

  private async obtain(): Promise<string> {
    const t = this.opts.token;
    if (typeof t === 'string') return t;
    if (typeof t === 'function') return await t();
    const res = await this.raw('POST', '/v1/auth/anonymous', {
      body: this.opts.domain === undefined ? undefined : JSON.stringify({ domain: this.opts.domain }),
    });
    if (!res.ok) throw await errorFrom(res);
    return ((await res.json()) as { token: string }).token;
  }

  private async raw(
    method: string,
    path: string,
    init: { body?: string; token?: string; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (init.token) headers.authorization = `Bearer ${init.token}`;
    if (this.opts.domain !== undefined) headers['x-patchbay-domain'] = this.opts.domain;
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    const mark = this.conn.mark();
    let res: Response;
    try {
      res = await this.fetchFn(this.base + path, { method, headers, body: init.body, signal: init.signal });
    } catch (err) {
      if (init.signal?.aborted) throw new PatchbayClientError('closed', 'the request was cancelled');
      const e = new PatchbayClientError('network_error', `${method} ${path}: ${err instanceof Error ? err.message : String(err)}`);
      this.conn.failed(mark, e);
      throw e;
    }
    this.conn.answered(res.status, res.headers.get('content-type'), mark);
    return res;
  }

  /**
   * Sends a request with the token; after a 401, when the token comes from a provider, asks it
   * again and sends once more. Resolves with any answer (the caller decides what a status means);
   * rejects only without one (`network_error`, `closed`).
   */
  async send(method: string, path: string, init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
    const body = init.body === undefined ? undefined : JSON.stringify(init.body);
    const used = await this.token();
    const res = await this.raw(method, path, { ...init, body, token: used });
    if (res.status !== 401 || typeof this.opts.token !== 'function') return res;
    // Refresh once, unless another request already did (then use its token).
    if ((await this.token()) === used) this.current = undefined;
    await res.body?.cancel();
    return this.raw(method, path, { ...init, body, token: await this.token() });
  }

  /** `send`, then the JSON body of a 2xx answer; any other answer rejects with its typed error. */
  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.send(method, path, { body });
    if (!res.ok) throw await errorFrom(res);
    return (await res.json()) as T;
  }
}
