/**
 * The Postgres mirror passes the Mirror conformance suite against a real, private Postgres
 * cluster this file starts (initdb in a temp directory, a free port; stopped after). Without
 * Postgres installed the file is skipped with a warning, except under CI, where it fails.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { PostgresMirror } from '../shared/adapters/google/postgres-mirror.js';
import { mirrorConformance } from './conformance/mirror.js';
import { type LocalPostgres, noPostgres, startPostgres } from './helpers/postgres.js';

describe.skipIf(noPostgres())('PostgresMirror on a private cluster', () => {
  let pg: LocalPostgres | undefined;
  let mirror: PostgresMirror | undefined;
  beforeAll(async () => {
    pg = await startPostgres();
    mirror = new PostgresMirror({ url: pg.url });
  }, 120_000);
  afterAll(async () => {
    await mirror?.close();
    await pg?.stop();
  });
  mirrorConformance('PostgresMirror', async () => mirror as PostgresMirror, { interruptsQueries: true });
});
