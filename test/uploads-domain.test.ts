/**
 * A domain's configuration lowers the deployment's upload limits for its own uploads
 * (docs/domains.md, `limits.maxUploadBytes` and `limits.uploadTypes`); a larger value or a type
 * the deployment does not allow has no effect. Refusals create nothing. Embedded stack, real HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDomainConfig, StaticConfigs } from '../shared/domains/active.js';
import { type Client, startServer, type TestServer } from './helpers/server.js';

let srv: TestServer;
let alice: Client;

beforeAll(async () => {
  const configs = new StaticConfigs();
  configs.set('default', loadDomainConfig('limits:\n  maxUploadBytes: 100\n  uploadTypes: [image/*, text/html]\n', { maxConfigBytes: 4096 }));
  srv = await startServer({ maxUploadBytes: 1000, uploadTypes: ['image/png', 'text/plain'] }, undefined, { configs });
  alice = await srv.client();
});
afterAll(() => srv?.close());

describe("a domain's upload limits", () => {
  it('lowers the size limit and narrows the types; the deployment still bounds both', async () => {
    const count = async () => (await alice.request('GET', '/v1/scopes')).json.scopes.length;
    const before = await count();
    const big = await alice.request('POST', '/v1/uploads', { body: { type: 'image/png', size: 101 } });
    expect(big.status).toBe(413);
    expect(big.json.error).toMatchObject({ code: 'too_large', limit: 'maxUploadBytes', max: 100 });
    // text/plain: the deployment's, not the domain's; text/html: the domain's, not the deployment's; image/gif: neither list has both
    for (const type of ['text/plain', 'text/html', 'image/gif']) {
      const res = await alice.request('POST', '/v1/uploads', { body: { type } });
      expect(res.status, type).toBe(415);
      expect(res.json.error.code).toBe('unsupported_media_type');
    }
    expect(await count()).toBe(before);
    const ok = await alice.request('POST', '/v1/uploads', { body: { type: 'image/png', size: 100 } });
    expect(ok.status, ok.text).toBe(201);
    expect(await count()).toBe(before + 1);
  });

  it('refuses a configuration whose upload types are not MIME patterns', () => {
    expect(() => loadDomainConfig('limits:\n  uploadTypes: [png]\n', { maxConfigBytes: 4096 })).toThrow(/MIME/);
  });
});
