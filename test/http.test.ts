/**
 * The v1 contract (BRIEF §3) over a real socket, embedded stack. The same suite runs against the
 * Google stack on the emulators in google.emulator.test.ts. So does the sharing contract (who may
 * read and write a scope, and access changes reaching open streams) and the listing contract (a
 * user's scopes, `GET /v1/scopes`).
 */
import { rmSync } from 'node:fs';
import { configContract, failingPutOnce } from './contract/config.js';
import { httpContract } from './contract/http.js';
import { listingContract } from './contract/listing.js';
import { sharingContract } from './contract/sharing.js';
import { webhooksContract } from './contract/webhooks.js';
import { startServer, tempDir } from './helpers/server.js';

httpContract('embedded', (overrides) => startServer(overrides));
sharingContract('embedded', (overrides) => startServer(overrides));
listingContract('embedded', (overrides) => startServer(overrides));
configContract('embedded', async (opts = {}) => {
  const srv = await startServer({ domainCacheMs: 0 }, undefined, { deliverLocally: true, wrap: failingPutOnce(opts.failRecordPutsOnce) });
  return { srv, close: () => srv.close() };
});
// A restart is a new server on the same data directory: its delivery catches up from the cursors.
webhooksContract('embedded', async (overrides) => {
  const dataDir = tempDir();
  const start = () => startServer({ ...overrides, dataDir }, undefined, { deliverLocally: true });
  const h = {
    srv: await start(),
    async restart(whileDown?: () => void) {
      await h.srv.close();
      whileDown?.();
      h.srv = await start();
    },
    async close() {
      await h.srv.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return h;
});
