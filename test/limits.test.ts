/**
 * Rate limits, quotas and stream caps in embedded mode: the shared limits contract, and what only
 * embedded mode promises: usage is derived from the stored scopes at start, so quotas survive a
 * restart (scopes and state bytes from the stored scopes, file bytes from the stored uploads).
 */
import { cpSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { limitsContract } from './contract/limits.js';
import { request, startServer, tempDir } from './helpers/server.js';

limitsContract('embedded', (overrides) => startServer(overrides));

describe('limits (embedded only)', () => {
  it('quotas survive a restart: usage is counted again from the stored scopes', async () => {
    const cfg = { limits: 'on' as const, quotaScopes: 2, jwtSecret: 'limits-secret-limits-secret-limits!!' };
    const first = await startServer(cfg);
    const alice = await first.client();
    for (let i = 0; i < 2; i++) expect((await alice.request('POST', '/v1/scopes', { body: { state: { i } } })).status).toBe(201);
    await first.app.close();
    const dataDir = tempDir(); // the same data, reopened by a new process
    cpSync(first.dataDir, dataDir, { recursive: true });
    await first.close().catch(() => {});
    const again = await startServer({ ...cfg, dataDir });
    try {
      const res = await request(again.url, 'POST', '/v1/scopes', { body: {}, token: alice.token });
      expect(res.status).toBe(403);
      expect(res.json.error).toMatchObject({ code: 'quota_exceeded', quota: 'scopes', actual: 2 });
    } finally {
      await again.close();
    }
  });

  it('the file-bytes quota survives a restart: pending and ready uploads are counted again, expired and deleted ones are not', async () => {
    const cfg = { limits: 'on' as const, quotaFileBytes: 100, jwtSecret: 'limits-secret-limits-secret-limits!!' };
    const first = await startServer(cfg);
    const alice = await first.client();
    const upload = (c: { request: typeof alice.request }, size: number) => c.request('POST', '/v1/uploads', { body: { type: 'text/plain', size } });
    expect((await upload(alice, 50)).status).toBe(201); // pending: 50 held
    const gone = await upload(alice, 30);
    expect(gone.status).toBe(201);
    expect((await alice.request('DELETE', `/v1/scopes/${gone.json.id}`)).status).toBe(204); // its 30 given back
    await first.app.close();
    const dataDir = tempDir();
    cpSync(first.dataDir, dataDir, { recursive: true });
    await first.close().catch(() => {});
    const again = await startServer({ ...cfg, dataDir });
    try {
      const over = await request(again.url, 'POST', '/v1/uploads', { body: { type: 'text/plain', size: 51 }, token: alice.token });
      expect(over.status).toBe(403);
      expect(over.json.error).toMatchObject({ code: 'quota_exceeded', quota: 'fileBytes', actual: 50 });
      expect((await request(again.url, 'POST', '/v1/uploads', { body: { type: 'text/plain', size: 50 }, token: alice.token })).status).toBe(201);
    } finally {
      await again.close();
    }
  });
});
