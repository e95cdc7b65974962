/**
 * The v1 contract (BRIEF §3) over a real socket, embedded stack. The same suite runs against the
 * Google stack on the emulators in google.emulator.test.ts.
 */
import { httpContract } from './contract/http.js';
import { startServer } from './helpers/server.js';

httpContract('embedded', (overrides) => startServer(overrides));
