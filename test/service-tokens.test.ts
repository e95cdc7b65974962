/**
 * Service tokens and per-domain CORS on the embedded stack: the shared contract
 * (test/contract/service-tokens.ts, also run on the Google stack in
 * service-tokens.emulator.test.ts), and what needs the embedded parts:
 * - ServiceTokens on the SQLite record store with a fake clock: a revoke reaches another instance
 *   once its last look is PATCHBAY_SERVICE_TOKEN_CHECK_MS old and not before; a revoked or
 *   expired token stays refused; minting prunes expired records; the cap counts live tokens;
 * - CORS when the record store fails: the request is answered, without CORS headers (never `*`
 *   and never a 500), and the failure is logged;
 * - the service identity's role (shared/engine/access.ts) and the commit rule agreeing with it.
 */
import { describe, expect, it } from 'vitest';
import { SqliteLedger } from '../shared/adapters/embedded/index.js';
import { SERVICE_TOKEN_KIND, ServiceTokens } from '../shared/domains/service-tokens.js';
import { roleOf, serviceUser } from '../shared/engine/access.js';
import { writersInDomain } from '../shared/engine/decide.js';
import type { ScopeMeta } from '../shared/protocol.js';
import { serviceTokensContract } from './contract/service-tokens.js';
import { request, startServer } from './helpers/server.js';
import { wrap } from './helpers/wrap.js';

serviceTokensContract('embedded', (overrides) => startServer(overrides));

const store = () => new SqliteLedger(':memory:').records;
const opts = { checkMs: 1000, maxLive: 2, maxTtlSeconds: 3600 };

