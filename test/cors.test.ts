/**
 * CORS by origin (shared/http/cors.ts), over a real socket: an allowed origin's requests and
 * preflights get `Access-Control-Allow-Origin` (its own origin echoed, with `Vary: Origin`) and the
 * exposed headers; any other origin's, and a request with no Origin, get no CORS headers at all, so
 * a browser keeps the answer from the page. `*` stays the embedded default for local development.
 * The origins a domain's admins allow (its record) are tested on both stacks in
 * test/contract/service-tokens.ts, and a failing record lookup in test/service-tokens.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allowedOrigin } from '../shared/http/cors.js';
import { request, startServer, type TestServer } from './helpers/server.js';

const APP = 'https://app.example.com';
const DEV = 'http://localhost:5173';
const EXPOSED = 'ETag, Location, Retry-After, X-Request-Id';

const corsHeaders = (h: Headers) => [...h.keys()].filter((k) => k.startsWith('access-control-'));

describe('allowedOrigin', () => {
  it('allows any origin with *, and only listed origins, compared exactly, otherwise', () => {
    expect(allowedOrigin(undefined, '*')).toBe('*');
    expect(allowedOrigin('https://evil.example', '*')).toBe('*');
    expect(allowedOrigin(APP, [APP, DEV])).toBe(APP);
    expect(allowedOrigin(DEV, [APP, DEV])).toBe(DEV);
    for (const o of [
      undefined,
      'null',
      'https://evil.example',
      'http://app.example.com',
      'https://app.example.com:8443',
      'https://x.app.example.com',
      `${APP}.evil.example`,
    ]) {
      expect(allowedOrigin(o, [APP, DEV]), String(o)).toBeNull();
    }
    expect(allowedOrigin(APP, [])).toBeNull();
  });
});

describe('a server that allows a list of origins', () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ corsOrigins: [APP, DEV] });
  });
  afterAll(() => srv.close());

  it('echoes an allowed origin on simple requests, errors included, with Vary: Origin and the exposed headers', async () => {
    for (const [method, path] of [
      ['POST', '/v1/auth/anonymous'],
      ['GET', '/healthz'],
      ['GET', '/v1/scopes/no-such-scope'],
    ] as const) {
      const res = await request(srv.url, method, path, { headers: { origin: DEV } });
      expect(res.headers.get('access-control-allow-origin'), `${method} ${path}`).toBe(DEV);
      expect(res.headers.get('access-control-expose-headers')).toBe(EXPOSED);
      expect(res.headers.get('vary')).toBe('Origin');
    }
  });

  it('sends no CORS headers to another origin or to a request without one, but still Vary: Origin', async () => {
    const cases: Array<Record<string, string>> = [{ origin: 'https://evil.example' }, { origin: 'null' }, { origin: 'http://app.example.com' }, {}];
    for (const headers of cases) {
      const res = await request(srv.url, 'POST', '/v1/auth/anonymous', { headers });
      // The server still answers (it is the browser that keeps the answer from the page); an opaque
      // `Origin: null` names no app, so sign-in refuses it (shared/http/domain.ts).
      expect(res.status).toBe(headers.origin === 'null' ? 400 : 200);
      expect(corsHeaders(res.headers), JSON.stringify(headers)).toEqual([]);
      expect(res.headers.get('vary')).toBe('Origin');
    }
  });

  it("answers an allowed origin's preflight, and another origin's with no CORS headers", async () => {
    const preflight = (origin: string) =>
      request(srv.url, 'OPTIONS', '/v1/scopes/x/patches', {
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
      });
    const ok = await preflight(APP);
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe(APP);
    expect(ok.headers.get('access-control-allow-methods')).toBe('GET, POST, PUT, DELETE, OPTIONS');
    expect(ok.headers.get('access-control-allow-headers')).toBe('Authorization, Content-Type, If-None-Match, Last-Event-ID, X-Request-Id');
    expect(ok.headers.get('access-control-max-age')).toBe('600');
    expect(ok.headers.get('vary')).toBe('Origin');
    const refused = await preflight('https://evil.example');
    expect(refused.status).toBe(204);
    expect(corsHeaders(refused.headers)).toEqual([]);
  });
});

describe('the defaults', () => {
  it('allow every origin with * in embedded mode, and none with `none`', async () => {
    const open = await startServer();
    const closed = await startServer({ corsOrigins: [] });
    try {
      const res = await request(open.url, 'GET', '/healthz', { headers: { origin: 'https://anything.example' } });
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(res.headers.get('access-control-expose-headers')).toBe(EXPOSED);
      const pre = await request(open.url, 'OPTIONS', '/v1/scopes', { headers: { origin: 'https://anything.example' } });
      expect(pre.headers.get('access-control-allow-methods')).toBe('GET, POST, PUT, DELETE, OPTIONS');
      for (const path of ['/healthz', '/v1/scopes']) {
        const none = await request(closed.url, path === '/healthz' ? 'GET' : 'OPTIONS', path, { headers: { origin: APP } });
        expect(corsHeaders(none.headers)).toEqual([]);
      }
    } finally {
      await open.close();
      await closed.close();
    }
  });
});
