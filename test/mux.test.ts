/**
 * Many scopes on one connection and long polling, embedded stack (test/contract/mux.ts; the same
 * suite runs on the Google stack in google.emulator.test.ts).
 */
import { muxContract } from './contract/mux.js';
import { startServer } from './helpers/server.js';

muxContract('embedded', (overrides) => startServer(overrides));
