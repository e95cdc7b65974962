/**
 * The Firebase Auth emulator, run in this process from the `firebase-tools` devDependency (its
 * `AuthEmulator`, what `firebase emulators:start --only auth` runs): it needs no Java and no
 * network. Used by `npm run dev:cloud` (port from firebase.json) and by the tests (a free port).
 * Starting compiles the emulator's OpenAPI router: about 6 s, several times that on a loaded
 * machine. The Admin SDK finds it through FIREBASE_AUTH_EMULATOR_HOST; its tokens are unsigned
 * (`alg: none`), which is why patchbay accepts them only for `demo-` projects
 * (shared/adapters/google/firebase-identity.ts).
 */
import { createRequire } from 'node:module';
import type { LocalService } from './emulators.js';
import { freePort, waitForPort } from './proc.js';

const MODULE = 'firebase-tools/lib/emulator/auth';

interface AuthEmulatorClass {
  new (args: { host: string; port: number; projectId: string }): { start(): Promise<void>; stop(): Promise<void> };
}

/** Whether firebase-tools is installed (it is a devDependency: absent from production installs). */
export function hasAuthEmulator(): boolean {
  try {
    createRequire(import.meta.url).resolve(MODULE);
    return true;
  } catch {
    return false;
  }
}

/** Starts the Auth emulator for `projectId` (a `demo-` project) on 127.0.0.1; resolves once it listens. */
export async function startAuthEmulator(opts: { projectId: string; port?: number }): Promise<LocalService> {
  const port = opts.port ?? (await freePort());
  const { AuthEmulator } = createRequire(import.meta.url)(MODULE) as { AuthEmulator: AuthEmulatorClass };
  const emulator = new AuthEmulator({ host: '127.0.0.1', port, projectId: opts.projectId });
  await emulator.start(); // listen() without waiting for it
  await waitForPort(port, '127.0.0.1', 30_000);
  return { host: `127.0.0.1:${port}`, port, stop: () => emulator.stop() };
}
