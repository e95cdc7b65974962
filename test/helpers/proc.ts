/**
 * Process helpers for tests that need real local services (redis-server, the gcloud emulators):
 * the rule for a missing tool (skip the file locally, fail it when CI is set), and the spawning
 * helpers shared with `npm run dev:cloud` (infra/local/proc.ts).
 */
import { hasTool } from '../../infra/local/proc.js';

export { freePort, hasTool, listening, spawnService, waitForPort } from '../../infra/local/proc.js';

/**
 * For `describe.skipIf(...)`: true when the tool is missing and we are not in CI. In CI a missing
 * tool throws, so the run fails instead of silently testing less.
 */
export function skipWithout(cmd: string, what = cmd): boolean {
  if (hasTool(cmd)) return false;
  if (process.env.CI) throw new Error(`${what} is required in CI but ${cmd} was not found`);
  console.warn(`skipping: ${what} not found (${cmd})`);
  return true;
}
