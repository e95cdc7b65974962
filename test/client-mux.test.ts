/**
 * The client's shared connection through a real proxy, embedded stack (test/contract/client-mux.ts;
 * the same suite runs on the Google stack in google.emulator.test.ts).
 */
import { clientMuxContract } from './contract/client-mux.js';
import { startServer } from './helpers/server.js';

clientMuxContract('embedded', (overrides) => startServer(overrides));
