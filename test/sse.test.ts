/**
 * SSE (BRIEF §3, guarantee 4) with a real EventSource client, embedded stack. The same suite runs
 * against the Google stack on the emulators in google.emulator.test.ts.
 */
import { sseContract } from './contract/sse.js';
import { startServer } from './helpers/server.js';

sseContract('embedded', (overrides) => startServer(overrides));
