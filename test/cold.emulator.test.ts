/**
 * Cold storage on the Google stack (guarantee 6: cold storage plus the log tail reproduce every
 * acknowledged patch; bundling and trimming never lose one): the shared cold-storage contract on
 * the real Firestore emulator (ledger: pointers, fenced transactions, chunked trims that delete
 * retry documents too) and the project's Cloud Storage server through the real
 * @google-cloud/storage client (bundles and snapshots), with Redis behind the Upstash gateway
 * as the hot cache.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { coldContract } from './contract/cold.js';
import { type GoogleStack, startGoogleStack } from './helpers/google.js';
import { skipWithout } from './helpers/proc.js';
import { startServer } from './helpers/server.js';

const skip = skipWithout('gcloud', 'the Firestore and Pub/Sub emulators') || skipWithout('redis-server');

describe.skipIf(skip)('cold storage on the Google stack', () => {
  let stack: GoogleStack;
  beforeAll(async () => {
    stack = await startGoogleStack();
  }, 180_000);
  afterAll(() => stack?.stop());

  // Every crash point after its step, and the first of each kind before it: the emulator is slow.
  coldContract('google', (overrides) => startServer({ ...stack.config(), ...overrides }), { crashes: 'lean' });
});
