/**
 * Builds dist/ once, so tests that spawn the real server process (`npm start`'s entry) run current
 * code. Type errors do not stop the build here (tsc still emits, and `npm test` runs the
 * typecheck before vitest); any other tsc failure does.
 */
import { spawnSync } from 'node:child_process';

export default function setup(): void {
  const r = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { encoding: 'utf8' });
  if (r.status === 0) return;
  if (r.status === 2 && /error TS/.test(r.stdout)) {
    console.warn(`tsc reported type errors (npm test's typecheck step fails on them):\n${r.stdout}`);
    return;
  }
  throw new Error(`tsc failed (${r.status}): ${r.stdout}${r.stderr}`);
}
