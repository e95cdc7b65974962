/**
 * The HTTP frame against real clients on a real socket:
 * - an over-limit body reaches fetch and node:http clients (fixed length and chunked) as the
 *   `413 too_large` JSON answer, never as a reset connection;
 * - a body (or headers) trickled in too slowly is cut off by the configured timeouts, while an
 *   SSE stream outlives them;
 * - request logs tell the real outcome (499 for a client that left, 408 for a timeout, neither
 *   at ERROR), never contain a credential from the URL, and carry the request id and trace;
 * - responses carry `X-Request-Id`, `X-Content-Type-Options: nosniff`, `Cache-Control: no-store`
 *   (JSON), and `HEAD` is answered wherever `GET` is.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, newClient, request, spawnServer, startServer, type TestServer, tempDir } from './helpers/server.js';

const MiB = 1024 * 1024;
const TRIES = 10;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

function bigBody(size: number): Buffer {
  // Valid JSON of the given size: the limit, not the syntax, is what refuses it.
  const body = Buffer.alloc(size, 0x61);
  body.write('{"state":"', 0);
  body.write('"}', size - 2);
  return body;
}

/** POSTs `body` with fetch; `chunked` streams it without a Content-Length. */
async function postWithFetch(url: string, token: string, body: Buffer, chunked: boolean): Promise<Answer> {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
  let payload: Uint8Array | ReadableStream<Uint8Array> = new Uint8Array(body);
  if (chunked) {
    let offset = 0;
    payload = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= body.length) return controller.close();
        controller.enqueue(new Uint8Array(body.subarray(offset, offset + 64 * 1024)));
        offset += 64 * 1024;
      },
    });
  }
  const res = await fetch(url, { method: 'POST', headers, body: payload, duplex: 'half' } as RequestInit);
  return { status: res.status, headers: Object.fromEntries(res.headers), text: await res.text() };
}

