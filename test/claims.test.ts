/**
 * Domain claims on the embedded stack (the contract in test/contract/claims.ts; the Google stack
 * runs it in google.emulator.test.ts), and the probes' own limits (shared/domains/claim-check.ts)
 * against real sockets: what a claim can make the server fetch.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPublicAddress, NetClaimProbe, ProbeFailed, WELL_KNOWN_MAX_BYTES } from '../shared/domains/claim-check.js';
import { CLAIM_KIND, Claims, claimableDomain, isLocalhost, KEEP_FINISHED_MS } from '../shared/domains/claims.js';
import type { Json } from '../shared/json.js';
import { type PutOptions, RECORD_TTL_GRACE_MS, type RecordStore } from '../shared/ports/records.js';
import { claimsContract } from './contract/claims.js';
import { startServer } from './helpers/server.js';

claimsContract('embedded', (overrides, opts) => startServer(overrides, undefined, opts), true);

describe('which domains may be claimed', () => {
  it('takes lower-case host names with a dot; localhost names (any port) only when turned on', () => {
    const on = { claimLocalhost: 'on' as const };
    for (const d of ['example.com', 'a.b.example.co.uk', 'xn--bcher-kva.example', '1password.com', 'x1.y2']) expect(claimableDomain(d, on), d).toBe(false);
    for (const d of ['localhost', 'localhost:5173', 'app.localhost', 'a.b.localhost:8080']) {
      expect(claimableDomain(d, on), d).toBe(true);
      expect(() => claimableDomain(d, { claimLocalhost: 'off' }), d).toThrow(/cannot be claimed on this deployment/);
    }
    expect(isLocalhost('localhost.example.com')).toBe(false);
  });

  it('refuses IP addresses (as URL parsers read them), ports, single labels and malformed names', () => {
    const on = { claimLocalhost: 'on' as const };
    for (const d of [
      '127.0.0.1',
      '10.1',
      '127.1',
      'a.0x7f',
      'a.0x',
      '169.254.169.254',
      'example.com:443',
      'com',
      'default',
      'Example.com',
      'a_b.com',
      '',
      '-a.com',
    ]) {
      expect(() => claimableDomain(d, on), d).toThrow();
    }
  });
});

describe('the probes', () => {
  let server: Server;
  let port: number;
  const seen: string[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(`${req.headers.host} ${req.url}`);
      const host = (req.headers.host ?? '').replace(/:[0-9]+$/, '');
      if (host === 'big.example.com') res.writeHead(200).end('x'.repeat(WELL_KNOWN_MAX_BYTES + 1));
      else if (host === 'slow.example.com')
        res.writeHead(200).write('partial'); // never ends
      else if (host === 'moved.example.com') res.writeHead(301, { location: 'http://ok.example.com/' }).end();
      else res.writeHead(200, { 'content-type': 'text/plain' }).end('the-token');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  const probe = (opts: { allowPrivate?: boolean; addresses?: string[]; timeoutMs?: number } = {}) =>
    new NetClaimProbe({
      timeoutMs: opts.timeoutMs ?? 2000,
      wellKnownUrl: (d) => `http://${d}:${port}/.well-known/patchbay-challenge`,
      lookup: async () => (opts.addresses ?? ['127.0.0.1']).map((address) => ({ address, family: address.includes(':') ? 6 : 4 })),
      allowPrivate: opts.allowPrivate ?? true,
      resolveTxt: async (name) => {
        if (name === '_patchbay-challenge.ok.example.com') return [['the-', 'token'], ['other']];
        throw Object.assign(new Error('nope'), { code: name.startsWith('_patchbay-challenge.fail') ? 'ESERVFAIL' : 'ENOTFOUND' });
      },
    });

  it('fetches the file over a real socket, with the claimed name as Host', async () => {
    expect(await probe().wellKnown('ok.example.com')).toBe('the-token');
    expect(seen).toContain(`ok.example.com:${port} /.well-known/patchbay-challenge`);
  });

  it('never connects to a non-public address: loopback, private, link-local (metadata), unique-local', async () => {
    const before = seen.length;
    for (const address of ['127.0.0.1', '10.0.0.5', '192.168.1.1', '169.254.169.254', '::1', 'fd00::1', '100.64.0.1', '0.0.0.0']) {
      expect(isPublicAddress(address), address).toBe(false);
      await expect(probe({ allowPrivate: false, addresses: [address] }).wellKnown('ok.example.com'), address).rejects.toThrow(
        'the host name resolves only to non-public addresses',
      );
    }
    expect(seen.length).toBe(before);
    expect(isPublicAddress('93.184.216.34')).toBe(true);
    expect(isPublicAddress('2606:2800:220:1:248:1893:25c8:1946')).toBe(true);
  });

  it('follows no redirect, reads at most the size cap, gives up after the timeout', async () => {
    const before = seen.length;
    await expect(probe().wellKnown('moved.example.com')).rejects.toThrow(/^HTTP 301: redirects are not followed/);
    expect(seen.slice(before)).toEqual([`moved.example.com:${port} /.well-known/patchbay-challenge`]);
    await expect(probe().wellKnown('big.example.com')).rejects.toThrow(`the answer is longer than ${WELL_KNOWN_MAX_BYTES} bytes`);
    const t0 = Date.now();
    await expect(probe({ timeoutMs: 300 }).wellKnown('slow.example.com')).rejects.toBeInstanceOf(ProbeFailed);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('reads TXT records (chunks joined); none is an empty answer, a failing server a reason', async () => {
    expect(await probe().txt('_patchbay-challenge.ok.example.com')).toEqual(['the-token', 'other']);
    expect(await probe().txt('_patchbay-challenge.none.example.com')).toEqual([]);
    await expect(probe().txt('_patchbay-challenge.fail.example.com')).rejects.toThrow('DNS lookup failed (ESERVFAIL)');
  });
});

describe('the sweep keeps finished claims a day', () => {
  it('deletes a claim record more than KEEP_FINISHED_MS after it finished; the admin stays', async () => {
    const srv = await startServer({ claimLocalhost: 'on' });
    try {
      let t = Date.now();
      const { app } = srv;
      const claims = new Claims(app.adapters.records, app.domains, app.engine, { wellKnown: async () => '', txt: async () => [] }, app.config, {
        now: () => t,
      });
      const { claim } = await claims.start('app.localhost', { id: 'firebase:zoe', anonymous: false });
      expect(claim.status).toBe('success');
      t += KEEP_FINISHED_MS;
      expect(await claims.sweep()).toEqual({ checked: 0, succeeded: 0, timedOut: 0, removed: 0 });
      t += 1;
      expect(await claims.sweep()).toEqual({ checked: 0, succeeded: 0, timedOut: 0, removed: 1 });
      expect(await app.adapters.records.get(CLAIM_KIND, 'firebase:zoe/app.localhost')).toBeNull();
      expect(await app.domains.isAdmin('app.localhost', 'firebase:zoe')).toBe(true);
    } finally {
      await srv.close();
    }
  });

  it('a finished claim is put with an expiry a day past its deletion (the Firestore TTL backstop); a pending one with none', async () => {
    const srv = await startServer({ claimLocalhost: 'on' });
    try {
      const t = Date.now();
      const { app } = srv;
      const base = app.adapters.records;
      const puts: Array<{ status: unknown; expireAt: number | undefined }> = [];
      const spy: RecordStore = {
        get: (kind, key) => base.get(kind, key),
        delete: (kind, key, rev) => base.delete(kind, key, rev),
        list: (kind, opts) => base.list(kind, opts),
        put: (kind: string, key: string, value: Json, rev: number, opts?: PutOptions) => {
          if (kind === CLAIM_KIND) puts.push({ status: (value as { status?: unknown }).status, expireAt: opts?.expireAt });
          return base.put(kind, key, value, rev, opts);
        },
      };
      const claims = new Claims(spy, app.domains, app.engine, { wellKnown: async () => '', txt: async () => [] }, app.config, { now: () => t });
      const { claim } = await claims.start('app.localhost', { id: 'firebase:zoe', anonymous: false });
      expect(claim.status).toBe('success');
      expect(puts.length).toBeGreaterThan(0);
      for (const p of puts) expect(p.expireAt, String(p.status)).toBe(p.status === 'pending' ? undefined : t + KEEP_FINISHED_MS + RECORD_TTL_GRACE_MS);
      expect(puts.at(-1)?.status).toBe('success');
    } finally {
      await srv.close();
    }
  });
});
