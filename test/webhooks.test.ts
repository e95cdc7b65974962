/**
 * The pieces of a webhook delivery that the contract (test/contract/webhooks.ts) does not reach
 * through a real server: which scopes a webhook matches (types, name globs), and the POST's
 * bounds on real sockets: private addresses refused (by address, and by a host name that
 * resolves to one, checked in the connection's own lookup, so the receiver never sees a request),
 * redirects not followed, the timeout, the response size cap, and signatures that the
 * `standardwebhooks` verifier accepts.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Webhook as WebhookConfig } from '../shared/domains/config-schema.js';
import { isPrivateAddress, postWebhook, signedHeaders } from '../shared/domains/webhook-post.js';
import { newSecret } from '../shared/domains/webhook-records.js';
import { matches } from '../shared/domains/webhooks.js';

describe('which scopes a webhook matches', () => {
  const hook = (extra: Partial<WebhookConfig>): WebhookConfig => ({ name: 'h', url: 'https://x.example/h', ...extra });
  it('every scope without types or names; types exactly; names by glob, a nameless scope never', () => {
    expect(matches(hook({}), null, null)).toBe(true);
    expect(matches(hook({ types: ['note'] }), 'note', null)).toBe(true);
    expect(matches(hook({ types: ['note'] }), 'notes', null)).toBe(false);
    expect(matches(hook({ types: ['note'] }), null, 'a')).toBe(false);
    const named = hook({ names: ['order-*', 'exact', '*.draft'] });
    expect(matches(named, null, 'order-1')).toBe(true);
    expect(matches(named, null, 'order-')).toBe(true);
    expect(matches(named, null, 'xorder-1')).toBe(false);
    expect(matches(named, null, 'exact')).toBe(true);
    expect(matches(named, null, 'exactly')).toBe(false);
    expect(matches(named, null, 'a.draft')).toBe(true);
    expect(matches(named, null, 'adraft')).toBe(false); // `.` is literal
    expect(matches(named, null, null)).toBe(false);
  });
});

describe('one webhook POST', () => {
  let server: Server;
  let port: number;
  const hits: string[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      hits.push(req.url ?? '');
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/redirect') {
          res.writeHead(302, { location: '/target' });
          res.end();
        } else if (req.url === '/slow') {
          // never answers
        } else if (req.url === '/big') {
          res.writeHead(200);
          res.end('x'.repeat(10_000));
        } else if (req.url === '/echo') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ body: Buffer.concat(chunks).toString('utf8'), headers: req.headers }));
        } else {
          res.writeHead(204);
          res.end();
        }
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });
  const opts = { timeoutMs: 2000, maxResponseBytes: 1000, refusePrivate: false };

  it('classifies addresses: loopback, private, link-local, mapped and unique-local are not public', () => {
    for (const a of [
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '::1',
      '::ffff:127.0.0.1',
      'fc00::1',
      'fe80::1',
      'nonsense',
    ]) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '2001:4860:4860::8888']) expect(isPrivateAddress(a), a).toBe(false);
  });

  it('refuses a private address, by literal and through a host name, before anything is sent', async () => {
    const before = hits.length;
    await expect(postWebhook(`http://127.0.0.1:${port}/ok`, '{}', {}, { ...opts, refusePrivate: true })).rejects.toThrow(/non-public/);
    await expect(postWebhook(`http://localhost:${port}/ok`, '{}', {}, { ...opts, refusePrivate: true })).rejects.toThrow(/non-public/);
    expect(hits.length).toBe(before);
    expect((await postWebhook(`http://localhost:${port}/ok`, '{}', {}, opts)).status).toBe(204);
  });

  it('does not follow a redirect, gives up at the timeout, and caps the response', async () => {
    const r = await postWebhook(`http://127.0.0.1:${port}/redirect`, '{}', {}, opts);
    expect(r.status).toBe(302);
    expect(hits).not.toContain('/target');
    const t0 = Date.now();
    await expect(postWebhook(`http://127.0.0.1:${port}/slow`, '{}', {}, { ...opts, timeoutMs: 300 })).rejects.toThrow(/within 300 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(await postWebhook(`http://127.0.0.1:${port}/big`, '{}', {}, opts)).toMatchObject({ status: 200, body: null, truncated: true });
  });

  it('signs so that the standardwebhooks verifier accepts exactly what was sent', async () => {
    const secret = newSecret();
    expect(secret).toMatch(/^whsec_/);
    const payload = JSON.stringify({ type: 'patch.committed', data: { scope: 's', ii: 1 } });
    const r = await postWebhook(`http://127.0.0.1:${port}/echo`, payload, signedHeaders(secret, 's:1', payload, new Date()), {
      ...opts,
      maxResponseBytes: 10_000,
    });
    const echoed = JSON.parse((r.body as Buffer).toString('utf8'));
    expect(echoed.headers['webhook-id']).toBe('s:1');
    expect(new Webhook(secret).verify(echoed.body, echoed.headers)).toEqual(JSON.parse(payload));
    expect(() => new Webhook(newSecret()).verify(echoed.body, echoed.headers)).toThrow();
  });
});
