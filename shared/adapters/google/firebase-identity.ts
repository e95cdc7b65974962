/**
 * Firebase ID tokens (any sign-in provider the Firebase project enables), verified with the Admin
 * SDK (`firebase-admin`) for one Firebase project: RS256 signature against Google's published
 * keys, `aud` = the project, `iss` = https://securetoken.google.com/<project>, expiry, subject.
 *
 * Emulator safety. The Admin SDK switches itself into emulator mode whenever the environment has
 * FIREBASE_AUTH_EMULATOR_HOST, and then checks no signature at all (the Auth emulator's tokens
 * are `alg: none`), so anyone could mint any user. Three locks keep that out of a real deployment:
 * 1. loadConfig accepts FIREBASE_AUTH_EMULATOR_HOST only with a `demo-` project (Firebase's
 *    emulator-only project ids, which real Firebase never issues tokens for), and this adapter
 *    checks the same again;
 * 2. without a configured emulator, a token whose header is not RS256 is refused here, before
 *    the SDK sees it;
 * 3. without a configured emulator, every Firebase token is refused while the variable is in the
 *    environment (it could appear after start: the SDK reads it on every call).
 */
import { randomUUID } from 'node:crypto';
import { type App, deleteApp, initializeApp } from 'firebase-admin/app';
import { type Auth, getAuth } from 'firebase-admin/auth';
import { decodeProtectedHeader } from 'jose';
import { ConfigError } from '../../config.js';
import type { IdentityProvider, Profile, VerifiedIdentity } from '../../ports/identity.js';

const ENV = 'FIREBASE_AUTH_EMULATOR_HOST';

export interface FirebaseTokensOptions {
  projectId: string;
  /** host:port of the Auth emulator ('' for real Firebase). Only with a `demo-` project. */
  emulatorHost: string;
}

export class FirebaseIdentity implements IdentityProvider {
  readonly issuer: string;
  private readonly app: App;
  private readonly auth: Auth;
  private readonly emulator: boolean;

  constructor(opts: FirebaseTokensOptions) {
    this.emulator = opts.emulatorHost !== '';
    if (this.emulator && !opts.projectId.startsWith('demo-')) {
      throw new ConfigError(`${ENV} is set: the Auth emulator is allowed only with a demo- Firebase project, not ${opts.projectId}`);
    }
    const inEnv = process.env[ENV] ?? '';
    if (this.emulator && inEnv === '')
      process.env[ENV] = opts.emulatorHost; // the SDK reads only the environment
    else if (inEnv !== opts.emulatorHost) {
      throw new ConfigError(`${ENV} is ${JSON.stringify(inEnv)} in the environment but ${JSON.stringify(opts.emulatorHost)} in the configuration`);
    }
    this.issuer = `https://securetoken.google.com/${opts.projectId}`;
    this.app = initializeApp({ projectId: opts.projectId }, `patchbay-${randomUUID()}`);
    this.auth = getAuth(this.app);
  }

  async verify(token: string): Promise<VerifiedIdentity> {
    if (!this.emulator) {
      const { alg } = decodeProtectedHeader(token);
      if (alg !== 'RS256') throw new Error(`a Firebase ID token is signed with RS256, not ${String(alg)}`);
      if (process.env[ENV]) throw new Error(`${ENV} is in the environment but no emulator is configured: Firebase tokens are refused`);
    }
    const t = await this.auth.verifyIdToken(token);
    const profile: Profile = {};
    if (typeof t.name === 'string') profile.name = t.name;
    if (typeof t.email === 'string') profile.email = t.email;
    if (typeof t.email_verified === 'boolean') profile.emailVerified = t.email_verified;
    if (typeof t.picture === 'string') profile.picture = t.picture;
    if (typeof t.firebase?.sign_in_provider === 'string') profile.provider = t.firebase.sign_in_provider;
    return { uid: t.uid, exp: t.exp, profile };
  }

  close(): Promise<void> {
    return deleteApp(this.app);
  }
}
