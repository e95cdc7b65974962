/**
 * Cold storage in embedded mode (guarantee 6: cold storage plus the log tail reproduce every
 * acknowledged patch; bundling and trimming never lose one): the shared cold-storage contract
 * on SQLite and a local directory.
 */
import { coldContract } from './contract/cold.js';
import { startServer } from './helpers/server.js';

coldContract('embedded', (overrides) => startServer(overrides));
