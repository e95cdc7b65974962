/**
 * docs/openapi.yaml against the real server. Every route is driven into every status it can be
 * provoked into, and each response (JSON body, declared headers, NDJSON lines, SSE event data) is
 * validated against what the spec gives for that exact path, method and status; a status the spec
 * does not list fails. Also: the spec lists exactly the router's route table, its error-code enum
 * is errors.ts's table with matching statuses, its request schemas refuse what
 * the server refuses, and every status it documents (except 500) was actually seen.
 */
import { readFileSync } from 'node:fs';
import Ajv2020Module from 'ajv/dist/2020.js';
import { EventSource } from 'eventsource';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadDomainConfig, StaticConfigs } from '../shared/domains/active.js';
import { ERROR_CODES } from '../shared/errors.js';
import { ROUTES } from '../shared/http/routes/index.js';
import { type Client, newClient, type Res, request, startServer, type TestServer, userIdOf } from './helpers/server.js';

// ajv is CommonJS: depending on interop, the class is the module itself or its `default`.
type AjvClass = typeof Ajv2020Module extends { default: infer C } ? C : typeof Ajv2020Module;
const Ajv2020 = ((Ajv2020Module as unknown as { default?: AjvClass }).default ?? Ajv2020Module) as AjvClass;

type Obj = Record<string, unknown>;
type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

const spec = parse(readFileSync(new URL('../docs/openapi.yaml', import.meta.url), 'utf8')) as Obj;
const SPEC_ID = 'openapi.json';
const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
// The spec document is registered whole so that its `#/components/...` refs resolve; its top-level
// OpenAPI fields are declared as (inert) keywords so strict mode accepts it.
for (const key of Object.keys(spec)) ajv.addKeyword(key);
ajv.addSchema(spec, SPEC_ID);

const paths = spec.paths as Record<string, Obj>;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** The value at a JSON Pointer (as segments) in the spec. */
function at(pointer: string[]): Obj {
  let node: unknown = spec;
  for (const seg of pointer) {
    if (node === null || typeof node !== 'object' || !(seg in node)) throw new Error(`the spec has nothing at /${pointer.join('/')}`);
    node = (node as Obj)[seg];
  }
  return node as Obj;
}

const refToPointer = (ref: string): string[] => {
  if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`);
  return ref
    .slice(2)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
};

/** Follows OpenAPI `$ref`s (responses, headers) to the object they name. */
function follow(pointer: string[]): { pointer: string[]; obj: Obj } {
  let p = pointer;
  let obj = at(p);
  while (typeof obj.$ref === 'string') {
    p = refToPointer(obj.$ref);
    obj = at(p);
  }
  return { pointer: p, obj };
}

const validators = new Map<string, ReturnType<typeof ajv.compile>>();
function expectValid(pointer: string[], value: unknown, what: string): void {
  const ref = `${SPEC_ID}#/${pointer.map((s) => encodeURIComponent(s.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/')}`;
  let validate = validators.get(ref);
  if (!validate) {
    validate = ajv.compile({ $ref: ref });
    validators.set(ref, validate);
  }
  if (!validate(value)) {
    expect.fail(`${what} does not match /${pointer.join('/')}: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
  }
}

/** Every `METHOD path status` the spec documents, and the ones responses were checked against. */
const documented = new Set<string>();
for (const [path, item] of Object.entries(paths)) {
  for (const m of METHODS) {
    const op = item[m] as Obj | undefined;
    if (op) for (const status of Object.keys(op.responses as Obj)) documented.add(`${m.toUpperCase()} ${path} ${status}`);
  }
}
documented.add('* <unknown path> 404');
documented.add('* <other method> 405');
const seen = new Set<string>();

/**
 * Where the spec describes this response: the operation's entry for the status, or the shared
 * responses for an unrouted path (404) or an undocumented method on a documented path (405).
 */
function responseFor(template: string | null, method: string, status: number): { pointer: string[]; obj: Obj } {
  if (template === null) {
    expect(status, `an unrouted path answered ${status}`).toBe(404);
    seen.add('* <unknown path> 404');
    return follow(['components', 'responses', 'NotFound']);
  }
  const item = paths[template];
  expect(item, `the spec has no path ${template}`).toBeDefined();
  if (!(item as Obj)[method.toLowerCase()]) {
    expect(status, `${method} ${template} is not in the spec but answered ${status}`).toBe(405);
    seen.add('* <other method> 405');
    return follow(['components', 'responses', 'MethodNotAllowed']);
  }
  const responses = at(['paths', template, method.toLowerCase(), 'responses']);
  expect(Object.keys(responses), `the spec lists no ${status} for ${method} ${template}`).toContain(String(status));
  seen.add(`${method} ${template} ${status}`);
  return follow(['paths', template, method.toLowerCase(), 'responses', String(status)]);
}

function checkHeaders(headers: Headers, pointer: string[], obj: Obj, what: string): void {
  // CORS (described in info.description), on every response with the default configuration.
  expect(headers.get('access-control-allow-origin'), `${what}: CORS origin`).toBe('*');
  expect(headers.get('access-control-expose-headers'), `${what}: CORS exposed headers`).toBe('ETag, Location, Retry-After, X-Request-Id');
  for (const name of Object.keys((obj.headers as Obj | undefined) ?? {})) {
    const h = follow([...pointer, 'headers', name]);
    const value = headers.get(name);
    if (h.obj.required === true) expect(value, `${what}: header ${name}`).not.toBeNull();
    if (value !== null) expectValid([...h.pointer, 'schema'], value, `${what}: header ${name}`);
  }
}

/** The media type of the response, which must be one the spec lists for it; its pointer. */
function mediaFor(headers: Headers, pointer: string[], obj: Obj, what: string): string[] {
  const type = (headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
  if ('*/*' in (obj.content as Obj)) return [...pointer, 'content', '*/*']; // a file: any type
  expect(Object.keys(obj.content as Obj), `${what}: content type`).toContain(type);
  return [...pointer, 'content', type];
}

/** Checks a complete response against the spec entry for (template, method, status). */
function check(res: Res, method: string, template: string | null): Res {
  const what = `${method} ${template ?? '<unknown path>'} ${res.status}`;
  const { pointer, obj } = responseFor(template, method, res.status);
  checkHeaders(res.headers, pointer, obj, what);
  if (!obj.content) {
    expect(res.text, `${what}: the spec gives no body`).toBe('');
    return res;
  }
  const media = mediaFor(res.headers, pointer, obj, what);
  const type = media[media.length - 1];
  if (type === 'application/json') {
    expectValid([...media, 'schema'], JSON.parse(res.text), what);
  } else if (type === '*/*') {
    // a file's bytes: nothing to validate
  } else if (type === 'application/x-ndjson') {
    if (res.text !== '') expect(res.text.endsWith('\n'), `${what}: the last line is terminated`).toBe(true);
    for (const line of res.text.split('\n').slice(0, -1)) expectValid([...media, 'x-ndjson-line'], JSON.parse(line), `${what}: line`);
  } else {
    expect.fail(`${what}: no body check for ${type}`);
  }
  return res;
}

/** The `default` domain's configuration: scopes of type `counter` hold an `n` of at most 100. */
const VALIDATED = new StaticConfigs();
VALIDATED.set(
  'default',
  loadDomainConfig(
    'types:\n  counter:\n    schema: {type: object, properties: {n: {type: integer, maximum: 100}}}\nwebhooks:\n  - {name: hook, url: "http://127.0.0.1:9/h", types: [hooked]}\n' +
      'tables:\n  counters: {type: counter, columns: {n: {type: integer}}}\n' +
      'queries:\n' +
      '  counters_from: {sql: "SELECT id, n FROM counters WHERE n >= $min ORDER BY id", params: {min: {type: integer}}}\n' +
      '  me: {sql: "SELECT $REQUESTER AS me, $DOMAIN AS domain"}\n' +
      '  fails: {sql: "SELECT 1/0 AS x"}\n' +
      '  slow: {sql: "SELECT pg_sleep(0.8) IS NULL AS slept"}\n',
    { maxConfigBytes: 4096 },
  ),
);

let srv: TestServer;
let alice: Client;
let bob: Client;

beforeAll(async () => {
  srv = await startServer(
    {
      maxOps: 3,
      maxBatch: 4,
      maxBodyBytes: 4096,
      maxPatchBytes: 1024,
      maxStateBytes: 512,
      maxPathDepth: 4,
      maxValueDepth: 4,
      maxAccessUsers: 3,
      maxListPage: 5,
      mirrorQueryTimeoutMs: 300,
    },
    undefined,
    { configs: VALIDATED },
  );
  alice = await srv.client();
  bob = await srv.client();
  // The configuration declares a mirror, so PGlite starts now (it blocks the process for seconds):
  // wait for it here rather than in the middle of a test.
  await srv.app.queries.run('default', 'me', {}, { requester: 'warm-up', domain: 'default' });
}, 180_000);
afterAll(() => srv.close());

interface CallOpts {
  id?: string;
  /** The `{domain}` parameter (default DOMAIN). */
  domain?: string;
  /** The `{name}` of a path, percent-encoded here. */
  name?: string;
  query?: string;
  body?: unknown;
  raw?: string;
  headers?: Record<string, string>;
  /** Default alice's token; null sends none. */
  token?: string | null;
  /** Other path parameters (`{domain}`, `{name}`), as sent. */
  params?: Record<string, string>;
}

/** Calls the server on a documented route, checks the response against the spec, and returns it. */
async function call(method: Method, template: string, opts: CallOpts = {}): Promise<Res> {
  let path = template;
  for (const [k, v] of Object.entries(opts.params ?? {})) path = path.replace(`{${k}}`, v);
  path = path
    .replace('{domain}', encodeURIComponent(opts.domain ?? DOMAIN))
    .replace('{id}', encodeURIComponent(opts.id ?? ''))
    .replace('{name}', encodeURIComponent(opts.name ?? ''));
  path += opts.query ?? '';
  const res = await request(srv.url, method, path, {
    body: opts.body,
    raw: opts.raw,
    headers: opts.headers,
    token: opts.token === undefined ? alice.token : opts.token,
  });
  check(res, method, template);
  if (opts.body !== undefined && res.status < 300) {
    expectValid(
      ['paths', template, method.toLowerCase(), 'requestBody', 'content', 'application/json', 'schema'],
      opts.body,
      `request to ${method} ${template}`,
    );
  }
  return res;
}

function expectError(res: Res, status: number, code: string): void {
  expect(res.status, res.text).toBe(status);
  expect(res.json.error.code).toBe(code);
}

const BAD_ID = 'x'.repeat(129);
/** The domain alice administers (the domains routes). */
const DOMAIN = 'app.example.com';
const MISSING = 'no-such-scope';

/** A scope every signed-in user may read (bob reads alice's scopes in these tests). */
async function newScope(state: unknown = { n: 0 }, c: Client = alice): Promise<string> {
  const res = await call('POST', '/v1/scopes', { body: { state, access: { visibility: 'authenticated' } }, token: c.token });
  expect(res.status).toBe(201);
  return res.json.id as string;
}

describe('the spec itself', () => {
  it('compiles every component schema in strict mode', () => {
    for (const name of Object.keys(at(['components', 'schemas']))) {
      expect(() => ajv.compile({ $ref: `${SPEC_ID}#/components/schemas/${name}` }), name).not.toThrow();
    }
  });

  it('lists every error code of errors.ts', () => {
    const expected = Object.keys(ERROR_CODES);
    expect([...(at(['components', 'schemas', 'ErrorCode']).enum as string[])].sort()).toEqual(expected.sort());
  });

  it('gives each error response only codes whose status is that response status', () => {
    /** The `error.code` constants a schema can produce, following refs and compositions. */
    const codesOf = (schema: Obj): string[] => {
      if (typeof schema.$ref === 'string') return codesOf(at(refToPointer(schema.$ref)));
      const parts = ['allOf', 'oneOf', 'anyOf'].flatMap((k) => ((schema[k] as Obj[] | undefined) ?? []).flatMap(codesOf));
      const code = ((schema.properties as Obj | undefined)?.error as Obj | undefined)?.properties as Obj | undefined;
      const own = (code?.code as Obj | undefined)?.const;
      return typeof own === 'string' ? [...parts, own] : parts;
    };
    const entries: Array<[string, string[]]> = [];
    for (const [path, item] of Object.entries(paths)) {
      for (const m of METHODS) {
        if (!item[m]) continue;
        for (const status of Object.keys(at(['paths', path, m, 'responses']))) entries.push([status, ['paths', path, m, 'responses', status]]);
      }
    }
    entries.push(['404', ['components', 'responses', 'NotFound']], ['405', ['components', 'responses', 'MethodNotAllowed']]);
    let errors = 0;
    for (const [status, pointer] of entries) {
      if (Number(status) < 400) continue;
      errors++;
      const { obj } = follow(pointer);
      const schema = ((obj.content as Obj)['application/json'] as Obj).schema as Obj;
      const codes = codesOf(schema);
      expect(codes.length, `${pointer.join(' ')} names no error code`).toBeGreaterThan(0);
      for (const code of codes) expect(ERROR_CODES[code as keyof typeof ERROR_CODES], `${code} at ${pointer.join(' ')}`).toBe(Number(status));
    }
    expect(errors).toBeGreaterThan(30);
  });

  it('lists exactly the routes of the handler', () => {
    const routes = ROUTES.map((r) => `${r.method} ${r.path}`);
    const inSpec = Object.entries(paths).flatMap(([path, item]) => METHODS.filter((m) => item[m]).map((m) => `${m.toUpperCase()} ${path}`));
    expect(routes.sort()).toEqual(inSpec.sort());
  });

  it('refuses the request bodies the server refuses (400 invalid_request)', async () => {
    const id = await newScope();
    const patchBodies: unknown[] = [
      { patch: [], ii: 0 },
      { patch: [], ii: 1.5 },
      { patch: [], session: 's' },
      { patch: [], si: 1 },
      { patch: [], session: 'has space', si: 1 },
      { patch: [], extra: 1 },
      {},
      { patch: [{ op: 'add', path: '/a' }] },
      { patch: [{ op: 'move', path: '/a' }] },
      { patch: [{ op: 'add', path: 'a', value: 1 }] },
      { patch: [{ op: 'add', path: '/a~2', value: 1 }] },
      { patch: [{ op: 'remove', path: 1 }] },
      { patch: [{ op: 'merge', path: '/a', value: 1 }] },
    ];
    for (const body of patchBodies) {
      const res = await call('POST', '/v1/scopes/{id}/patches', { id, body });
      expectError(res, 400, 'invalid_request');
      expect(() => expectValid(['components', 'schemas', 'PatchRequest'], body, 'body')).toThrow();
    }
    const createBodies: unknown[] = [{ id: 'has space' }, { id: '' }, { name: 'x'.repeat(257) }, { type: 'x'.repeat(129) }, { name: null }, { extra: 1 }, []];
    for (const body of createBodies) {
      const res = await call('POST', '/v1/scopes', { body });
      expectError(res, 400, 'invalid_request');
      expect(() => expectValid(['components', 'schemas', 'CreateScopeRequest'], body, 'body')).toThrow();
    }
  });
});

