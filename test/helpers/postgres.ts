/**
 * A private Postgres cluster per test file (infra/local/postgres.ts). A missing Postgres skips the
 * file locally and fails it in CI, as for every local service: `describe.skipIf(noPostgres())(...)`.
 */
import { postgresBin } from '../../infra/local/postgres.js';

export { type LocalPostgres, startPostgres } from '../../infra/local/postgres.js';

/** True when the file should be skipped (no initdb/pg_ctl, outside CI); throws in CI. */
export function noPostgres(): boolean {
  if (postgresBin('initdb') && postgresBin('pg_ctl')) return false;
  if (process.env.CI) throw new Error('postgres (initdb, pg_ctl) is required in CI but was not found');
  console.warn('skipping: postgres not found (initdb, pg_ctl; apt-get install postgresql)');
  return true;
}
