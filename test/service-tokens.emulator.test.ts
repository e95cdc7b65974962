/**
 * Service identities and per-domain CORS on the Google stack (Firestore, Pub/Sub, Redis through
 * the Upstash gateway, the Cloud Storage server): the same contract as embedded mode
 * (test/contract/service-tokens.ts), token and domain records in Firestore. With two instances
 * on one namespace, a token revoked through one is refused by the other within
 * PATCHBAY_SERVICE_TOKEN_CHECK_MS.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { serviceTokensContract } from './contract/service-tokens.js';
import { type GoogleStack, startGoogleStack } from './helpers/google.js';
import { skipWithout } from './helpers/proc.js';
import { startServer } from './helpers/server.js';

const skip = skipWithout('gcloud', 'the Firestore and Pub/Sub emulators') || skipWithout('redis-server');

describe.skipIf(skip)('service tokens on the Google stack', () => {
  let stack: GoogleStack;
  beforeAll(async () => {
    stack = await startGoogleStack();
  }, 180_000);
  afterAll(() => stack?.stop());

  serviceTokensContract(
    'google',
    (overrides) => startServer({ ...stack.config(), ...overrides }),
    async () => {
      const shared = { ...stack.config(), serviceTokenCheckMs: 1500 };
      return [await startServer(shared), await startServer(shared)];
    },
  );
});