/** POSTs `body` with node:http, in 64 KiB writes that respect back-pressure. */
function postWithNodeHttp(url: string, token: string, body: Buffer, chunked: boolean): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
    if (!chunked) headers['content-length'] = String(body.length);
    const req = httpRequest(url, { method: 'POST', headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    let offset = 0;
    const pump = () => {
      while (offset < body.length) {
        const chunk = body.subarray(offset, offset + 64 * 1024);
        offset += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

/** A raw TCP client: what it wrote is up to the test; resolves with everything the server sent. */
function rawClient(port: number): { socket: Socket; received: Promise<string> } {
  const socket = connect(port, '127.0.0.1');
  const received = new Promise<string>((resolve) => {
    let text = '';
    socket.on('data', (c) => {
      text += c.toString('utf8');
    });
    socket.on('error', () => resolve(text));
    socket.on('close', () => resolve(text));
  });
  return { socket, received };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('an over-limit body', () => {
  // `npm start` in its own process: with client and server on one event loop the race that
  // resets the connection rarely shows.
  let srv: { url: string; child: ChildProcess };
  let dataDir: string;
  let alice: Client;
  beforeAll(async () => {
    dataDir = tempDir();
    srv = await spawnServer({ PATCHBAY_DATA_DIR: dataDir });
    alice = await newClient(srv.url);
  });
  afterAll(async () => {
    srv.child.kill('SIGKILL');
    await once(srv.child, 'exit').catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
  });

  for (const size of [2 * MiB, 12 * MiB]) {
    for (const chunked of [false, true]) {
      for (const [client, post] of [
        ['fetch', postWithFetch],
        ['node:http', postWithNodeHttp],
      ] as const) {
        it(`reaches ${client} as 413 too_large (${size / MiB} MiB, ${chunked ? 'chunked' : 'fixed length'}, ${TRIES} tries)`, async () => {
          const body = bigBody(size);
          for (let i = 0; i < TRIES; i++) {
            const res = await post(`${srv.url}/v1/scopes`, alice.token, body, chunked);
            expect(res.status).toBe(413);
            expect(JSON.parse(res.text).error).toMatchObject({ code: 'too_large', limit: 'maxBodyBytes' });
          }
        }, 120_000);
      }
    }
  }

  it('past PATCHBAY_MAX_DISCARD_BYTES is answered at once and the connection closed', async () => {
    const small = await startServer({ maxBodyBytes: 1024, maxDiscardBytes: 4096 });
    try {
      const port = Number(new URL(small.url).port);
      const { token } = await small.client();
      const { socket, received } = rawClient(port);
      // Declares 1 MiB and sends only the headers: nothing to wait for, the answer comes at once.
      socket.write(`POST /v1/scopes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${MiB}\r\n\r\n`);
      const text = await received;
      expect(text).toMatch(/^HTTP\/1\.1 413 /);
      expect(text.toLowerCase()).toContain('connection: close');
    } finally {
      await small.close();
    }
  });
});

describe('timeouts', () => {
  let srv: TestServer;
  let port: number;
  let token: string;
  beforeAll(async () => {
    srv = await startServer({ headersTimeoutMs: 300, bodyTimeoutMs: 500, sseMaxMs: 3000, sseHeartbeatMs: 200 });
    port = Number(new URL(srv.url).port);
    token = (await srv.client()).token;
  });
  afterAll(() => srv.close());

  it('answers a body trickled one byte at a time with 408 request_timeout once PATCHBAY_BODY_TIMEOUT_MS passes', async () => {
    const { socket, received } = rawClient(port);
    const started = Date.now();
    socket.write(`POST /v1/scopes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`);
    const trickle = setInterval(() => socket.writable && socket.write('{'), 100);
    const text = await received.finally(() => clearInterval(trickle));
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).error.code).toBe('request_timeout');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('drops a client whose headers trickle in past PATCHBAY_HEADERS_TIMEOUT_MS', async () => {
    const { socket, received } = rawClient(port);
    const started = Date.now();
    socket.write('GET /healthz HTTP/1.1\r\n');
    const trickle = setInterval(() => socket.writable && socket.write('X: y\r\n'), 100);
    const text = await received.finally(() => clearInterval(trickle));
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('leaves SSE streams alone: a stream outlives both timeouts and ends at PATCHBAY_SSE_MAX_MS', async () => {
    const id = (await request(srv.url, 'POST', '/v1/scopes', { body: {}, token })).json.id as string;
    const started = Date.now();
    const res = await fetch(`${srv.url}/v1/scopes/${id}/events`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const text = await res.text(); // resolves when the server ends the stream
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    expect(text).toContain('event: state');
    expect(text.match(/^: hb$/gm)?.length ?? 0).toBeGreaterThan(5);
  });
});

describe('request logs and response headers', () => {
  let srv: TestServer;
  let port: number;
  let alice: Client;
  let lines: Array<Record<string, unknown>>;
  beforeAll(async () => {
    lines = [];
    srv = await startServer({ logLevel: 'info', bodyTimeoutMs: 400, gcpProject: 'demo-project' }, undefined, {
      logTo: (line) => lines.push(JSON.parse(line)),
    });
    port = Number(new URL(srv.url).port);
    alice = await srv.client();
  });
  afterAll(() => srv.close());

  /** Waits (bounded) for a request log line that `match` accepts. */
  async function logLine(match: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = lines.find((l) => l.httpRequest !== undefined && match(l));
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no such log line in ${JSON.stringify(lines, null, 1)}`);
      await sleep(20);
    }
  }
  const errors = () => lines.filter((l) => l.severity === 'ERROR');

  it('logs a client that aborts its upload as 499 at WARNING, with no ERROR', async () => {
    const before = errors().length;
    const { socket, received } = rawClient(port);
    socket.write(
      `POST /v1/scopes HTTP/1.1\r\nHost: x\r\nX-Request-Id: abort-1\r\nAuthorization: Bearer ${alice.token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"sta`,
    );
    await sleep(100);
    socket.destroy();
    await received;
    const line = await logLine((l) => l.requestId === 'abort-1');
    expect(line).toMatchObject({ severity: 'WARNING', status: 499, route: 'scopes.create' });
    expect(errors().length).toBe(before);
  });

  it('logs a body that did not arrive in time as 408 at WARNING, with no ERROR', async () => {
    const before = errors().length;
    const { socket, received } = rawClient(port);
    socket.write(
      `POST /v1/scopes HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow-1\r\nAuthorization: Bearer ${alice.token}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`,
    );
    expect(await received).toMatch(/^HTTP\/1\.1 408 /);
    const line = await logLine((l) => l.requestId === 'slow-1');
    expect(line).toMatchObject({ severity: 'WARNING', status: 408, route: 'scopes.create' });
    expect(errors().length).toBe(before);
  });

  it('redacts a signed file token in the logged path', async () => {
    const res = await request(srv.url, 'GET', '/v1/files/SECRETCLAIMS.SECRETMAC?x=1', { headers: { 'x-request-id': 'redact-file' } });
    expect(res.status).toBe(403);
    const line = await logLine((l) => l.requestId === 'redact-file');
    const url = (line.httpRequest as { requestUrl: string }).requestUrl;
    expect(url).toBe('/v1/files/REDACTED?x=1');
  });

  it('redacts every credential-looking query parameter in the logged URL', async () => {
    const query =
      '?since=0&access_token=SECRET1&Token=SECRET2&api_key=SECRET3&X-Api-Key=SECRET4&ticket=SECRET5&password=SECRET6&signature=SECRET7&auth=SECRET8&secret=SECRET9&key=SECRETA';
    const res = await request(srv.url, 'GET', `/v1/scopes/some-scope/events${query}`, { headers: { 'x-request-id': 'redact-1' } });
    expect(res.status).toBe(401);
    const line = await logLine((l) => l.requestId === 'redact-1');
    const url = (line.httpRequest as { requestUrl: string }).requestUrl;
    expect(url).not.toMatch(/SECRET/);
    expect(url).toContain('since=0');
    expect(url).toContain('access_token=REDACTED');
    expect(JSON.stringify(lines)).not.toMatch(/SECRET/);
  });

  it('sends and logs the request id: the client one when sane, else a generated one; and the Cloud trace', async () => {
    const mine = await request(srv.url, 'GET', '/healthz', {
      headers: { 'x-request-id': 'req-42.a:b', 'x-cloud-trace-context': '105445AA7843BC8BF206B12000100000/1;o=1' },
    });
    expect(mine.headers.get('x-request-id')).toBe('req-42.a:b');
    expect(await logLine((l) => l.requestId === 'req-42.a:b')).toMatchObject({
      'logging.googleapis.com/trace': 'projects/demo-project/traces/105445aa7843bc8bf206b12000100000',
    });
    for (const bad of ['has space', 'x'.repeat(129), 'quote"', 'new\tline']) {
      const res = await request(srv.url, 'GET', '/healthz', { headers: { 'x-request-id': bad } });
      const id = res.headers.get('x-request-id') as string;
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      const line = await logLine((l) => l.requestId === id);
      expect(line['logging.googleapis.com/trace']).toBeUndefined();
    }
  });

  it('exposes X-Request-Id to browsers, sends nosniff everywhere and no-store on JSON', async () => {
    const created = await alice.request('POST', '/v1/scopes', { body: { state: { a: 1 } } });
    const got = await alice.request('GET', `/v1/scopes/${created.json.id}`);
    const failed = await alice.request('GET', '/v1/scopes/no-such-scope');
    for (const res of [created, got, failed]) {
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('access-control-expose-headers')).toBe('ETag, Location, Retry-After, X-Request-Id');
    }
    const history = await alice.request('GET', `/v1/scopes/${created.json.id}/patches`);
    expect(history.headers.get('cache-control')).toBe('no-store');
    expect(history.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('answers HEAD wherever GET is allowed, with GET headers and no body', async () => {
    const id = (await alice.request('POST', '/v1/scopes', { body: { state: { a: 1 } } })).json.id as string;
    const get = await alice.request('GET', `/v1/scopes/${id}`);
    const head = await alice.request('HEAD', `/v1/scopes/${id}`);
    expect(head.status).toBe(200);
    expect(head.text).toBe('');
    expect(head.headers.get('etag')).toBe(get.headers.get('etag'));
    expect(head.headers.get('content-length')).toBe(get.headers.get('content-length'));
    expect((await alice.request('HEAD', '/v1/scopes/no-such-scope')).status).toBe(404);
    expect((await request(srv.url, 'HEAD', '/healthz')).status).toBe(200);
    const history = await alice.request('HEAD', `/v1/scopes/${id}/patches`);
    expect([history.status, history.text, history.headers.get('content-type')]).toEqual([200, '', 'application/x-ndjson; charset=utf-8']);
    const events = await alice.request('HEAD', `/v1/scopes/${id}/events`); // ends at once, not a stream
    expect([events.status, events.text, events.headers.get('content-type')]).toEqual([200, '', 'text/event-stream; charset=utf-8']);
    const post = await alice.request('HEAD', '/v1/auth/anonymous');
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('POST');
    const patches = await alice.request('DELETE', `/v1/scopes/${id}/patches`);
    expect(patches.headers.get('allow')).toBe('POST, GET, HEAD');
  });
});