describe('routing', () => {
  it('answers every documented route (none is an unknown path)', async () => {
    const id = await newScope();
    for (const [path, item] of Object.entries(paths)) {
      for (const m of METHODS.filter((x) => item[x])) {
        if (path.endsWith('/events')) continue; // a stream: opened below, in its own test
        const res = await call(m.toUpperCase() as Method, path, { id, name: 'x' });
        expect(res.json?.error?.code, `${m} ${path}`).not.toBe('not_found');
      }
    }
  });

  it('405s a method a documented path does not have, with Allow = the documented methods (and HEAD with GET)', async () => {
    for (const [path, item] of Object.entries(paths)) {
      const res = check(await request(srv.url, 'PATCH', path.replace('{domain}', DOMAIN).replace('{id}', 'x'), { token: alice.token }), 'PATCH', path);
      expectError(res, 405, 'method_not_allowed');
      // HEAD is answered wherever GET is (info.description), without its own entry in the spec.
      const documentedMethods = METHODS.filter((m) => item[m]).flatMap((m) => (m === 'get' ? ['GET', 'HEAD'] : [m.toUpperCase()]));
      expect(res.headers.get('allow')?.split(', ').sort()).toEqual(documentedMethods.sort());
      expect([...res.json.error.allow].sort()).toEqual(documentedMethods.sort());
    }
  });

  it('404s a path no route matches', async () => {
    for (const path of ['/v2/scopes', '/v1/scopes/a/b', '/v1/scopes/', '/']) {
      expectError(check(await request(srv.url, 'GET', path, { token: alice.token }), 'GET', null), 404, 'not_found');
    }
  });

  it('answers a CORS preflight on any path as the description says', async () => {
    const res = await request(srv.url, 'OPTIONS', '/v1/scopes/x/patches', { token: null });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-methods')).toBe('GET, POST, PUT, DELETE, OPTIONS');
    expect(res.headers.get('access-control-allow-headers')).toBe('Authorization, Content-Type, If-None-Match, Last-Event-ID, X-Request-Id');
    expect(res.headers.get('access-control-max-age')).toBe('600');
  });
});

