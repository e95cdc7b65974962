/**
 * Rate limits, quotas and stream caps in embedded mode: the shared limits contract, and what only
 * embedded mode promises: usage is derived from the stored scopes at start, so quotas survive a
 * restart.
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
});
