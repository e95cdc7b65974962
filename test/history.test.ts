/** A scope's state at a past index (`GET /v1/scopes/{id}/at/{ii}`) on the embedded stack: test/contract/state-at.ts. */
import { stateAtContract } from './contract/state-at.js';
import { startServer } from './helpers/server.js';

stateAtContract('embedded', (overrides) => startServer(overrides));
