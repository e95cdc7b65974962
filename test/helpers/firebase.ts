/**
 * The Firebase Auth emulator for one test file (infra/local/auth-emulator.ts, on a free port), and
 * real tokens minted on it: sign-ups with email and password over its REST API, and users with a
 * full profile (name, verified email, picture) signed in with a custom token that firebase-admin
 * makes for them. Sets FIREBASE_AUTH_EMULATOR_HOST for this test process (vitest runs each file in
 * its own process), as the Admin SDK reads only the environment.
 */
import { deleteApp, initializeApp } from 'firebase-admin/app';
import { getAuth } from 'firebase-admin/auth';
import { hasAuthEmulator, startAuthEmulator } from '../../infra/local/auth-emulator.js';
import type { Config } from '../../shared/config.js';

export interface Minted {
  idToken: string;
  uid: string;
}

export interface FirebaseEmulator {
  projectId: string;
  /** `127.0.0.1:PORT`. */
  host: string;
  /** The settings of a server that accepts this emulator's tokens. */
  config(): Partial<Config>;
  /** A new email/password user (provider `password`) and its ID token. */
  signUp(user: { email: string; password: string; displayName?: string }): Promise<Minted>;
  /** A fresh ID token of an existing email/password user. */
  signIn(user: { email: string; password: string }): Promise<Minted>;
  /** A new user with this profile, signed in with a custom token (provider `custom`). */
  withProfile(user: { uid: string; displayName: string; email: string; photoURL: string }): Promise<Minted>;
  stop(): Promise<void>;
}

/** For `describe.skipIf(...)`, with test/helpers/proc.ts's rule: skip locally without firebase-tools, fail in CI. */
export function skipWithoutFirebase(): boolean {
  if (hasAuthEmulator()) return false;
  if (process.env.CI) throw new Error('the Firebase Auth emulator is required in CI but firebase-tools is not installed');
  console.warn('skipping: the Firebase Auth emulator (firebase-tools) is not installed');
  return true;
}

/** An emulator token (unsigned) with some claims or header fields changed: what a forger would send. */
export function forge(token: string, claims: Record<string, unknown>, header: Record<string, unknown> = {}, signature = ''): string {
  const [h, p] = token.split('.') as [string, string];
  const part = (b64: string, changes: Record<string, unknown>) =>
    Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(b64, 'base64url').toString()), ...changes })).toString('base64url');
  return `${part(h, header)}.${part(p, claims)}.${signature}`;
}

export async function startFirebaseEmulator(projectId = `demo-patchbay-auth-${process.pid}`): Promise<FirebaseEmulator> {
  const emulator = await startAuthEmulator({ projectId });
  process.env.FIREBASE_AUTH_EMULATOR_HOST = emulator.host;
  const admin = initializeApp({ projectId }, `test-${projectId}`);
  const rest = async (method: string, body: unknown): Promise<Minted> => {
    const res = await fetch(`http://${emulator.host}/identitytoolkit.googleapis.com/v1/accounts:${method}?key=any`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...(body as object), returnSecureToken: true }),
    });
    const json = (await res.json()) as { idToken?: string; localId?: string; error?: unknown };
    if (!res.ok || !json.idToken) throw new Error(`accounts:${method} failed: ${res.status} ${JSON.stringify(json)}`);
    const uid = json.localId ?? (JSON.parse(Buffer.from(json.idToken.split('.')[1] as string, 'base64url').toString()).sub as string);
    return { idToken: json.idToken, uid };
  };
  return {
    projectId,
    host: emulator.host,
    config: () => ({ firebaseProject: projectId, firebaseAuthEmulatorHost: emulator.host }),
    signUp: (user) => rest('signUp', user),
    signIn: (user) => rest('signInWithPassword', user),
    async withProfile(user) {
      await getAuth(admin).createUser({ ...user, emailVerified: true });
      const token = await getAuth(admin).createCustomToken(user.uid); // unsigned in emulator mode
      return rest('signInWithCustomToken', { token });
    },
    async stop() {
      await deleteApp(admin);
      await emulator.stop();
    },
  };
}
