/**
 * The v1 contract (BRIEF §3) over a real socket, embedded stack. The same suite runs against the
 * Google stack on the emulators in google.emulator.test.ts. So does the sharing contract (who may
 * read and write a scope, and access changes reaching open streams), the listing contract (a
 * user's scopes, `GET /v1/scopes`), the validation contract (a domain's schemas, checked in
 * the commit), the configuration contract (versions and their apply) the deletion contract
 * (`DELETE /v1/scopes/{id}`, its purge and its crash safety) and the named scopes contract
 * (`/v1/names/{name}`, renames), and the tags contract (`/v1/scopes/{id}/tags`, `/v1/tags`).
 */
import { rmSync } from 'node:fs';
import { configContract, failingPutOnce } from './contract/config.js';
import { deletionContract } from './contract/deletion.js';
import { httpContract } from './contract/http.js';
import { listingContract } from './contract/listing.js';
import { namesContract } from './contract/names.js';
import { sessionsContract } from './contract/sessions.js';
import { sharingContract } from './contract/sharing.js';
import { tagsContract } from './contract/tags.js';
import { uploadsContract } from './contract/uploads.js';
import { validationContract } from './contract/validation.js';
import { webhooksContract } from './contract/webhooks.js';
import { startServer, tempDir } from './helpers/server.js';

httpContract('embedded', (overrides) => startServer(overrides));
sharingContract('embedded', (overrides) => startServer(overrides));
listingContract('embedded', (overrides) => startServer(overrides));
configContract('embedded', async (opts = {}) => {
  const srv = await startServer({ domainCacheMs: 0 }, undefined, { deliverLocally: true, wrap: failingPutOnce(opts.failRecordPutsOnce) });
  return { srv, close: () => srv.close() };
});
validationContract('embedded', (opts) => startServer({}, undefined, opts));
deletionContract('embedded', (overrides, opts) => startServer(overrides, undefined, opts));
namesContract('embedded', (overrides) => startServer(overrides));
tagsContract('embedded', (overrides) => startServer(overrides));
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

// One process holds presence embedded (the peer is the server itself); a restart is a new server on the same data directory.
sessionsContract('embedded', async (overrides) => {
  const dataDir = tempDir();
  const start = () => startServer({ ...overrides, dataDir }, undefined, { deliverLocally: true });
  const h = {
    srv: await start(),
    get peer() {
      return h.srv;
    },
    async restart() {
      await h.srv.close();
      h.srv = await start();
    },
    async close() {
      await h.srv.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return h;
});
// Embedded uploads land when the signed PUT completes: nothing more to do.
uploadsContract('embedded', { start: (overrides) => startServer(overrides), land: async () => {} });
