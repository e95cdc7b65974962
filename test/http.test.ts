/**
 * The v1 contract (BRIEF §3) over a real socket, embedded stack. The same suite runs against the
 * Google stack on the emulators in google.emulator.test.ts. So does the sharing contract (who may
 * read and write a scope, and access changes reaching open streams) and the listing contract (a
 * user's scopes, `GET /v1/scopes`), and the named scopes contract (`/v1/names/{name}`, renames).
 */
import { httpContract } from './contract/http.js';
import { listingContract } from './contract/listing.js';
import { namesContract } from './contract/names.js';
import { sharingContract } from './contract/sharing.js';
import { startServer } from './helpers/server.js';

httpContract('embedded', (overrides) => startServer(overrides));
sharingContract('embedded', (overrides) => startServer(overrides));
listingContract('embedded', (overrides) => startServer(overrides));
namesContract('embedded', (overrides) => startServer(overrides));
