/**
 * Port: the identity provider of end users (Firebase Authentication), whose sign-in tokens are
 * accepted as bearer tokens (not the OIDC tokens of service accounts calling internal
 * endpoints). An adapter verifies a token for the one project it was configured with and answers
 * who it names; the HTTP layer (shared/http/auth.ts) decides which tokens go to it, remembers the
 * verified ones and turns them into users.
 */

/** What an identity token says about its user, for profiles and access rules. Every field is optional. */
export interface Profile {
  name?: string;
  email?: string;
  emailVerified?: boolean;
  picture?: string;
  /** How the user signed in, e.g. `google.com`, `password`, `anonymous`. */
  provider?: string;
}

export interface VerifiedIdentity {
  /** The provider's stable user id (Firebase: the uid). */
  uid: string;
  /** Expiry, seconds since the epoch. */
  exp: number;
  profile: Profile;
}

export interface IdentityProvider {
  /** The issuer (`iss`) of the tokens this verifier accepts: the cheap first test of a bearer token. */
  readonly issuer: string;
  /**
   * Verifies the token's signature, issuer, audience, expiry and subject; throws (any error) if
   * it does not verify. Must not accept an unsigned token unless the adapter was configured for an
   * emulator.
   */
  verify(token: string): Promise<VerifiedIdentity>;
  close(): Promise<void>;
}