describe('ServiceTokens', () => {
  it("exposes a record's `config` flag with the same cached look as isLive (one read per checkMs), and only when the mint asked for it", async () => {
    let t = 1_000_000;
    let reads = 0;
    const s = store();
    const counted = wrap(s, {
      get: (real, kind, key) => {
        reads++;
        return real(kind, key);
      },
    });
    const a = new ServiceTokens(s, { ...opts, now: () => t });
    const b = new ServiceTokens(counted, { ...opts, now: () => t });
    const deploy = await a.create('example.com', 'patchbay deploy', { name: 'deploy', ttlSeconds: 600 }, { config: true });
    const plain = await a.create('example.com', 'u1', { name: 'w', ttlSeconds: 600 });
    expect((await s.get(SERVICE_TOKEN_KIND, `example.com/${deploy.id}`))?.value).toMatchObject({ config: true });
    expect((await s.get(SERVICE_TOKEN_KIND, `example.com/${plain.id}`))?.value).not.toHaveProperty('config');
    expect(await b.live('example.com', deploy.id)).toEqual({ config: true });
    expect(await b.live('example.com', plain.id)).toEqual({ config: false });
    expect(await b.isLive('example.com', deploy.id)).toBe(true);
    expect(await b.live('example.com', deploy.id)).toEqual({ config: true });
    expect(reads).toBe(2); // one look per token, reused by both methods
    await a.revoke('example.com', deploy.id);
    t += 1000;
    expect(await b.live('example.com', deploy.id)).toBeNull();
    expect(await b.live('other.com', plain.id)).toBeNull();
  });

  it('a revoke reaches another instance once its last look is checkMs old, and not before', async () => {
    let t = 1_000_000;
    const s = store();
    const a = new ServiceTokens(s, { ...opts, now: () => t });
    const b = new ServiceTokens(s, { ...opts, now: () => t });
    const rec = await a.create('example.com', 'u1', { name: 'w', ttlSeconds: 600 });
    expect(await b.isLive('example.com', rec.id)).toBe(true);
    await a.revoke('example.com', rec.id);
    expect(await a.isLive('example.com', rec.id)).toBe(false); // at once where it was revoked
    t += 999;
    expect(await b.isLive('example.com', rec.id)).toBe(true); // b's look is still fresh
    t += 1;
    expect(await b.isLive('example.com', rec.id)).toBe(false);
    expect(await s.get(SERVICE_TOKEN_KIND, `example.com/${rec.id}`)).toBeNull();
    await expect(a.revoke('example.com', rec.id)).rejects.toMatchObject({ code: 'not_found' });
    await expect(a.revoke('other.com', rec.id)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('checks every use with checkMs 0, refuses expired tokens, counts only live ones, and prunes expired records on mint', async () => {
    let t = 1_000_000;
    const s = store();
    const a = new ServiceTokens(s, { ...opts, checkMs: 0, now: () => t });
    const b = new ServiceTokens(s, { ...opts, checkMs: 0, now: () => t });
    const short = await a.create('example.com', 'u1', { name: 'short', ttlSeconds: 60 });
    t += 1;
    const long = await a.create('example.com', 'u1', { name: 'long', ttlSeconds: 600 });
    await expect(a.create('example.com', 'u1', { name: 'third', ttlSeconds: 60 })).rejects.toMatchObject({ code: 'quota_exceeded' });
    await expect(a.create('example.com', 'u1', { name: 'x', ttlSeconds: 3601 })).rejects.toMatchObject({ code: 'invalid_request' });
    expect((await a.list('example.com')).map((r) => r.name)).toEqual(['short', 'long']);
    expect(await b.isLive('example.com', short.id)).toBe(true);
    await a.revoke('example.com', long.id);
    expect(await b.isLive('example.com', long.id)).toBe(false); // no cache: the next use sees it
    t += 59_999;
    expect(await b.isLive('example.com', short.id)).toBe(false);
    expect((await a.list('example.com')).map((r) => r.name)).toEqual(['short']); // expired, kept until the next mint
    await a.create('example.com', 'u1', { name: 'next', ttlSeconds: 60 });
    expect((await a.list('example.com')).map((r) => r.name)).toEqual(['next']);
    expect(await a.list('other.com')).toEqual([]);
  });
});

describe('the service identity’s role', () => {
  const meta = (domain: string, owner = 'anon:o', writers: string[] = []): ScopeMeta => ({
    owner,
    domain,
    name: null,
    type: null,
    created: 0,
    updated: 0,
    size: 2,
    access: { visibility: 'private', readers: [], writers, rev: 0 },
  });
  it('is a writer of every scope of its domain, the owner of its own, nothing special elsewhere', () => {
    expect(roleOf(meta('a.com'), { id: serviceUser('a.com'), domain: 'a.com' })).toBe('writer');
    expect(roleOf(meta('a.com', serviceUser('a.com')), { id: serviceUser('a.com'), domain: 'a.com' })).toBe('owner');
    expect(roleOf(meta('b.com'), { id: serviceUser('a.com'), domain: 'a.com' })).toBe('none');
    expect(roleOf(meta('b.com', 'anon:o', [serviceUser('a.com')]), { id: serviceUser('a.com'), domain: 'a.com' })).toBe('writer');
  });
  it('the commit rule agrees: its patches are accepted in its domain only', () => {
    const ctx = (m: ScopeMeta, domain: string) => ({
      id: 's',
      head: { ii: 0, epoch: 0, meta: m } as never,
      ii: 1,
      user: serviceUser('a.com'),
      domain,
      req: { patch: [] },
    });
    expect(() => writersInDomain(ctx(meta('a.com'), 'a.com'))).not.toThrow();
    expect(() => writersInDomain(ctx(meta('b.com'), 'a.com'))).toThrow(expect.objectContaining({ code: 'scope_not_found' }));
    expect(() => writersInDomain(ctx(meta('b.com', 'anon:o', [serviceUser('a.com')]), 'a.com'))).toThrow(expect.objectContaining({ code: 'forbidden' }));
  });
});

describe('per-domain CORS when the record store fails', () => {
  it('answers the request without CORS headers (no 500, no *), and logs the failure', async () => {
    const lines: string[] = [];
    let failing = false;
    const srv = await startServer({ corsOrigins: [], logLevel: 'error', domainCacheMs: 0 }, undefined, {
      wrap: (adapters) => ({
        ...adapters,
        records: wrap(adapters.records, {
          get: (real, kind, key) => (failing && kind === 'domain' ? Promise.reject(Object.assign(new Error('store down'), { code: 14 })) : real(kind, key)),
        }),
      }),
      logTo: (l) => lines.push(l),
    });
    try {
      await srv.app.domains.update('app.example.com', () => ({ origins: ['https://app.example.com'] }));
      const from = (method: string) => request(srv.url, method, '/healthz', { headers: { origin: 'https://app.example.com' } });
      expect((await from('GET')).headers.get('access-control-allow-origin')).toBe('https://app.example.com');
      failing = true;
      for (const method of ['GET', 'OPTIONS']) {
        const res = await from(method);
        expect(res.status).toBe(method === 'GET' ? 200 : 204);
        expect([...res.headers.keys()].filter((k) => k.startsWith('access-control-'))).toEqual([]);
        expect(res.headers.get('vary')).toBe('Origin');
      }
      expect(lines.some((l) => l.includes('CORS') && l.includes('store down'))).toBe(true);
    } finally {
      await srv.close();
    }
  });

  it('keeps `*` as the embedded default, without asking the record store', async () => {
    let reads = 0;
    const srv = await startServer({}, undefined, {
      wrap: (adapters) => ({
        ...adapters,
        records: wrap(adapters.records, {
          get: (real, kind, key) => {
            reads++;
            return real(kind, key);
          },
        }),
      }),
    });
    try {
      const res = await request(srv.url, 'GET', '/healthz', { headers: { origin: 'https://anything.example' } });
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(res.headers.get('vary')).toBeNull();
      expect(reads).toBe(0);
    } finally {
      await srv.close();
    }
  });
});