describe('auth and health', () => {
  it('issues anonymous tokens (200) and answers the health probe', async () => {
    const res = await call('POST', '/v1/auth/anonymous', { token: null });
    expect(res.status).toBe(200);
    expect(res.json.user.anonymous).toBe(true);
    expect((await call('GET', '/healthz', { token: null })).json).toEqual({ ok: true });
  });

  it('signs in for a domain: the body names it (200), a browser’s Origin must agree (403); 400s, 413s and 415s a bad body', async () => {
    const named = await call('POST', '/v1/auth/anonymous', { token: null, body: { domain: 'app.example.com' } });
    expect(named.json.user).toMatchObject({ kind: 'anonymous', domain: 'app.example.com' });
    const browser = await call('POST', '/v1/auth/anonymous', { token: null, headers: { origin: 'https://app.example.com' } });
    expect(browser.json.user.domain).toBe('app.example.com');
    const other = await call('POST', '/v1/auth/anonymous', { token: null, headers: { origin: 'https://evil.example' }, body: { domain: 'app.example.com' } });
    expectError(other, 403, 'forbidden');
    expect(other.json.error).toMatchObject({ domain: 'app.example.com', requested: 'evil.example' });
    expectError(await call('POST', '/v1/auth/anonymous', { token: null, body: { domain: 'Not A Domain' } }), 400, 'invalid_request');
    expectError(await call('POST', '/v1/auth/anonymous', { token: null, body: { domain: 'x'.repeat(5000) } }), 413, 'too_large');
    const text = await call('POST', '/v1/auth/anonymous', { token: null, raw: 'x', headers: { 'content-type': 'text/plain' } });
    expectError(text, 415, 'unsupported_media_type');
  });

  it('answers the caller (200), 400s an opaque Origin, 403s a domain its token is not for', async () => {
    const me = await call('GET', '/v1/me');
    expect(me.json).toEqual({ id: expect.stringMatching(/^anon:/), kind: 'anonymous', domain: 'default', anonymous: true });
    expectError(await call('GET', '/v1/me', { headers: { origin: 'null' } }), 400, 'invalid_request');
    const other = await call('GET', '/v1/me', { headers: { 'x-patchbay-domain': 'other.example' } });
    expectError(other, 403, 'forbidden');
    expect(other.json.error).toMatchObject({ domain: 'default', requested: 'other.example' });
  });

  it('403s anonymous sign-in when it is disabled', async () => {
    const closed = await startServer({ anonymousAuth: false });
    try {
      const res = await request(closed.url, 'POST', '/v1/auth/anonymous');
      check(res, 'POST', '/v1/auth/anonymous');
      expectError(res, 403, 'forbidden');
    } finally {
      await closed.close();
    }
  });

  it('429s past a rate limit or the user stream cap (with Retry-After), 403s past a quota, 503s a full instance', async () => {
    const one = { tokens: 1, windowMs: 60_000 };
    const limited = await startServer({
      limits: 'on',
      rateSignIn: { tokens: 3, windowMs: 60_000 },
      rateCreate: { tokens: 2, windowMs: 60_000 },
      rateWrite: one,
      rateList: one,
      sseMaxPerUser: 1,
      quotaScopes: 1,
      quotaBytes: 16,
    });
    const full = await startServer({ sseMaxPerInstance: 1 });
    const open: AbortController[] = [];
    const hold = async (url: string, token: string, id: string) => {
      const abort = new AbortController();
      open.push(abort);
      const res = await fetch(`${url}/v1/scopes/${id}/events`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
      expect(res.status).toBe(200);
    };
    try {
      const at = (url: string, method: Method, template: string, opts: { id?: string; body?: unknown; token?: string } = {}) =>
        request(url, method, template.replace('{id}', opts.id ?? ''), { body: opts.body, token: opts.token }).then((r) => check(r, method, template));
      const u = (await at(limited.url, 'POST', '/v1/auth/anonymous')).json.token as string;
      const v = (await at(limited.url, 'POST', '/v1/auth/anonymous')).json.token as string;
      await at(limited.url, 'POST', '/v1/auth/anonymous');
      expectError(await at(limited.url, 'POST', '/v1/auth/anonymous'), 429, 'rate_limited');
      const id = (await at(limited.url, 'POST', '/v1/scopes', { body: { state: { a: 'a very long string' } }, token: u })).json.id as string;
      expectError(await at(limited.url, 'POST', '/v1/scopes', { body: {}, token: u }), 403, 'quota_exceeded');
      expectError(await at(limited.url, 'POST', '/v1/scopes', { body: {}, token: u }), 429, 'rate_limited');
      const idV = (await at(limited.url, 'POST', '/v1/scopes', { body: {}, token: v })).json.id as string;
      expectError(
        await at(limited.url, 'POST', '/v1/scopes/{id}/patches', { id, body: { patch: [{ op: 'add', path: '/b', value: 1 }] }, token: u }),
        403,
        'quota_exceeded',
      );
      expect((await at(limited.url, 'POST', '/v1/scopes/{id}/patches', { id: idV, body: { patch: [] }, token: v })).status).toBe(200);
      expectError(await at(limited.url, 'POST', '/v1/scopes/{id}/patches', { id: idV, body: { patch: [] }, token: v }), 429, 'rate_limited');
      expectError(await at(limited.url, 'PUT', '/v1/scopes/{id}/access', { id: idV, body: { visibility: 'public' }, token: v }), 429, 'rate_limited');
      expectError(await at(limited.url, 'DELETE', '/v1/scopes/{id}', { id: idV, token: v }), 429, 'rate_limited');
      expect((await at(limited.url, 'GET', '/v1/scopes/{id}', { id: idV, token: v })).status).toBe(200); // the refused delete changed nothing
      expect((await at(limited.url, 'GET', '/v1/scopes', { token: v })).status).toBe(200);
      expectError(await at(limited.url, 'GET', '/v1/scopes', { token: v }), 429, 'rate_limited');
      await hold(limited.url, v, idV);
      expectError(await at(limited.url, 'GET', '/v1/scopes/{id}/events', { id: idV, token: v }), 429, 'rate_limited');
      const w = await newClient(full.url);
      const idW = (await request(full.url, 'POST', '/v1/scopes', { body: {}, token: w.token })).json.id as string;
      await hold(full.url, w.token, idW);
      expectError(await at(full.url, 'GET', '/v1/scopes/{id}/events', { id: idW, token: w.token }), 503, 'unavailable');
    } finally {
      for (const a of open) a.abort();
      await limited.close();
      await full.close();
    }
  });

  it('401s every authenticated route without a credential, or with a forged one', async () => {
    const id = await newScope();
    const forged = `${alice.token.slice(0, -4)}AAAA`;
    for (const [method, template] of [
      ['GET', '/v1/me'],
      ['POST', '/v1/scopes'],
      ['GET', '/v1/scopes'],
      ['GET', '/v1/scopes/{id}'],
      ['POST', '/v1/scopes/{id}/patches'],
      ['GET', '/v1/scopes/{id}/patches'],
      ['POST', '/v1/scopes/{id}/events/ticket'],
      ['GET', '/v1/scopes/{id}/events'],
      ['GET', '/v1/scopes/{id}/access'],
      ['PUT', '/v1/scopes/{id}/access'],
      ['DELETE', '/v1/scopes/{id}'],
      ['POST', '/v1/domains/{domain}/claim'],
      ['GET', '/v1/domains/{domain}/claim'],
      ['GET', '/v1/domains/{domain}'],
      ['PUT', '/v1/domains/{domain}/origins'],
      ['POST', '/v1/domains/{domain}/tokens'],
      ['GET', '/v1/domains/{domain}/tokens'],
      ['DELETE', '/v1/domains/{domain}/tokens/{id}'],
    ] as Array<[Method, string]>) {
      const body = method === 'GET' || method === 'DELETE' ? undefined : {};
      expectError(await call(method, template, { id, token: null, body }), 401, 'unauthorized');
      expectError(await call(method, template, { id, token: forged, body }), 401, 'unauthorized');
    }
  });
});

describe('scopes', () => {
  it('deletes a scope for its owner (204), 403s a reader, 404s a stranger, a deleted scope and a second delete, 400s a bad id', async () => {
    const id = await newScope();
    const priv = (await call('POST', '/v1/scopes', { body: {} })).json.id as string;
    expectError(await call('DELETE', '/v1/scopes/{id}', { id, token: bob.token }), 403, 'forbidden');
    expectError(await call('DELETE', '/v1/scopes/{id}', { id: priv, token: bob.token }), 404, 'scope_not_found');
    expectError(await call('DELETE', '/v1/scopes/{id}', { id: BAD_ID }), 400, 'invalid_request');
    expect((await call('GET', '/v1/scopes/{id}', { id })).status).toBe(200);
    const done = await call('DELETE', '/v1/scopes/{id}', { id });
    expect(done.status).toBe(204);
    expectError(await call('GET', '/v1/scopes/{id}', { id }), 404, 'scope_not_found');
    expectError(await call('DELETE', '/v1/scopes/{id}', { id }), 404, 'scope_not_found');
    expectError(await call('POST', '/v1/scopes', { body: { id } }), 409, 'scope_exists');
  });

  it('creates (201 with ETag and Location), reads (200), and answers 304 to a matching If-None-Match', async () => {
    const created = await call('POST', '/v1/scopes', {
      body: { id: 'oa.doc:1', name: 'doc', type: 'note', state: { a: [1, { b: null }] }, access: { visibility: 'authenticated', readers: ['anon:x'] } },
    });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/v1/scopes/oa.doc%3A1');
    expect(created.json.meta).toMatchObject({ name: 'doc', type: 'note', ii: 0 });
    const defaults = await call('POST', '/v1/scopes', { body: {} });
    expect(defaults.json.meta).toMatchObject({ name: null, type: null });
    const got = await call('GET', '/v1/scopes/{id}', { id: 'oa.doc:1', token: bob.token });
    expect(got.status).toBe(200);
    expect(got.headers.get('etag')).toBe('"0"');
    const same = await call('GET', '/v1/scopes/{id}', { id: 'oa.doc:1', headers: { 'if-none-match': 'W/"7", "0"' } });
    expect(same.status).toBe(304);
  });

  it("lists the caller's scopes in pages (200), and 400s a bad limit, cursor or filter", async () => {
    const carol = await srv.client();
    const ids = [await newScope({}, carol), await newScope({}, carol)].sort();
    const first = await call('GET', '/v1/scopes', { query: '?limit=1', token: carol.token });
    expect(first.status).toBe(200);
    expect(first.json.scopes).toHaveLength(1);
    const second = await call('GET', '/v1/scopes', { query: `?limit=5&cursor=${first.json.next}`, token: carol.token });
    expect([...first.json.scopes, ...second.json.scopes].map((s: { id: string }) => s.id).sort()).toEqual(ids);
    expect(second.json.next).toBeNull();
    for (const query of ['?limit=6', '?limit=0', '?limit=x', '?cursor=%2F%2F', '?domain=Not%20A%20Domain', '?other=1']) {
      expectError(await call('GET', '/v1/scopes', { query }), 400, 'invalid_request');
    }
  });

  it("lists a domain's webhooks and a webhook's dead letters for its admin (200); 403s anyone else; 400s a bad domain, name or page; 429s past the list rate", async () => {
    const aliceId = (await call('GET', '/v1/me')).json.id as string;
    await srv.app.domains.addAdmin('default', aliceId);
    const hooks = '/v1/domains/{domain}/webhooks';
    const dead = '/v1/domains/{domain}/webhooks/{name}/dead';
    const list = await call('GET', hooks, { params: { domain: 'default' } });
    expect(list.status).toBe(200);
    expect(list.json.webhooks).toEqual([expect.objectContaining({ name: 'hook', secret: expect.stringMatching(/^whsec_/) })]);
    expect((await call('GET', dead, { params: { domain: 'default', name: 'hook' }, query: '?limit=2' })).json).toEqual({
      domain: 'default',
      name: 'hook',
      letters: [],
      next: null,
    });
    expectError(await call('GET', hooks, { params: { domain: 'default' }, token: bob.token }), 403, 'forbidden');
    expectError(await call('GET', dead, { params: { domain: 'default', name: 'hook' }, token: bob.token }), 403, 'forbidden');
    expectError(await call('GET', hooks, { params: { domain: 'Not%20A%20Domain' } }), 400, 'invalid_request');
    for (const [name, query] of [
      ['Bad_Name', ''],
      ['hook', '?limit=0'],
      ['hook', '?limit=6'],
      ['hook', '?after=x'],
    ])
      expectError(await call('GET', dead, { params: { domain: 'default', name: name as string }, query }), 400, 'invalid_request');
    expect((await call('GET', hooks, { params: { domain: 'default' }, token: null })).status).toBe(401);
    expect((await call('GET', dead, { params: { domain: 'default', name: 'hook' }, token: null })).status).toBe(401);
    const limited = await startServer({ limits: 'on', rateList: { tokens: 1, windowMs: 60_000 } });
    try {
      const admin = await limited.client();
      await limited.app.domains.addAdmin('default', (await admin.request('GET', '/v1/me')).json.id);
      for (const path of ['/v1/domains/default/webhooks', '/v1/domains/default/webhooks/hook/dead']) {
        const other = await limited.client();
        await limited.app.domains.addAdmin('default', (await other.request('GET', '/v1/me')).json.id);
        expect((await other.request('GET', path)).status).toBe(200);
        const res = await other.request('GET', path);
        check(res, 'GET', path.endsWith('/dead') ? dead : hooks);
        expectError(res, 429, 'rate_limited');
      }
    } finally {
      await limited.close();
    }
  });

  it('runs a named query (200); 400s bad params or body, 401s without a token, 403s a foreign domain, 404s an unknown query, 413s a large body, 415s non-JSON, 422s a failing query, 429s past the query rate, 503s without a mirror, 504s a slow query', async () => {
    const q = '/v1/domains/{domain}/queries/{name}';
    const at = (name: string, opts: CallOpts = {}) => call('POST', q, { ...opts, params: { domain: 'default', name, ...(opts.params ?? {}) } });
    const aliceId = (await call('GET', '/v1/me')).json.id as string;
    expect((await at('me', { body: {} })).json).toEqual({
      columns: [
        { name: 'me', type: 'text' },
        { name: 'domain', type: 'text' },
      ],
      rows: [[aliceId, 'default']],
      truncated: false,
    });
    expect((await at('counters_from', { body: { params: { min: 1 } } })).json.rows).toEqual([]);
    for (const params of [{ REQUESTER: 'someone-else' }, { min: 'x' }, {}, { min: 1, other: 2 }, [1]]) {
      expectError(await at(Array.isArray(params) ? 'me' : 'counters_from', { body: { params } }), 400, 'invalid_params');
    }
    expectError(await at('me', { body: { params: {}, extra: 1 } }), 400, 'invalid_request');
    expectError(await at('me', { params: { domain: 'Not%20A%20Domain' }, body: {} }), 400, 'invalid_request');
    expect((await at('me', { body: {}, token: null })).status).toBe(401);
    expectError(await at('me', { body: {}, headers: { 'x-patchbay-domain': 'other.example.com' } }), 403, 'forbidden');
    for (const [domain, name] of [
      ['default', 'nope'],
      ['default', 'bad%20name'],
      ['other.example.com', 'me'],
    ])
      expectError(await call('POST', q, { params: { domain: domain as string, name: name as string }, body: {} }), 404, 'unknown_query');
    expectError(
      await at('me', { raw: JSON.stringify({ params: { s: 'x'.repeat(5000) } }), headers: { 'content-type': 'application/json' } }),
      413,
      'too_large',
    );
    expectError(await at('me', { raw: '{}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    const failed = await at('fails', { body: {} });
    expectError(failed, 422, 'query_failed');
    expect(failed.json.error.pgCode).toBe('22012');
    expectError(await at('slow', { body: {} }), 504, 'query_timeout');
    const limited = await startServer({ limits: 'on', rateQuery: { tokens: 1, windowMs: 60_000 } }, undefined, { mirror: null, configs: VALIDATED });
    try {
      const c = await limited.client();
      const path = '/v1/domains/default/queries/me';
      const none = await c.request('POST', path, { body: {} });
      check(none, 'POST', q);
      expectError(none, 503, 'unavailable');
      const res = await c.request('POST', path, { body: {} });
      check(res, 'POST', q);
      expectError(res, 429, 'rate_limited');
    } finally {
      await limited.close();
    }
  });

  it('runs a named query live (200 event stream of results); 400s bad params, 401s without a token, 403s a foreign domain, 404s an unknown query, 422s and 504s a failing first run, 429s past the query rate, 503s without a mirror', async () => {
    const q = '/v1/domains/{domain}/queries/{name}/events';
    const at = (name: string, opts: CallOpts = {}) => call('GET', q, { ...opts, params: { domain: 'default', name, ...(opts.params ?? {}) } });
    const params = (p: unknown) => `?params=${encodeURIComponent(JSON.stringify(p))}`;
    const ac = new AbortController();
    const res = await fetch(`${srv.url}/v1/domains/default/queries/counters_from/events${params({ min: 1 })}`, {
      headers: { authorization: `Bearer ${alice.token}` },
      signal: ac.signal,
    });
    const { pointer, obj } = responseFor(q, 'GET', res.status);
    expect(res.status).toBe(200);
    checkHeaders(res.headers, pointer, obj, `GET ${q} 200`);
    expect(mediaFor(res.headers, pointer, obj, `GET ${q} 200`).at(-1)).toBe('text/event-stream');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while (!/event: result\nid: 1\ndata: .*\n\n/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    const data = JSON.parse((/event: result\nid: 1\ndata: (.*)\n/.exec(text) as RegExpExecArray)[1] as string);
    expectValid([...pointer, 'content', 'text/event-stream', 'x-sse-events', 'result'], data, 'live query result');
    ac.abort();
    for (const p of [{ min: 'x' }, { REQUESTER: 'x', min: 1 }]) expectError(await at('counters_from', { query: params(p) }), 400, 'invalid_params');
    expectError(await at('counters_from', { query: '?params=%7B' }), 400, 'invalid_params');
    expect((await at('me', { token: null })).status).toBe(401);
    expectError(await at('me', { headers: { 'x-patchbay-domain': 'other.example.com' } }), 403, 'forbidden');
    expectError(await at('nope'), 404, 'unknown_query');
    expectError(await at('fails'), 422, 'query_failed');
    expectError(await at('slow'), 504, 'query_timeout');
    const limited = await startServer({ limits: 'on', rateQuery: { tokens: 1, windowMs: 60_000 } }, undefined, { mirror: null, configs: VALIDATED });
    try {
      const c = await limited.client();
      const path = '/v1/domains/default/queries/me/events';
      const none = await c.request('GET', path);
      check(none, 'GET', q);
      expectError(none, 503, 'unavailable');
      const again = await c.request('GET', path);
      check(again, 'GET', q);
      expectError(again, 429, 'rate_limited');
    } finally {
      await limited.close();
    }
  });

  it("reads a domain's mirror status (200) for its admins; 400s a bad domain, 401s without a token, 403s anyone else, 429s past the list rate, 503s without a mirror", async () => {
    const m = '/v1/domains/{domain}/mirror';
    const me = (await call('GET', '/v1/me')).json.id as string;
    await srv.app.domains.addAdmin('default', me);
    const ok = await call('GET', m, { params: { domain: 'default' } });
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ mirror: true, lag: { windowMs: 300_000 } });
    expectError(await call('GET', m, { params: { domain: 'Not%20A%20Domain' } }), 400, 'invalid_request');
    expect((await call('GET', m, { params: { domain: 'default' }, token: null })).status).toBe(401);
    expectError(await call('GET', m, { params: { domain: 'default' }, token: bob.token }), 403, 'forbidden');
    const limited = await startServer({ limits: 'on', rateList: { tokens: 1, windowMs: 60_000 } }, undefined, { mirror: null, configs: VALIDATED });
    try {
      const c = await limited.client();
      await limited.app.domains.addAdmin('default', (await c.request('GET', '/v1/me')).json.id);
      const none = await c.request('GET', '/v1/domains/default/mirror');
      check(none, 'GET', m);
      expectError(none, 503, 'unavailable');
      const again = await c.request('GET', '/v1/domains/default/mirror');
      check(again, 'GET', m);
      expectError(again, 429, 'rate_limited');
    } finally {
      await limited.close();
    }
  });

  it('409s a taken id, 400s a bad id or body, 404s a missing scope, 415s a non-JSON body', async () => {
    const id = (await call('POST', '/v1/scopes', { body: { id: 'oa.taken' } })).json.id;
    const taken = await call('POST', '/v1/scopes', { body: { id }, token: bob.token });
    expectError(taken, 409, 'scope_exists');
    expect(taken.json.error.id).toBe(id);
    expectError(await call('POST', '/v1/scopes', { raw: '{"state":', headers: { 'content-type': 'application/json' } }), 400, 'invalid_request');
    expectError(await call('GET', '/v1/scopes/{id}', { id: BAD_ID }), 400, 'invalid_request');
    const missing = await call('GET', '/v1/scopes/{id}', { id: MISSING });
    expectError(missing, 404, 'scope_not_found');
    expect(missing.json.error.id).toBe(MISSING);
    expectError(await call('POST', '/v1/scopes', { raw: '{}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
  });

  it('413s a body, a state nesting or a state size over the limits', async () => {
    const body = await call('POST', '/v1/scopes', { raw: JSON.stringify({ state: { s: 'x'.repeat(5000) } }), headers: { 'content-type': 'application/json' } });
    expectError(body, 413, 'too_large');
    expect(body.json.error).toMatchObject({ limit: 'maxBodyBytes', max: 4096 });
    const deep = await call('POST', '/v1/scopes', { body: { state: { a: { b: { c: { d: { e: 1 } } } } } } });
    expectError(deep, 413, 'too_large');
    expect(deep.json.error).toMatchObject({ limit: 'maxValueDepth', max: 4 });
    const big = await call('POST', '/v1/scopes', { body: { state: { s: 'x'.repeat(600) } } });
    expectError(big, 413, 'too_large');
    expect(big.json.error).toMatchObject({ limit: 'maxStateBytes', max: 512 });
  });
});

describe('access', () => {
  const access = '/v1/scopes/{id}/access';

  it('reads and replaces the access for the owner (200), idempotently; others see the visibility only', async () => {
    const id = (await call('POST', '/v1/scopes', { body: {} })).json.id as string;
    expect((await call('GET', access, { id })).json).toEqual({ visibility: 'private', readers: [], writers: [], rev: 0 });
    const body = { visibility: 'domain', readers: ['anon:r', 'anon:r', 'anon:w'], writers: ['anon:w'] };
    const put = await call('PUT', access, { id, body });
    expect(put.json).toEqual({ visibility: 'domain', readers: ['anon:r'], writers: ['anon:w'], rev: 1 });
    expect((await call('PUT', access, { id, body })).json.rev).toBe(1);
    expect((await call('GET', '/v1/scopes/{id}', { id })).json.meta.access).toEqual(put.json);
    expect((await call('GET', '/v1/scopes/{id}', { id, token: bob.token })).json.meta.access).toEqual({ visibility: 'domain' });
  });

  it('serves a public scope without a token (get, history, events), and 401s the rest', async () => {
    const id = (await call('POST', '/v1/scopes', { body: { state: { p: 1 }, access: { visibility: 'public' } } })).json.id as string;
    expect((await call('GET', '/v1/scopes/{id}', { id, token: null })).json.meta.access).toEqual({ visibility: 'public' });
    expect((await call('GET', '/v1/scopes/{id}/patches', { id, token: null })).status).toBe(200);
    const stream = await fetch(`${srv.url}/v1/scopes/${id}/events`);
    expect(stream.status).toBe(200);
    await stream.body?.cancel();
    expectError(await call('POST', '/v1/scopes/{id}/patches', { id, body: { patch: [] }, token: null }), 401, 'unauthorized');
    expectError(await call('POST', '/v1/scopes/{id}/events/ticket', { id, token: null }), 401, 'unauthorized');
    expectError(await call('GET', access, { id, token: null }), 401, 'unauthorized');
  });

  it('404s a caller who may not read the scope, as a missing scope; 403s a reader who is not the owner', async () => {
    const priv = (await call('POST', '/v1/scopes', { body: {} })).json.id as string;
    for (const [method, template] of [
      ['GET', '/v1/scopes/{id}'],
      ['GET', '/v1/scopes/{id}/patches'],
      ['POST', '/v1/scopes/{id}/events/ticket'],
      ['GET', '/v1/scopes/{id}/events'],
      ['GET', access],
      ['PUT', access],
      ['POST', '/v1/scopes/{id}/patches'],
    ] as Array<[Method, string]>) {
      const body = method === 'PUT' ? { visibility: 'public' } : method === 'POST' && template.endsWith('patches') ? { patch: [] } : undefined;
      expectError(await call(method, template, { id: priv, token: bob.token, body }), 404, 'scope_not_found');
      expectError(await call(method, template, { id: MISSING, token: bob.token, body }), 404, 'scope_not_found');
    }
    const readable = await newScope();
    expectError(await call('GET', access, { id: readable, token: bob.token }), 403, 'forbidden');
    expectError(await call('PUT', access, { id: readable, token: bob.token, body: { visibility: 'public' } }), 403, 'forbidden');
  });

  it('400s a bad id or body, 413s too many users, 415s a non-JSON body, changing nothing', async () => {
    const id = await newScope();
    expectError(await call('GET', access, { id: BAD_ID }), 400, 'invalid_request');
    expectError(await call('PUT', access, { id: BAD_ID, body: { visibility: 'public' } }), 400, 'invalid_request');
    for (const body of [
      {},
      { visibility: 'everyone' },
      { visibility: 'public', readers: 'anon:x' },
      { visibility: 'public', readers: [''] },
      { visibility: 'public', extra: 1 },
    ]) {
      expectError(await call('PUT', access, { id, body }), 400, 'invalid_request');
      expect(() => expectValid(['components', 'schemas', 'AccessRequest'], body, 'body')).toThrow();
    }
    const many = await call('PUT', access, { id, body: { visibility: 'private', readers: ['a', 'b'], writers: ['c', 'd'] } });
    expectError(many, 413, 'too_large');
    expect(many.json.error).toMatchObject({ limit: 'maxAccessUsers', max: 3, actual: 4 });
    expectError(await call('PUT', access, { id, raw: '{"visibility":"public"}' }), 415, 'unsupported_media_type');
    expect((await call('GET', access, { id })).json).toEqual({ visibility: 'authenticated', readers: [], writers: [], rev: 0 });
  });
});

describe('batch', () => {
  it('answers each item as its own request would, in order, applying the accepted ones in order per scope', async () => {
    const a = await newScope({ n: 0 });
    const b = await newScope({ list: [] });
    const priv = (await call('POST', '/v1/scopes', { body: {}, token: bob.token })).json.id as string;
    const res = await call('POST', '/v1/batch', {
      body: {
        patches: [
          { scope: a, ii: 1, session: 'batch-s', si: 1, patch: [{ op: 'replace', path: '/n', value: 1 }] },
          { scope: b, patch: [{ op: 'add', path: '/list/-', value: 'x' }] },
          { scope: a, ii: 2, patch: [{ op: 'replace', path: '/n', value: 2 }] },
          { scope: a, ii: 2, patch: [{ op: 'replace', path: '/n', value: 3 }] },
        ],
      },
    });
    expect(res.status).toBe(200);
    expect(res.json.results).toEqual([
      { id: a, ii: 1 },
      { id: b, ii: 1 },
      { id: a, ii: 2 },
      { id: a, error: expect.objectContaining({ code: 'out_of_sync', head: 2 }) },
    ]);
    expect((await call('GET', '/v1/scopes/{id}', { id: a })).json).toMatchObject({ ii: 2, state: { n: 2 } });
    // A recognised retry, a failing op, a scope the caller may not read (404, as alone), a missing one.
    const more = await call('POST', '/v1/batch', {
      body: {
        patches: [
          { scope: a, ii: 1, session: 'batch-s', si: 1, patch: [{ op: 'replace', path: '/n', value: 1 }] },
          { scope: b, ii: 2, patch: [{ op: 'remove', path: '/nope' }] },
          { scope: priv, patch: [] },
          { scope: MISSING, patch: [] },
        ],
      },
    });
    expect(more.json.results).toEqual([
      { id: a, ii: 1, duplicate: true },
      { id: b, error: expect.objectContaining({ code: 'patch_failed', op: 0 }) },
      { id: priv, error: expect.objectContaining({ code: 'scope_not_found' }) },
      { id: MISSING, error: expect.objectContaining({ code: 'scope_not_found' }) },
    ]);
    expect((await call('GET', '/v1/scopes/{id}', { id: b })).json).toMatchObject({ ii: 1, state: { list: ['x'] } });
  });

  it('spends one write token per item: past the write rate an item is refused (rate_limited) and not applied, the others are', async () => {
    const limited = await startServer({ limits: 'on', rateWrite: { tokens: 2, windowMs: 60_000 } });
    try {
      const u = await limited.client();
      const created = await request(limited.url, 'POST', '/v1/scopes', { body: { state: { n: [] } }, token: u.token });
      const id = created.json.id as string;
      const res = await request(limited.url, 'POST', '/v1/batch', {
        body: { patches: [1, 2, 3].map((n) => ({ scope: id, patch: [{ op: 'add', path: '/n/-', value: n }] })) },
        token: u.token,
      });
      check(res, 'POST', '/v1/batch');
      expect(res.json.results).toEqual([
        { id, ii: 1 },
        { id, ii: 2 },
        { id, error: expect.objectContaining({ code: 'rate_limited', limit: 'write' }) },
      ]);
      expect((await request(limited.url, 'GET', `/v1/scopes/${id}`, { token: u.token })).json).toMatchObject({ ii: 2, state: { n: [1, 2] } });
    } finally {
      await limited.close();
    }
  });

  it('refuses a malformed item (400), no token (401), a non-JSON body (415) and an oversize body (413), applying nothing', async () => {
    const a = await newScope({ n: 0 });
    for (const body of [
      {},
      { patches: [] },
      {
        patches: [
          { scope: a, patch: [] },
          { scope: BAD_ID, patch: [] },
        ],
      },
      { patches: [{ scope: a, patch: [], si: 1 }] },
    ]) {
      expectError(await call('POST', '/v1/batch', { body }), 400, 'invalid_request');
    }
    expectError(await call('POST', '/v1/batch', { body: { patches: [{ scope: a, patch: [] }] }, token: null }), 401, 'unauthorized');
    expectError(await call('POST', '/v1/batch', { raw: '{"patches":[]}' }), 415, 'unsupported_media_type');
    const huge = await call('POST', '/v1/batch', {
      raw: JSON.stringify({ patches: [{ scope: a, patch: [{ op: 'add', path: '/s', value: 'x'.repeat(5000) }] }] }),
      headers: { 'content-type': 'application/json' },
    });
    expectError(huge, 413, 'too_large');
    expect((await call('GET', '/v1/scopes/{id}', { id: a })).json).toMatchObject({ ii: 0, state: { n: 0 } });
  });
});

describe('patches', () => {
  let id: string;
  const submit = (body: unknown, opts: CallOpts = {}) => call('POST', '/v1/scopes/{id}/patches', { id, body, ...opts });

  beforeAll(async () => {
    id = await newScope({ n: 0 });
  });

  it('accepts every RFC 6902 op (200), and acks a recognised retry with duplicate: true', async () => {
    const first = await submit({
      ii: 1,
      patch: [
        { op: 'add', path: '/a', value: 1 },
        { op: 'copy', from: '/a', path: '/b' },
        { op: 'move', from: '/b', path: '/c' },
      ],
    });
    expect(first.json).toEqual({ id, ii: 1 });
    const second = await submit({
      patch: [
        { op: 'test', path: '/a', value: 1 },
        { op: 'replace', path: '/a', value: 2 },
        { op: 'remove', path: '/c' },
      ],
    });
    expect(second.json).toEqual({ id, ii: 2 });
    // Members an op does not define are ignored (RFC 6902 §4), by the server and by the spec.
    const retry = { ii: 3, session: 'oa-tab', si: 1, patch: [{ op: 'replace', path: '/n', value: 1, from: '/x', xyz: 123 }] };
    expect((await submit(retry)).json).toEqual({ id, ii: 3 });
    expect((await submit(retry)).json).toEqual({ id, ii: 3, duplicate: true });
  });

  it('422s a create and a patch whose state breaks the schema of its type (validation_failed)', async () => {
    const refused = await call('POST', '/v1/scopes', { body: { type: 'counter', state: { n: 101 } } });
    expectError(refused, 422, 'validation_failed');
    expect(refused.json.error).toMatchObject({ type: 'counter', instancePath: '/n', keyword: 'maximum' });
    const counter = await call('POST', '/v1/scopes', { body: { type: 'counter', state: { n: 1 } } });
    expect(counter.status).toBe(201);
    const over = await call('POST', '/v1/scopes/{id}/patches', { id: counter.json.id, body: { patch: [{ op: 'replace', path: '/n', value: 'x' }] } });
    expectError(over, 422, 'validation_failed');
    expect(over.json.error).toMatchObject({ instancePath: '/n', schemaPath: '#/properties/n/type' });
  });

  it('409s with replay_required, out_of_sync and duplicate_mismatch, each with its detail', async () => {
    const ahead = await submit({ ii: 9, patch: [] });
    expectError(ahead, 409, 'replay_required');
    expect(ahead.json.error.expected).toBe(4);
    const behind = await submit({ ii: 2, patch: [] });
    expectError(behind, 409, 'out_of_sync');
    expect(behind.json.error.head).toBe(3);
    const mismatch = await submit({ session: 'oa-tab', si: 1, patch: [] });
    expectError(mismatch, 409, 'duplicate_mismatch');
    expect(mismatch.json.error.ii).toBe(3);
  });

  it('422s an op that cannot apply, naming it; 403s a non-owner; 404s a missing scope', async () => {
    const failed = await submit({
      patch: [
        { op: 'add', path: '/x', value: 1 },
        { op: 'remove', path: '/missing' },
      ],
    });
    expectError(failed, 422, 'patch_failed');
    expect(failed.json.error.op).toBe(1);
    const forbidden = await submit({ patch: [] }, { token: bob.token });
    expectError(forbidden, 403, 'forbidden');
    // A listed writer acting in another domain than the scope's: the domain rule refuses it.
    const carolAuth = (await request(srv.url, 'POST', '/v1/auth/anonymous', { body: { domain: 'other.example' } })).json;
    const carol = carolAuth.token as string;
    expect((await call('PUT', '/v1/scopes/{id}/access', { id, body: { visibility: 'authenticated', writers: [carolAuth.user.id] } })).status).toBe(200);
    const elsewhere = await submit({ patch: [] }, { token: carol });
    expectError(elsewhere, 403, 'forbidden');
    expect(elsewhere.json.error).toMatchObject({ domain: 'default', requested: 'other.example' });
    expectError(await call('POST', '/v1/scopes/{id}/patches', { id: MISSING, body: { patch: [] } }), 404, 'scope_not_found');
  });

  it('400s a bad id, a bad shape and a forbidden segment; 415s a non-JSON body', async () => {
    expectError(await call('POST', '/v1/scopes/{id}/patches', { id: BAD_ID, body: { patch: [] } }), 400, 'invalid_request');
    const shape = await submit({ patch: [{ op: 'add', path: 'nope', value: 1 }] });
    expectError(shape, 400, 'invalid_request');
    expect(shape.json.error.issues[0].path.slice(0, 3)).toEqual(['patch', 0, 'path']);
    const proto = await submit({ patch: [{ op: 'add', path: '/__proto__/x', value: 1 }] });
    expectError(proto, 400, 'invalid_request');
    expectError(await call('POST', '/v1/scopes/{id}/patches', { id, raw: '{"patch":[]}' }), 415, 'unsupported_media_type');
  });

  it('413s each patch limit, naming it', async () => {
    const cases: Array<[string, unknown, Record<string, unknown>]> = [
      ['maxOps', { patch: Array.from({ length: 4 }, () => ({ op: 'test', path: '/n', value: 1 })) }, { max: 3, actual: 4 }],
      ['maxPatchBytes', { patch: [{ op: 'add', path: '/s', value: 'x'.repeat(1100) }] }, { max: 1024 }],
      ['maxPathDepth', { patch: [{ op: 'add', path: '/a/b/c/d/e', value: 1 }] }, { max: 4, actual: 5, op: 0 }],
      ['maxValueDepth', { patch: [{ op: 'add', path: '/v', value: { a: { b: { c: { d: { e: 1 } } } } } }] }, { max: 4, op: 0 }],
      ['maxStateBytes', { patch: [{ op: 'add', path: '/s', value: 'x'.repeat(600) }] }, { max: 512 }],
    ];
    const limits = new Set<string>();
    for (const [limit, body, details] of cases) {
      const res = await submit(body);
      expectError(res, 413, 'too_large');
      expect(res.json.error).toMatchObject({ limit, ...details });
      limits.add(res.json.error.limit);
    }
    const huge = await call('POST', '/v1/scopes/{id}/patches', {
      id,
      raw: JSON.stringify({ patch: [{ op: 'add', path: '/s', value: 'x'.repeat(5000) }] }),
      headers: { 'content-type': 'application/json' },
    });
    expectError(huge, 413, 'too_large');
    limits.add(huge.json.error.limit);
    const listed = await call('PUT', '/v1/scopes/{id}/access', { id, body: { visibility: 'private', readers: ['a', 'b', 'c', 'd'] } });
    expectError(listed, 413, 'too_large');
    limits.add(listed.json.error.limit);
    const batch = await call('POST', '/v1/batch', { body: { patches: Array.from({ length: 5 }, () => ({ scope: id, patch: [] })) } });
    expectError(batch, 413, 'too_large');
    expect(batch.json.error).toMatchObject({ limit: 'maxBatch', max: 4, actual: 5 });
    limits.add(batch.json.error.limit);
    limits.add('maxConfigBytes'); // reported by a configuration upload: the 'domain configuration' block checks it
    // Reported by the sessions routes: the 'sessions and presence' block checks each.
    for (const l of ['sessionMaxGuarantees', 'presenceMaxStatusBytes', 'presenceMaxScopes', 'sessionMaxInfoBytes']) limits.add(l);
    limits.add('maxUploadBytes'); // reported by uploads: the 'uploads' block checks it
    limits.add('sseMaxScopes'); // reported by multiplexed streams: the 'multiplexed streams' block checks it
    // Every limit the spec's enum names is one the server reports, and no other.
    const tooLarge = at(['components', 'schemas', 'TooLargeError', 'allOf', '1', 'properties', 'error', 'properties', 'limit']);
    expect([...limits].sort()).toEqual([...(tooLarge.enum as string[])].sort());
  });

  it('serves history as NDJSON (200, whole and ranged), 400s bad bounds, 404s a missing scope', async () => {
    const all = await call('GET', '/v1/scopes/{id}/patches', { id, token: bob.token });
    expect(all.status).toBe(200);
    expect(
      all.text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).ii),
    ).toEqual([1, 2, 3]);
    const ranged = await call('GET', '/v1/scopes/{id}/patches', { id, query: '?from=2&to=2' });
    expect(
      ranged.text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).ii),
    ).toEqual([2]);
    expect((await call('GET', '/v1/scopes/{id}/patches', { id, query: '?from=5' })).text).toBe('');
    for (const query of ['?from=abc', '?to=-1', '?from=01']) {
      expectError(await call('GET', '/v1/scopes/{id}/patches', { id, query }), 400, 'invalid_request');
    }
    expectError(await call('GET', '/v1/scopes/{id}/patches', { id: BAD_ID }), 400, 'invalid_request');
    expectError(await call('GET', '/v1/scopes/{id}/patches', { id: MISSING }), 404, 'scope_not_found');
  });

  it('serves the state at a past index (200), 400s an index past head or not an index, 401s without a token, 404s a missing scope, 429s past the rate', async () => {
    const at = '/v1/scopes/{id}/at/{ii}';
    const res = await call('GET', at, { id, params: { ii: '1' }, token: bob.token });
    expect(res.status).toBe(200);
    expect(res.json.ii).toBe(1);
    expectError(await call('GET', at, { id, params: { ii: '99' } }), 400, 'invalid_request');
    expectError(await call('GET', at, { id, params: { ii: '01' } }), 400, 'invalid_request');
    expectError(await call('GET', at, { id, params: { ii: '0' }, token: null }), 401, 'unauthorized');
    expectError(await call('GET', at, { id: MISSING, params: { ii: '0' } }), 404, 'scope_not_found');
    const limited = await startServer({ limits: 'on', rateStateAt: { tokens: 1, windowMs: 60_000 } });
    try {
      const c = await limited.client();
      const s = (await c.request('POST', '/v1/scopes', { body: { state: {} } })).json.id as string;
      expect((await c.request('GET', `/v1/scopes/${s}/at/0`)).status).toBe(200);
      const refused = await c.request('GET', `/v1/scopes/${s}/at/0`);
      check(refused, 'GET', at);
      expectError(refused, 429, 'rate_limited');
    } finally {
      await limited.close();
    }
  });
});

interface SseBlock {
  event?: string;
  id?: string;
  data?: string;
  retry?: string;
}

/** A raw SSE reader over fetch: checks the response head against the spec, then yields blocks. */
async function openRaw(path: string, headers: Record<string, string>, template = '/v1/scopes/{id}/events') {
  const ac = new AbortController();
  const res = await fetch(srv.url + path, { headers, signal: ac.signal });
  const what = `GET ${template} ${res.status}`;
  const { pointer, obj } = responseFor(template, 'GET', res.status);
  expect(res.status).toBe(200);
  checkHeaders(res.headers, pointer, obj, what);
  const media = mediaFor(res.headers, pointer, obj, what);
  expect(media[media.length - 1]).toBe('text/event-stream');
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const next = async (): Promise<SseBlock> => {
    for (;;) {
      const end = buf.indexOf('\n\n');
      if (end >= 0) {
        const block: SseBlock = {};
        for (const line of buf.slice(0, end).split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = line.slice(0, colon) as keyof SseBlock;
          expect(['event', 'id', 'data', 'retry'], `SSE field in ${JSON.stringify(line)}`).toContain(field);
          expect(block[field], `a repeated ${field} line`).toBeUndefined();
          block[field] = line.slice(colon + 1).replace(/^ /, '');
        }
        buf = buf.slice(end + 2);
        return block;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error(`the stream ended; unparsed: ${JSON.stringify(buf)}`);
      buf += decoder.decode(value, { stream: true });
    }
  };
  /** The next event, validated against the spec's schema for its type; its id must be its ii. */
  const nextEvent = async (): Promise<{ event: string; data: { ii: number } & Obj }> => {
    let block = await next();
    while (block.event === undefined) block = await next();
    const events = at([...media, 'x-sse-events']);
    expect(Object.keys(events), 'a documented event type').toContain(block.event);
    const data = JSON.parse(block.data ?? '');
    expectValid([...media, 'x-sse-events', block.event], data, `SSE ${block.event} data`);
    expect(block.id).toBe(String(data.ii));
    return { event: block.event, data };
  };
  return { next, nextEvent, media, close: () => ac.abort() };
}

/** Collects `count` events with a real EventSource client (no Authorization header: tickets only). */
function collectWithEventSource(url: string, count: number): Promise<Array<{ type: string; id: string; data: { ii: number } }>> {
  return new Promise((resolve, reject) => {
    const events: Array<{ type: string; id: string; data: { ii: number } }> = [];
    let head: Headers | null = null;
    let status = 0;
    const source = new EventSource(url, {
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        status = res.status;
        head = res.headers;
        return res;
      },
    });
    const finish = (err?: Error) => {
      source.close();
      if (err) reject(err);
      else resolve(events);
    };
    for (const type of ['state', 'patch']) {
      source.addEventListener(type, (e) => {
        events.push({ type, id: e.lastEventId, data: JSON.parse(e.data) });
        if (events.length >= count) finish();
      });
    }
    source.addEventListener('open', () => {
      try {
        const { pointer, obj } = responseFor('/v1/scopes/{id}/events', 'GET', status);
        checkHeaders(head as Headers, pointer, obj, 'EventSource open');
        mediaFor(head as Headers, pointer, obj, 'EventSource open');
      } catch (err) {
        finish(err as Error);
      }
    });
    source.addEventListener('error', (e) => finish(new Error(`EventSource failed (status ${status}): ${e.message ?? ''}`)));
  });
}

describe('events', () => {
  let id: string;
  const patchN = (n: number) => call('POST', '/v1/scopes/{id}/patches', { id, body: { patch: [{ op: 'replace', path: '/n', value: n }] } });

  beforeAll(async () => {
    id = await newScope({ n: 0 });
    await patchN(1);
  });

  it('streams retry, a state event, then live patch events, framed and shaped as documented', async () => {
    const stream = await openRaw(`/v1/scopes/${id}/events`, { authorization: `Bearer ${bob.token}` });
    try {
      const first = await stream.next();
      expect(first.retry).toMatch(/^[0-9]+$/);
      expect(first.event).toBeUndefined();
      const state = await stream.nextEvent();
      expect(state).toEqual({ event: 'state', data: { ii: 1, state: { n: 1 } } });
      await patchN(2);
      const patch = await stream.nextEvent();
      expect(patch.event).toBe('patch');
      expect(patch.data).toMatchObject({ ii: 2, patch: [{ op: 'replace', path: '/n', value: 2 }] });
    } finally {
      stream.close();
    }
  });

  it('resumes after Last-Event-ID with patch events only (the header wins over since)', async () => {
    const stream = await openRaw(`/v1/scopes/${id}/events?since=0`, { authorization: `Bearer ${alice.token}`, 'last-event-id': '1' });
    try {
      const e = await stream.nextEvent();
      expect(e.event).toBe('patch');
      expect(e.data.ii).toBe(2);
    } finally {
      stream.close();
    }
  });

  it('issues a ticket (200) that opens the stream for a browser EventSource', async () => {
    const ticket = await call('POST', '/v1/scopes/{id}/events/ticket', { id, token: bob.token });
    expect(ticket.status).toBe(200);
    expect(ticket.json.expiresIn).toBe(60);
    const events = await collectWithEventSource(`${srv.url}/v1/scopes/${id}/events?since=0&ticket=${encodeURIComponent(ticket.json.ticket)}`, 2);
    expect(events.map((e) => [e.type, e.id])).toEqual([
      ['patch', '1'],
      ['patch', '2'],
    ]);
    for (const e of events) {
      expectValid(
        ['paths', '/v1/scopes/{id}/events', 'get', 'responses', '200', 'content', 'text/event-stream', 'x-sse-events', e.type],
        e.data,
        'EventSource data',
      );
    }
  });

  it('400s a bad id, since or Last-Event-ID; 401s a foreign ticket or a token in the URL; 404s a missing scope; 409s a position past head', async () => {
    const events = '/v1/scopes/{id}/events';
    expectError(await call('GET', events, { id: BAD_ID }), 400, 'invalid_request');
    expectError(await call('GET', events, { id, query: '?since=-1' }), 400, 'invalid_request');
    expectError(await call('GET', events, { id, headers: { 'last-event-id': 'abc' } }), 400, 'invalid_request');
    const other = await newScope();
    const foreign = (await call('POST', '/v1/scopes/{id}/events/ticket', { id: other })).json.ticket as string;
    expectError(await call('GET', events, { id, query: `?ticket=${foreign}`, token: null }), 401, 'unauthorized');
    expectError(await call('GET', events, { id, query: `?ticket=${alice.token}`, token: null }), 401, 'unauthorized');
    expectError(await call('GET', events, { id: MISSING }), 404, 'scope_not_found');
    const past = await call('GET', events, { id, query: '?since=99' });
    expectError(past, 409, 'out_of_sync');
    expect(past.json.error.head).toBe(2);
  });

  it('400s and 404s the ticket route', async () => {
    expectError(await call('POST', '/v1/scopes/{id}/events/ticket', { id: BAD_ID }), 400, 'invalid_request');
    expectError(await call('POST', '/v1/scopes/{id}/events/ticket', { id: MISSING }), 404, 'scope_not_found');
  });
});

describe('domain claims', () => {
  const CLAIM = '/v1/domains/{domain}/claim';

  it('claims a localhost domain (201, embedded default), answers it again (200) and reads it (200); 404s a claim never made', async () => {
    const started = await call('POST', CLAIM, { domain: 'localhost:5173' });
    expect(started.status).toBe(201);
    expect(started.json).toMatchObject({ status: 'success', method: 'localhost' });
    expect((await call('POST', CLAIM, { domain: 'localhost:5173' })).status).toBe(200);
    expect((await call('GET', CLAIM, { domain: 'localhost:5173' })).json.token).toBe(started.json.token);
    const none = await call('GET', CLAIM, { domain: 'never.example.com' });
    expectError(none, 404, 'claim_not_found');
  });

  it('400s what is not a domain name, 403s an anonymous claimant, a pending quota, and 429s past the claim rate', async () => {
    for (const domain of ['127.0.0.1', 'example.com:8443', 'com']) expectError(await call('POST', CLAIM, { domain }), 400, 'invalid_request');
    expectError(await call('GET', CLAIM, { domain: 'Not.Lower' }), 400, 'invalid_request');
    const anon = await call('POST', CLAIM, { domain: 'example.com' });
    expectError(anon, 403, 'forbidden');
    const limited = await startServer(
      {
        claimAnonymous: true,
        claimMaxPending: 1,
        claimTimeoutMs: 60_000,
        limits: 'on',
        rateClaim: { tokens: 2, windowMs: 60_000 },
      },
      undefined,
      {
        // No network in this test: every look finds nothing.
        claimProbe: { wellKnown: async () => '', txt: async () => [] },
      },
    );
    try {
      const c = await newClient(limited.url);
      const at = (domain: string) => request(limited.url, 'POST', CLAIM.replace('{domain}', domain), { token: c.token }).then((r) => check(r, 'POST', CLAIM));
      const first = await at('one.example.com');
      expect(first.status).toBe(201);
      expect(first.json.status).toBe('pending');
      expectError(await at('two.example.com'), 403, 'quota_exceeded');
      const rate = await at('three.example.com');
      expectError(rate, 429, 'rate_limited');
      expect(rate.json.error.limit).toBe('claim');
    } finally {
      await limited.close();
    }
  });
});

describe('domains', () => {
  const TOKEN_ID = '00000000-0000-4000-8000-000000000000';
  beforeAll(async () => {
    const me = await call('GET', '/v1/me');
    await srv.app.domains.addAdmin(DOMAIN, me.json.id);
  });

  it('lets an admin read the domain (200), set its origins (200), mint (201), list (200) and revoke (204) service tokens', async () => {
    expect((await call('GET', '/v1/domains/{domain}')).json).toMatchObject({ domain: DOMAIN, origins: [] });
    expect((await call('PUT', '/v1/domains/{domain}/origins', { body: { origins: [`https://${DOMAIN}`] } })).status).toBe(200);
    const minted = await call('POST', '/v1/domains/{domain}/tokens', { body: { name: 'worker', ttlSeconds: 600 } });
    expect(minted.status).toBe(201);
    expect((await call('GET', '/v1/me', { token: minted.json.token })).json).toMatchObject({ kind: 'service', id: `domain:${DOMAIN}` });
    expect((await call('GET', '/v1/domains/{domain}/tokens')).json.tokens).toHaveLength(1);
    expect((await call('DELETE', '/v1/domains/{domain}/tokens/{id}', { id: minted.json.id })).status).toBe(204);
    expectError(await call('DELETE', '/v1/domains/{domain}/tokens/{id}', { id: minted.json.id }), 404, 'not_found');
  });

  it('403s anyone else; 400s a bad domain, id or body; 413s a large body; 415s a non-JSON body', async () => {
    for (const [method, template, body] of [
      ['GET', '/v1/domains/{domain}', undefined],
      ['PUT', '/v1/domains/{domain}/origins', { origins: [] }],
      ['POST', '/v1/domains/{domain}/tokens', { name: 'x', ttlSeconds: 600 }],
      ['GET', '/v1/domains/{domain}/tokens', undefined],
      ['DELETE', '/v1/domains/{domain}/tokens/{id}', undefined],
    ] as Array<[Method, string, unknown]>) {
      expectError(await call(method, template, { id: TOKEN_ID, body, token: bob.token }), 403, 'forbidden');
      expectError(await call(method, template, { id: TOKEN_ID, body, domain: 'Not A Domain' }), 400, 'invalid_request');
    }
    expectError(await call('DELETE', '/v1/domains/{domain}/tokens/{id}', { id: 'nope' }), 400, 'invalid_request');
    for (const [template, bad] of [
      ['/v1/domains/{domain}/origins', { origins: ['https://evil.example'] }],
      ['/v1/domains/{domain}/tokens', { name: 'x', ttlSeconds: 10 }],
    ] as Array<[string, unknown]>) {
      const method: Method = template.endsWith('origins') ? 'PUT' : 'POST';
      expectError(await call(method, template, { body: bad }), 400, 'invalid_request');
      expectError(
        await call(method, template, { raw: JSON.stringify({ pad: 'x'.repeat(5000) }), headers: { 'content-type': 'application/json' } }),
        413,
        'too_large',
      );
      expectError(await call(method, template, { raw: '{}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    }
    expectError(await call('POST', '/v1/domains/{domain}/tokens', { body: { name: 'x', ttlSeconds: 59 } }), 400, 'invalid_request');
    expect(() => expectValid(['components', 'schemas', 'ServiceTokenRequest'], { name: 'x', ttlSeconds: 59 }, 'body')).toThrow();
    expect(() => expectValid(['components', 'schemas', 'ServiceTokenRequest'], { name: 'a\nb', ttlSeconds: 600 }, 'body')).toThrow();
  });

  it('403s a mint past the live-token cap (quota_exceeded) and 429s past the rate limits', async () => {
    const limited = await startServer({
      limits: 'on',
      maxServiceTokens: 1,
      rateServiceTokens: { tokens: 2, windowMs: 60_000 },
      rateList: { tokens: 1, windowMs: 60_000 },
      rateWrite: { tokens: 2, windowMs: 60_000 },
    });
    try {
      const admin = await newClient(limited.url);
      await limited.app.domains.addAdmin(DOMAIN, (await admin.request('GET', '/v1/me')).json.id);
      const at = (method: Method, template: string, opts: { id?: string; body?: unknown } = {}) =>
        request(limited.url, method, template.replace('{domain}', DOMAIN).replace('{id}', opts.id ?? ''), { body: opts.body, token: admin.token }).then((r) =>
          check(r, method, template),
        );
      const tokens = '/v1/domains/{domain}/tokens';
      const first = await at('POST', tokens, { body: { name: 'a', ttlSeconds: 600 } });
      expect(first.status).toBe(201);
      const over = await at('POST', tokens, { body: { name: 'b', ttlSeconds: 600 } });
      expectError(over, 403, 'quota_exceeded');
      expect(over.json.error.quota).toBe('serviceTokens');
      expectError(await at('POST', tokens, { body: { name: 'c', ttlSeconds: 600 } }), 429, 'rate_limited');
      expect((await at('GET', tokens)).status).toBe(200);
      expectError(await at('GET', tokens), 429, 'rate_limited');
      expect((await at('DELETE', `${tokens}/{id}`, { id: first.json.id })).status).toBe(204);
      expect((await at('PUT', '/v1/domains/{domain}/origins', { body: { origins: [] } })).status).toBe(200);
      expectError(await at('PUT', '/v1/domains/{domain}/origins', { body: { origins: [] } }), 429, 'rate_limited');
      expectError(await at('DELETE', `${tokens}/{id}`, { id: TOKEN_ID }), 429, 'rate_limited');
    } finally {
      await limited.close();
    }
  });
});

describe('tags', () => {
  const onScope = '/v1/scopes/{id}/tags';
  const mine = '/v1/tags';

  it('tags (201, then 200), lists per target and per type (200), publicly without a token', async () => {
    const target = await newScope();
    const created = await call('POST', onScope, { id: target, body: { tagType: 'star', context: ['a'] } });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`/v1/scopes/${created.json.id}`);
    const again = await call('POST', onScope, { id: target, body: { tagType: 'star' } });
    expect(again.status).toBe(200);
    expect(again.json.id).toBe(created.json.id);
    const listed = await call('GET', onScope, { id: target, query: '?tagType=star&limit=5', token: bob.token });
    expect(listed.status, listed.text).toBe(200);
    expect(listed.json.tags.map((t: { id: string }) => t.id)).toEqual([created.json.id]);
    expect((await call('GET', mine, { query: '?tagType=star' })).json.tags.length).toBeGreaterThanOrEqual(1);
    const pub = (await call('POST', '/v1/scopes', { body: { access: { visibility: 'public' } } })).json.id as string;
    await call('POST', onScope, { id: pub, body: { tagType: 'star' } });
    expect((await call('GET', onScope, { id: pub, token: null })).json.tags).toHaveLength(1);
  });

  it('400s bad input, 401s without a token, 404s a target the caller may not read, 413s and 415s bodies', async () => {
    const target = await newScope();
    expectError(await call('POST', onScope, { id: target, body: { tagType: 'a b' } }), 400, 'invalid_request');
    expectError(await call('POST', onScope, { id: BAD_ID, body: { tagType: 'star' } }), 400, 'invalid_request');
    expectError(await call('GET', onScope, { id: target, query: '?limit=0' }), 400, 'invalid_request');
    expectError(await call('GET', mine, { query: '?tagType=a/b' }), 400, 'invalid_request');
    expectError(await call('POST', onScope, { id: target, body: { tagType: 'star' }, token: null }), 401, 'unauthorized');
    expectError(await call('GET', onScope, { id: target, token: null }), 401, 'unauthorized');
    expectError(await call('GET', mine, { token: null }), 401, 'unauthorized');
    const hidden = (await call('POST', '/v1/scopes', { body: {}, token: bob.token })).json.id as string;
    expectError(await call('POST', onScope, { id: hidden, body: { tagType: 'star' } }), 404, 'scope_not_found');
    expectError(await call('GET', onScope, { id: MISSING }), 404, 'scope_not_found');
    expectError(
      await call('POST', onScope, {
        id: target,
        raw: JSON.stringify({ tagType: 'star', context: ['x'.repeat(5000)] }),
        headers: { 'content-type': 'application/json' },
      }),
      413,
      'too_large',
    );
    expectError(await call('POST', onScope, { id: target, raw: '{}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
  });

  it('429s past the create and list rates, 403s past the scope quota', async () => {
    const limited = await startServer({
      limits: 'on',
      rateCreate: { tokens: 3, windowMs: 60_000 },
      rateList: { tokens: 1, windowMs: 60_000 },
      quotaScopes: 2,
    });
    try {
      const at = (method: Method, template: string, opts: { id?: string; body?: unknown; token: string }) =>
        request(limited.url, method, template.replace('{id}', opts.id ?? ''), { body: opts.body, token: opts.token }).then((r) => check(r, method, template));
      const u = await newClient(limited.url);
      const target = (await request(limited.url, 'POST', '/v1/scopes', { body: {}, token: u.token })).json.id as string;
      expect((await at('POST', onScope, { id: target, body: { tagType: 'a' }, token: u.token })).status).toBe(201);
      expectError(await at('POST', onScope, { id: target, body: { tagType: 'b' }, token: u.token }), 403, 'quota_exceeded');
      expectError(await at('POST', onScope, { id: target, body: { tagType: 'b' }, token: u.token }), 429, 'rate_limited');
      expect((await at('GET', onScope, { id: target, token: u.token })).status).toBe(200);
      expectError(await at('GET', onScope, { id: target, token: u.token }), 429, 'rate_limited');
      expectError(await at('GET', mine, { token: u.token }), 429, 'rate_limited');
      const v = await newClient(limited.url);
      expect((await at('GET', mine, { token: v.token })).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});

describe('names', () => {
  const named = '/v1/names/{name}';
  const rename = '/v1/scopes/{id}/name';

  it('creates-or-resolves (201, then 200), reads by name (200, 304), renames (200)', async () => {
    const created = await call('PUT', named, { name: 'oa: notes/1', body: { state: { n: 1 }, type: 'note', access: { visibility: 'authenticated' } } });
    expect(created.status).toBe(201);
    const id = created.json.id as string;
    expect(created.headers.get('content-location')).toBe(`/v1/scopes/${encodeURIComponent(id)}`);
    const again = await call('PUT', named, { name: 'oa: notes/1', body: {} });
    expect(again.status).toBe(200);
    expect(again.json.id).toBe(id);
    const owner = `?owner=${encodeURIComponent(userIdOf(alice))}`;
    const read = await call('GET', named, { name: 'oa: notes/1', query: owner, token: bob.token });
    expect(read.status).toBe(200);
    expect((await call('GET', named, { name: 'oa: notes/1', headers: { 'if-none-match': '"0"' } })).status).toBe(304);
    const renamed = await call('PUT', rename, { id, body: { name: 'oa: notes/2' } });
    expect(renamed.json).toEqual({ id, name: 'oa: notes/2' });
    expect((await call('PUT', rename, { id, body: { name: null } })).json).toEqual({ id, name: null });
  });

  it('400s a bad name, body or query; 401s without a token; 404s a name that names nothing readable', async () => {
    expectError(await call('PUT', named, { name: 'a\u0001b', body: {} }), 400, 'invalid_request');
    expectError(await call('PUT', named, { name: 'x', body: { id: 'given' } }), 400, 'invalid_request');
    expectError(await call('GET', named, { name: 'x'.repeat(257) }), 400, 'invalid_request');
    expectError(await call('GET', named, { name: 'x', query: '?domain=Not_A_Domain' }), 400, 'invalid_request');
    expectError(await call('PUT', named, { name: 'x', body: {}, token: null }), 401, 'unauthorized');
    expectError(await call('GET', named, { name: 'x', token: null }), 401, 'unauthorized');
    const hidden = (await call('PUT', named, { name: 'oa private', body: {}, token: bob.token })).json.id as string;
    const stranger = await call('GET', named, { name: 'oa private', query: `?owner=${encodeURIComponent(userIdOf(bob))}` });
    expectError(stranger, 404, 'scope_not_found');
    expect(stranger.json.error.name).toBe('oa private');
    expect(stranger.text).not.toContain(hidden);
    expectError(await call('GET', named, { name: 'no such name' }), 404, 'scope_not_found');
    expectError(await call('PUT', rename, { id: BAD_ID, body: { name: 'x' } }), 400, 'invalid_request');
    expectError(await call('PUT', rename, { id: hidden, body: { name: 'x' }, token: null }), 401, 'unauthorized');
  });

  it('renames for the owner only (403 a reader, 404 a stranger), 409s a taken name, 413s and 415s bodies', async () => {
    const a = (await call('PUT', named, { name: 'oa a', body: { access: { visibility: 'authenticated' } } })).json.id as string;
    await call('PUT', named, { name: 'oa b', body: {} });
    const taken = await call('PUT', rename, { id: a, body: { name: 'oa b' } });
    expectError(taken, 409, 'name_taken');
    expect(taken.json.error).toMatchObject({ name: 'oa b', domain: 'default' });
    expectError(await call('POST', '/v1/scopes', { body: { name: 'oa b' } }), 409, 'name_taken');
    expectError(await call('PUT', rename, { id: a, body: { name: 'mine' }, token: bob.token }), 403, 'forbidden');
    const hidden = (await call('PUT', named, { name: 'oa hidden', body: {}, token: bob.token })).json.id as string;
    expectError(await call('PUT', rename, { id: hidden, body: { name: 'mine' } }), 404, 'scope_not_found');
    expectError(await call('PUT', rename, { id: a, body: { name: null }, headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    expectError(
      await call('PUT', rename, { id: a, raw: JSON.stringify({ name: 'x'.repeat(5000) }), headers: { 'content-type': 'application/json' } }),
      413,
      'too_large',
    );
    expectError(await call('PUT', named, { name: 'oa big', body: { state: { s: 'x'.repeat(600) } } }), 413, 'too_large');
    expectError(await call('PUT', named, { name: 'oa big', raw: '{}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
  });

  it('429s past the create, list and write rates, 403s past the scope quota', async () => {
    const limited = await startServer({
      limits: 'on',
      rateCreate: { tokens: 2, windowMs: 60_000 },
      rateWrite: { tokens: 1, windowMs: 60_000 },
      rateList: { tokens: 1, windowMs: 60_000 },
      quotaScopes: 1,
    });
    try {
      const at = (method: Method, template: string, opts: { id?: string; name: string; body?: unknown; token: string; query?: string }) =>
        request(limited.url, method, template.replace('{id}', opts.id ?? '').replace('{name}', encodeURIComponent(opts.name)) + (opts.query ?? ''), {
          body: opts.body,
          token: opts.token,
        }).then((r) => check(r, method, template));
      const u = await newClient(limited.url);
      const id = (await at('PUT', named, { name: 'one', body: {}, token: u.token })).json.id as string;
      // Resolving spends nothing; a second name is past the quota, a third past the create rate.
      expect((await at('PUT', named, { name: 'one', body: {}, token: u.token })).status).toBe(200);
      expectError(await at('PUT', named, { name: 'two', body: {}, token: u.token }), 403, 'quota_exceeded');
      expectError(await at('PUT', named, { name: 'two', body: {}, token: u.token }), 429, 'rate_limited');
      expect((await at('GET', named, { name: 'one', token: u.token })).status).toBe(200);
      expectError(await at('GET', named, { name: 'one', token: u.token }), 429, 'rate_limited');
      expect((await at('PUT', rename, { id, name: '', body: { name: 'uno' }, token: u.token })).status).toBe(200);
      expectError(await at('PUT', rename, { id, name: '', body: { name: 'eins' }, token: u.token }), 429, 'rate_limited');
    } finally {
      await limited.close();
    }
  });
});

describe('domain configuration', () => {
  const CONFIG = '/v1/domains/{domain}/config';
  const VERSION = '/v1/domains/{domain}/config/versions/{version}';
  const D = 'configured.example.com';
  const TEXT = 'types:\n  memo:\n    schema: {type: object}\n';
  let uploads: TestServer;
  let admin: Client;
  /** A documented route on the server that takes uploads (the main one reads fixed configurations). */
  const at = (
    method: Method,
    template: string,
    opts: { version?: string; query?: string; raw?: string | Uint8Array; type?: string; token?: string | null; domain?: string } = {},
  ) =>
    request(uploads.url, method, template.replace('{domain}', opts.domain ?? D).replace('{version}', opts.version ?? '1') + (opts.query ?? ''), {
      raw: opts.raw,
      headers: opts.raw === undefined ? {} : { 'content-type': opts.type ?? 'application/yaml' },
      token: opts.token === undefined ? admin.token : opts.token,
    }).then((r) => check(r, method, template));

  beforeAll(async () => {
    uploads = await startServer({ maxConfigBytes: 1024, domainCacheMs: 0, limits: 'on', rateWrite: { tokens: 8, windowMs: 60_000 } }, undefined, {
      deliverLocally: true,
    });
    admin = await newClient(uploads.url);
    await uploads.app.domains.addAdmin(D, (await request(uploads.url, 'GET', '/v1/me', { token: admin.token })).json.id);
    expect((await at('PUT', CONFIG, { query: '?replaces=0', raw: TEXT })).status).toBe(202);
  });
  afterAll(() => uploads.close());

  it('uploads (202), reads the versions (200) and one version (200); 404s a version never uploaded', async () => {
    expect((await at('GET', CONFIG)).json).toMatchObject({ latest: 1 });
    expect((await at('GET', VERSION)).json.text).toBe(TEXT);
    expectError(await at('GET', VERSION, { version: '9' }), 404, 'not_found');
    expectError(await at('GET', VERSION, { version: 'x' }), 400, 'invalid_request');
    expectError(await at('GET', CONFIG, { domain: 'Not.Lower' }), 400, 'invalid_request');
  });

  it('401s without a token; 403s a non-admin; 400s a bad text or replaces; 409s a stale replaces; 413s a large text; 415s another type; 429s past the write rate', async () => {
    const other = await newClient(uploads.url);
    for (const [m, t] of [
      ['PUT', CONFIG],
      ['GET', CONFIG],
      ['GET', VERSION],
    ] as Array<[Method, string]>) {
      expectError(await at(m, t, { token: null, query: '?replaces=0', raw: m === 'PUT' ? TEXT : undefined }), 401, 'unauthorized');
      expectError(await at(m, t, { token: other.token, query: '?replaces=0', raw: m === 'PUT' ? TEXT : undefined }), 403, 'forbidden');
    }
    expectError(await at('PUT', CONFIG, { query: '?replaces=1', raw: 'types: [' }), 400, 'invalid_config');
    expectError(await at('PUT', CONFIG, { raw: TEXT }), 400, 'invalid_request');
    expectError(await at('PUT', CONFIG, { query: '?replaces=0', raw: TEXT }), 409, 'version_conflict');
    const large = await at('PUT', CONFIG, { query: '?replaces=1', raw: `# ${'x'.repeat(2000)}\n` });
    expectError(large, 413, 'too_large');
    expect(large.json.error.limit).toBe('maxConfigBytes');
    expectError(await at('PUT', CONFIG, { query: '?replaces=1', raw: TEXT, type: 'image/png' }), 415, 'unsupported_media_type');
    let limited: Res | undefined;
    for (let i = 0; i < 12 && !limited; i++) {
      const r = await at('PUT', CONFIG, { query: '?replaces=0', raw: TEXT });
      if (r.status === 429) limited = r;
    }
    expectError(limited as Res, 429, 'rate_limited');
    expect((await at('GET', CONFIG)).json).toMatchObject({ latest: 1 });
  });
});

describe('sessions and presence', () => {
  const S = '/v1/sessions';
  const ONE = '/v1/sessions/{id}';
  const HB = '/v1/sessions/{id}/heartbeat';
  const GS = '/v1/sessions/{id}/guarantees';
  const G1 = '/v1/sessions/{id}/guarantees/{gid}';
  const P = '/v1/scopes/{id}/presence';
  const open = async (c: Client = alice) => {
    const res = await call('POST', S, { token: c.token });
    expect(res.status).toBe(201);
    return res.json.id as string;
  };

  it('opens (201), reads (200), keeps alive (200) and closes (200) a session; 400s a bad id or body, 401s no token, 404s another user, 409s a closed one, 413s oversize info, 415s a non-JSON body', async () => {
    const id = await open();
    expect((await call('GET', ONE, { id })).json).toMatchObject({ id, state: 'open' });
    expect((await call('POST', HB, { id })).status).toBe(200);
    expectError(await call('GET', ONE, { id, token: bob.token }), 404, 'session_not_found');
    expectError(await call('POST', HB, { id, token: bob.token }), 404, 'session_not_found');
    expectError(await call('DELETE', ONE, { id, token: bob.token }), 404, 'session_not_found');
    expectError(await call('GET', ONE, { id: BAD_ID }), 400, 'invalid_request');
    expectError(await call('POST', HB, { id: BAD_ID }), 400, 'invalid_request');
    for (const path of [S, ONE, HB]) expect((await call(path === ONE ? 'GET' : 'POST', path, { id, token: null })).status).toBe(401);
    expect((await call('DELETE', ONE, { id, token: null })).status).toBe(401);
    expectError(await call('DELETE', ONE, { id, body: { reason: '' } }), 400, 'invalid_request');
    expectError(await call('DELETE', ONE, { id, body: { info: 'x'.repeat(4090) } }), 413, 'too_large');
    expectError(await call('DELETE', ONE, { id, raw: '{}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    const closed = await call('DELETE', ONE, { id, body: { reason: 'bye', info: { a: 1 } } });
    expect(closed.json).toMatchObject({ id, state: 'closed', reason: 'bye' });
    expectError(await call('DELETE', ONE, { id }), 409, 'session_closed');
    expectError(await call('POST', HB, { id }), 409, 'session_closed');
  });

  it('registers (201) and cancels (204) guarantees; 400s, 404s (session, scope, guarantee), 409s a closed session, 413s past the limits, 415s', async () => {
    const id = await open();
    const scope = await newScope({ n: 0 });
    const hidden = (await call('POST', '/v1/scopes', { body: { state: {}, access: { visibility: 'private' } }, token: bob.token })).json.id as string;
    const g = await call('POST', GS, { id, body: { scope, patch: [{ op: 'replace', path: '/n', value: 5 }] } });
    expect(g.status).toBe(201);
    expect((await call('DELETE', G1, { id, params: { gid: g.json.id } })).status).toBe(204);
    expectError(await call('DELETE', G1, { id, params: { gid: g.json.id } }), 404, 'not_found');
    expectError(await call('DELETE', G1, { id, params: { gid: 'nope' } }), 400, 'invalid_request');
    expectError(await call('DELETE', G1, { id, params: { gid: g.json.id }, token: bob.token }), 404, 'session_not_found');
    expectError(await call('POST', GS, { id, body: { scope: hidden, patch: [] } }), 404, 'scope_not_found');
    expectError(await call('POST', GS, { id, body: { scope, patch: [] }, token: bob.token }), 404, 'session_not_found');
    expectError(await call('POST', GS, { id, body: { scope } }), 400, 'invalid_request');
    expectError(await call('POST', GS, { id, body: { scope, patch: [{ op: 'add', path: '/x', value: 'x'.repeat(1100) }] } }), 413, 'too_large');
    expectError(await call('POST', GS, { id, raw: '{}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    expect((await call('POST', GS, { id, body: { scope, patch: [] }, token: null })).status).toBe(401);
    expect((await call('DELETE', G1, { id, params: { gid: g.json.id }, token: null })).status).toBe(401);
    await call('DELETE', ONE, { id });
    expectError(await call('POST', GS, { id, body: { scope, patch: [] } }), 409, 'session_closed');
    expectError(await call('DELETE', G1, { id, params: { gid: g.json.id } }), 409, 'session_closed');
  });

  it('shows presence (200) and joins it (200); 400s, 401s, 404s (scope, session), 409s a closed session, 413s a large status, 415s', async () => {
    const scope = await newScope({ n: 0 });
    const hidden = (await call('POST', '/v1/scopes', { body: { state: {}, access: { visibility: 'private' } }, token: bob.token })).json.id as string;
    const id = await open();
    const joined = await call('PUT', P, { id: scope, body: { session: id, status: { x: 1 } } });
    expect(joined.json).toMatchObject({ scope, joined: true, entry: { session: id, status: { x: 1 } } });
    expect((await call('GET', P, { id: scope, token: bob.token })).json.present).toEqual([joined.json.entry]);
    expectError(await call('GET', P, { id: hidden }), 404, 'scope_not_found');
    expectError(await call('GET', P, { id: BAD_ID }), 400, 'invalid_request');
    expect((await call('GET', P, { id: scope, token: null })).status).toBe(401);
    expectError(await call('PUT', P, { id: hidden, body: { session: id } }), 404, 'scope_not_found');
    expectError(await call('PUT', P, { id: scope, body: { session: id }, token: bob.token }), 404, 'session_not_found');
    expectError(await call('PUT', P, { id: scope, body: { session: id, status: 'x'.repeat(1100) } }), 413, 'too_large');
    expectError(await call('PUT', P, { id: scope, body: { status: 1 } }), 400, 'invalid_request');
    expectError(await call('PUT', P, { id: scope, raw: '{}', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    expect((await call('PUT', P, { id: scope, body: { session: id }, token: null })).status).toBe(401);
    await call('DELETE', ONE, { id });
    expectError(await call('PUT', P, { id: scope, body: { session: id } }), 409, 'session_closed');
    expect((await call('GET', P, { id: scope })).json.present).toEqual([]);
  });

  it("ties writes and streams to sessions: 404 for another user's session id, 409 for a closed one", async () => {
    const scope = await newScope({ n: 0 });
    const id = await open(bob);
    const write = (session: string) =>
      call('POST', '/v1/scopes/{id}/patches', { id: scope, body: { patch: [{ op: 'replace', path: '/n', value: 1 }], session, si: 1 } });
    expectError(await write(id), 404, 'session_not_found');
    expectError(await call('GET', '/v1/scopes/{id}/events', { id: scope, query: `?session=${id}` }), 404, 'session_not_found');
    await call('DELETE', ONE, { id, token: bob.token });
    expectError(await call('POST', '/v1/scopes/{id}/patches', { id: scope, body: { patch: [], session: id, si: 1 }, token: bob.token }), 409, 'session_closed');
    expectError(await call('GET', '/v1/scopes/{id}/events', { id: scope, query: `?session=${id}`, token: bob.token }), 409, 'session_closed');
    expectError(await call('GET', '/v1/scopes/{id}/events', { id: scope, query: '?presence=yes' }), 400, 'invalid_request');
  });

  it('403s a session past the per-user quota; 413s past the guarantees, presence scopes and info limits; 429s past the session and presence rates', async () => {
    const limited = await startServer({
      limits: 'on',
      rateSession: { tokens: 5, windowMs: 60_000 },
      ratePresence: { tokens: 2, windowMs: 60_000 },
      sessionMaxPerUser: 1,
      sessionMaxGuarantees: 1,
      presenceMaxScopes: 1,
    });
    try {
      const c = await limited.client();
      const first = await c.request('POST', S); // session token 1
      expect(first.status).toBe(201);
      const id = first.json.id as string;
      const quota = await c.request('POST', S); // 2
      check(quota, 'POST', S);
      expectError(quota, 403, 'quota_exceeded');
      expect(quota.json.error).toMatchObject({ quota: 'sessions', max: 1 });
      const [scope, other] = [(await c.request('POST', '/v1/scopes', { body: {} })).json.id, (await c.request('POST', '/v1/scopes', { body: {} })).json.id];
      expect((await c.request('POST', `${S}/${id}/guarantees`, { body: { scope, patch: [] } })).status).toBe(201); // 3
      const many = await c.request('POST', `${S}/${id}/guarantees`, { body: { scope, patch: [] } }); // 4
      check(many, 'POST', GS);
      expectError(many, 413, 'too_large');
      expect(many.json.error).toMatchObject({ limit: 'sessionMaxGuarantees', max: 1 });
      const info = await c.request('DELETE', `${S}/${id}`, { body: { info: 'x'.repeat(5000) } }); // 5
      check(info, 'DELETE', ONE);
      expectError(info, 413, 'too_large');
      expect(info.json.error).toMatchObject({ limit: 'sessionMaxInfoBytes', max: 4096 });
      expect((await c.request('PUT', `/v1/scopes/${scope}/presence`, { body: { session: id } })).status).toBe(200); // presence 1
      const status = await c.request('PUT', `/v1/scopes/${scope}/presence`, { body: { session: id, status: 'x'.repeat(1100) } });
      check(status, 'PUT', P);
      expect(status.json.error).toMatchObject({ code: 'too_large', limit: 'presenceMaxStatusBytes', max: 1024 });
      const scopes = await c.request('PUT', `/v1/scopes/${other}/presence`, { body: { session: id } }); // presence 2
      check(scopes, 'PUT', P);
      expect(scopes.json.error).toMatchObject({ code: 'too_large', limit: 'presenceMaxScopes', max: 1 });
      const p = await c.request('PUT', `/v1/scopes/${scope}/presence`, { body: { session: id } });
      check(p, 'PUT', P);
      expectError(p, 429, 'rate_limited');
      for (const [method, template, path] of [
        ['GET', ONE, `/v1/sessions/${id}`],
        ['POST', HB, `/v1/sessions/${id}/heartbeat`],
        ['POST', GS, `/v1/sessions/${id}/guarantees`],
        ['DELETE', G1, `/v1/sessions/${id}/guarantees/g_0000000000000000`],
        ['DELETE', ONE, `/v1/sessions/${id}`],
        ['POST', S, '/v1/sessions'],
      ] as const) {
        const res = await c.request(method, path, method === 'POST' && template === GS ? { body: { scope, patch: [] } } : {});
        check(res, method, template);
        expectError(res, 429, 'rate_limited');
      }
      expect((await limited.app.sessions.get(id, (await c.request('GET', '/v1/me')).json.id)).state).toBe('open');
    } finally {
      await limited.close();
    }
  });
});

describe('uploads', () => {
  let up: TestServer;
  let googleLike: TestServer;
  let owner: Client;
  let other: Client;
  beforeAll(async () => {
    up = await startServer({
      limits: 'on',
      maxUploadBytes: 100,
      uploadTypes: ['text/plain'],
      quotaFileBytes: 150,
      rateUpload: { tokens: 6, windowMs: 600_000 },
    });
    // A Cloud Storage file store (never contacted here): the embedded file routes are then 404.
    const { Storage } = await import('@google-cloud/storage');
    const { GcsFiles } = await import('../shared/adapters/google/gcs-files.js');
    googleLike = await startServer({}, undefined, { files: new GcsFiles(new Storage({ apiEndpoint: 'http://127.0.0.1:9', projectId: 'demo-x' }).bucket('b')) });
    [owner, other] = await Promise.all([newClient(up.url), newClient(up.url)]);
  });
  afterAll(async () => {
    await up.close();
    await googleLike.close();
  });
  const at = async (method: Method, template: string, opts: CallOpts & { server?: TestServer; path?: string } = {}): Promise<Res> => {
    const path = opts.path ?? template.replace('{id}', encodeURIComponent(opts.id ?? ''));
    const res = await request((opts.server ?? up).url, method, path, {
      body: opts.body,
      raw: opts.raw,
      headers: opts.headers,
      token: opts.token === undefined ? owner.token : opts.token,
    });
    return check(res, method, template);
  };
  const filePath = (url: string) => new URL(url).pathname;
  /** `GET /v1/uploads/{id}/file`, its redirect not followed. */
  const fileRedirect = async (id: string, token: string | null): Promise<Res> => {
    const res = await fetch(`${up.url}/v1/uploads/${encodeURIComponent(id)}/file`, {
      redirect: 'manual',
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const text = await res.text();
    return check({ status: res.status, headers: res.headers, text, json: text ? JSON.parse(text) : undefined }, 'GET', '/v1/uploads/{id}/file');
  };

  it('starts an upload (201), stores it through the signed URL (200), completes (200) and downloads (200, the file)', async () => {
    const created = await at('POST', '/v1/uploads', { body: { name: 'a.txt', type: 'text/plain', size: 5 } });
    expect(created.status).toBe(201);
    expectValid(['components', 'schemas', 'UploadRequest'], { name: 'a.txt', type: 'text/plain', size: 5 }, 'body');
    const { id, url, headers } = created.json;
    expectError(await at('GET', '/v1/uploads/{id}/download', { id }), 409, 'upload_incomplete');
    expectError(await fileRedirect(id, owner.token), 409, 'upload_incomplete');
    expectError(await at('POST', '/v1/uploads/{id}/complete', { id }), 409, 'upload_incomplete');
    const stored = await at('PUT', '/v1/files/{token}', { path: filePath(url), raw: 'hello', headers, token: null });
    expect(stored.status).toBe(200);
    expect((await at('POST', '/v1/uploads/{id}/complete', { id })).json.state.status).toBe('ready');
    const dl = await at('GET', '/v1/uploads/{id}/download', { id });
    expect(dl.status).toBe(200);
    const file = await at('GET', '/v1/files/{token}', { path: filePath(dl.json.url), token: null });
    expect(file.text).toBe('hello');
    const redirect = await fileRedirect(id, owner.token);
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toMatch(/\/v1\/files\//);
    expectError(await fileRedirect(id, other.token), 404, 'scope_not_found');
    expectError(await fileRedirect(id, null), 401, 'unauthorized');
    expectError(await fileRedirect(BAD_ID, owner.token), 400, 'invalid_request');
    // Shared with every signed-in user: another may download it, but completing it is the owner's (403).
    await request(up.url, 'PUT', `/v1/scopes/${encodeURIComponent(id)}/access`, {
      token: owner.token,
      body: { visibility: 'authenticated', readers: [], writers: [] },
    });
    expect((await at('GET', '/v1/uploads/{id}/download', { id, token: other.token })).status).toBe(200);
    expectError(await at('POST', '/v1/uploads/{id}/complete', { id, token: other.token }), 403, 'forbidden');
    // Deleted with its scope: the download URL is 404 now.
    await request(up.url, 'DELETE', `/v1/scopes/${encodeURIComponent(id)}`, { token: owner.token });
    expectError(await at('GET', '/v1/files/{token}', { path: filePath(dl.json.url), token: null }), 404, 'not_found');
  });

  it("refuses: 400 bad bodies and ids, 401 without a token, 403 refused URLs and the quota, 404 others' uploads, 413 too large, 415 bad types, 429 past the rate", async () => {
    for (const body of [{}, { type: 'nope' }, { type: 'text/plain', size: -1 }, { type: 'text/plain', extra: 1 }]) {
      expectError(await at('POST', '/v1/uploads', { body }), 400, 'invalid_request');
      expect(() => expectValid(['components', 'schemas', 'UploadRequest'], body, 'body')).toThrow();
    }
    expectError(await at('POST', '/v1/uploads/{id}/complete', { id: BAD_ID }), 400, 'invalid_request');
    expectError(await at('GET', '/v1/uploads/{id}/download', { id: BAD_ID }), 400, 'invalid_request');
    expectError(await at('POST', '/v1/uploads', { body: { type: 'text/plain' }, token: null }), 401, 'unauthorized');
    expectError(await at('POST', '/v1/uploads/{id}/complete', { id: 'upload:x', token: null }), 401, 'unauthorized');
    expectError(await at('GET', '/v1/uploads/{id}/download', { id: 'upload:x', token: null }), 401, 'unauthorized');
    expectError(await at('POST', '/v1/uploads', { body: { type: 'text/plain', size: 101 } }), 413, 'too_large');
    expect((await at('POST', '/v1/uploads', { body: { type: 'text/plain', size: 101 } })).json.error.limit).toBe('maxUploadBytes');
    expectError(await at('POST', '/v1/uploads', { body: { type: 'image/png' } }), 415, 'unsupported_media_type');
    expectError(await at('POST', '/v1/uploads', { raw: 'x', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type');
    const big = await at('POST', '/v1/uploads', { body: { type: 'text/plain', size: 5, md5: 'XUFAKrxLKna5cZ2REBfFkg==' } });
    expect(big.status).toBe(201);
    expectError(
      await at('PUT', '/v1/files/{token}', { path: filePath(big.json.url), raw: 'jello', headers: big.json.headers, token: null }),
      400,
      'invalid_request',
    );
    const over = await at('PUT', '/v1/files/{token}', {
      path: filePath(big.json.url),
      raw: 'x'.repeat(50),
      headers: { 'content-type': 'text/plain' },
      token: null,
    });
    expectError(over, 403, 'forbidden'); // the signed Content-MD5 is missing
    const plain = await at('POST', '/v1/uploads', { body: { type: 'text/plain', size: 3 } });
    const tooBig = await at('PUT', '/v1/files/{token}', { path: filePath(plain.json.url), raw: 'x'.repeat(50), headers: plain.json.headers, token: null });
    expectError(tooBig, 413, 'too_large');
    expect(tooBig.json.error.limit).toBe('maxUploadBytes');
    expectError(await at('GET', '/v1/files/{token}', { path: filePath(plain.json.url), token: null }), 403, 'forbidden');
    expectError(await at('GET', '/v1/uploads/{id}/download', { id: plain.json.id, token: other.token }), 404, 'scope_not_found');
    expectError(await at('POST', '/v1/uploads/{id}/complete', { id: plain.json.id, token: other.token }), 404, 'scope_not_found');
    expect((await at('POST', '/v1/uploads', { body: { type: 'text/plain', size: 100 } })).status).toBe(201); // 108 of 150 bytes reserved
    const quota = await at('POST', '/v1/uploads', { body: { type: 'text/plain', size: 100 } });
    expectError(quota, 403, 'quota_exceeded');
    expect(quota.json.error).toMatchObject({ quota: 'fileBytes', max: 150 });
    let limited: Res | undefined;
    for (let i = 0; i < 8 && !limited; i++) {
      const r = await at('POST', '/v1/uploads', { body: { type: 'text/plain', size: 1 } });
      if (r.status === 429) limited = r;
    }
    expectError(limited as Res, 429, 'rate_limited');
    expect((limited as Res).json.error.limit).toBe('upload');
  });

  it('404s the embedded file routes where Cloud Storage serves the files', async () => {
    expectError(
      await at('PUT', '/v1/files/{token}', { server: googleLike, path: '/v1/files/x.y', raw: 'x', headers: { 'content-type': 'text/plain' }, token: null }),
      404,
      'not_found',
    );
    expectError(await at('GET', '/v1/files/{token}', { server: googleLike, path: '/v1/files/x.y', token: null }), 404, 'not_found');
  });
});

describe('multiplexed streams and long polling', () => {
  /** Opens `GET /v1/events?<query>` (its head checked against the spec) and reads events, each validated against its documented schema. */
  async function openMuxRaw(query: string, token: string) {
    const raw = await openRaw(`/v1/events?${query}`, { authorization: `Bearer ${token}` }, '/v1/events');
    const nextEvent = async (): Promise<{ event: string; id?: string; data: Obj }> => {
      let block = await raw.next();
      while (block.event === undefined) block = await raw.next();
      expect(Object.keys(at([...raw.media, 'x-sse-events'])), 'a documented event type').toContain(block.event);
      const data = JSON.parse(block.data ?? '');
      expectValid([...raw.media, 'x-sse-events', block.event], data, `SSE ${block.event} data`);
      if (block.event === 'state' || block.event === 'patch') expect(block.id).toBe(`${data.scope}@${data.ii}`);
      return { event: block.event, id: block.id, data };
    };
    return { nextEvent, close: raw.close };
  }

  it('streams many scopes (stream, state, patch, added, removed events as documented) and takes changes (202)', async () => {
    const a = await newScope();
    const b = await newScope();
    const m = await openMuxRaw(`scopes=${a}`, alice.token);
    try {
      const first = await m.nextEvent();
      expect(first.event).toBe('stream');
      const stream = first.data.stream as string;
      expect((await m.nextEvent()).event).toBe('state');
      const changed = await call('POST', '/v1/events/{stream}', { params: { stream }, body: { add: [{ scope: b, since: 0 }], remove: [a] } });
      expect(changed.status).toBe(202);
      expect((await m.nextEvent()).data).toEqual({ scope: a });
      expect((await m.nextEvent()).data).toEqual({ scope: b });
      await call('POST', '/v1/scopes/{id}/patches', { id: b, body: { patch: [{ op: 'add', path: '/x', value: 1 }] } });
      const p = await m.nextEvent();
      expect([p.event, p.data.scope, p.data.ii]).toEqual(['patch', b, 1]);
      await call('POST', '/v1/events/{stream}', { params: { stream }, body: { add: [{ scope: a, since: 0 }] } });
      expect((await m.nextEvent()).event).toBe('added');
    } finally {
      m.close();
    }
    const other = (await call('POST', '/v1/scopes', { body: {}, token: bob.token })).json.id as string; // private: alice may not read it
    const stream = '0'.repeat(32);
    expectError(await call('POST', '/v1/events/{stream}', { params: { stream: 'x' }, body: { remove: [a] } }), 400, 'invalid_request');
    expectError(await call('POST', '/v1/events/{stream}', { params: { stream }, body: {} }), 400, 'invalid_request');
    expectError(await call('POST', '/v1/events/{stream}', { params: { stream }, body: { add: [{ scope: other }] } }), 404, 'scope_not_found');
    expectError(await call('POST', '/v1/events/{stream}', { params: { stream }, body: { add: [{ scope: other }] }, token: null }), 401, 'unauthorized');
    expectError(await call('POST', '/v1/events/{stream}', { params: { stream }, body: { add: [{ scope: b, since: 9 }] } }), 409, 'out_of_sync');
    const many = Array.from({ length: 101 }, (_, i) => `s${i}`);
    expectError(await call('POST', '/v1/events/{stream}', { params: { stream }, body: { remove: many } }), 413, 'too_large');
    expectError(await call('GET', '/v1/events', { query: `?scopes=${b},${b}` }), 400, 'invalid_request');
    expectError(await call('GET', '/v1/events', { query: `?scopes=${b}&presence=1` }), 400, 'invalid_request');
    expectError(await call('GET', '/v1/events', { query: `?scopes=${other}` }), 404, 'scope_not_found');
    expectError(await call('GET', '/v1/events', { query: `?scopes=${b}`, token: null }), 401, 'unauthorized');
    expectError(await call('GET', '/v1/events', { query: `?scopes=${b}@9` }), 409, 'out_of_sync');
    const tooMany = await call('GET', '/v1/events', { query: `?scopes=${many.join(',')}` });
    expectError(tooMany, 413, 'too_large');
    expect(tooMany.json.error).toMatchObject({ limit: 'sseMaxScopes', max: 100, actual: 101 });
    expectError(await call('GET', '/v1/scopes/{id}/patches', { id: b, query: '?wait=x' }), 400, 'invalid_request');
  });

  it('watches named queries on a stream opened with no scope (result and unwatched events as documented); 400s, 401s, 404s, 413s a watch, 503s without a mirror', async () => {
    const m = await openMuxRaw('scopes=', alice.token);
    const ctl = (stream: string, body: unknown, opts: CallOpts = {}) => call('POST', '/v1/events/{stream}', { ...opts, params: { stream }, body });
    const watch = (query: string, name: string, params?: unknown) => ({ query, domain: 'default', name, ...(params === undefined ? {} : { params }) });
    try {
      const first = await m.nextEvent();
      expect(first.event).toBe('stream');
      const stream = first.data.stream as string;
      // `fails` passes the change's checks and fails its first run on the stream: `unwatched` with the error.
      const changed = await ctl(stream, { watch: [watch('m', 'me'), watch('f', 'fails')] });
      expect([changed.status, changed.json.watch]).toEqual([202, ['m', 'f']]);
      const result = await m.nextEvent();
      expect([result.event, result.data.query, result.data.rows]).toEqual(['result', 'm', [[userIdOf(alice), 'default']]]);
      const failed = await m.nextEvent();
      expect([failed.event, failed.data]).toEqual(['unwatched', { query: 'f', error: expect.objectContaining({ code: 'query_failed', pgCode: '22012' }) }]);
      expect((await ctl(stream, { unwatch: ['m'] })).status).toBe(202);
      expect(await m.nextEvent()).toMatchObject({ event: 'unwatched', data: { query: 'm' } });
      expectError(await ctl(stream, { watch: [watch('x', 'counters_from', { min: 'x' })] }), 400, 'invalid_params');
      expectError(await ctl(stream, { watch: [watch('x', 'nope')] }), 404, 'unknown_query');
      expectError(await ctl(stream, { watch: [watch('x', 'me')] }, { token: null }), 401, 'unauthorized');
      const many = Array.from({ length: 101 }, (_, i) => watch(`k${i}`, 'me'));
      expectError(await ctl(stream, { watch: many }), 413, 'too_large');
    } finally {
      m.close();
    }
    const none = await startServer({}, undefined, { mirror: null, configs: VALIDATED });
    try {
      const c = await none.client();
      const res = await c.request('POST', `/v1/events/${'0'.repeat(32)}`, { body: { watch: [watch('x', 'me')] } });
      check(res, 'POST', '/v1/events/{stream}');
      expectError(res, 503, 'unavailable');
      expect(res.json.error.query).toBe('x');
    } finally {
      await none.close();
    }
  });

  it('429s past the stream cap or the change rate, 503s a full instance (also a waiting history request)', async () => {
    const limited = await startServer({ limits: 'on', sseMaxPerUser: 1, rateStreamControl: { tokens: 1, windowMs: 60_000 } });
    const full = await startServer({ sseMaxPerInstance: 1 });
    const open: AbortController[] = [];
    const hold = async (url: string, token: string, id: string) => {
      const abort = new AbortController();
      open.push(abort);
      const res = await fetch(`${url}/v1/events?scopes=${id}`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
      expect(res.status).toBe(200);
    };
    const at = (url: string, method: Method, template: string, path: string, token: string, body?: unknown) =>
      request(url, method, path, { body, token }).then((r) => check(r, method, template));
    try {
      for (const server of [limited, full]) {
        const u = await newClient(server.url);
        const id = (await request(server.url, 'POST', '/v1/scopes', { body: {}, token: u.token })).json.id as string;
        await hold(server.url, u.token, id);
        const [status, code] = server === limited ? [429, 'rate_limited'] : [503, 'unavailable'];
        expectError(await at(server.url, 'GET', '/v1/events', `/v1/events?scopes=${id}`, u.token), status, code);
        expectError(await at(server.url, 'GET', '/v1/scopes/{id}/patches', `/v1/scopes/${id}/patches?from=1&wait=5000`, u.token), status, code);
        if (server === limited) {
          const stream = '0'.repeat(32);
          expect((await at(server.url, 'POST', '/v1/events/{stream}', `/v1/events/${stream}`, u.token, { remove: [id] })).status).toBe(202);
          const refused = await at(server.url, 'POST', '/v1/events/{stream}', `/v1/events/${stream}`, u.token, { remove: [id] });
          expectError(refused, 429, 'rate_limited');
          expect(refused.json.error.limit).toBe('streamControl');
        }
      }
    } finally {
      for (const a of open) a.abort();
      await limited.close();
      await full.close();
    }
  });
});

describe('coverage', () => {
  it('saw every status the spec documents (500 excepted: it means a bug)', () => {
    const missing = [...documented].filter((k) => !k.endsWith(' 500') && !seen.has(k));
    expect(missing).toEqual([]);
  });
});
