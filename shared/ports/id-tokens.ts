/**
 * The ID-token port: checks an OIDC ID token that Google signed for a service account (Pub/Sub
 * push, Cloud Scheduler) and returns its claims. The adapter checks what the token proves by
 * itself: Google's signature (against Google's current certificates, by key id), expiry and
 * issue time, issuer and audience. Which callers may then call what (the allow-list of emails,
 * `email_verified`) is decided in shared/http/internal-auth.ts.
 */

/** The claims of a verified token that the caller check reads. */
export interface IdTokenClaims {
  email?: string;
  emailVerified: boolean;
  subject?: string;
}

/**
 * The token is not valid for the audience. `reason` says why in a few words (`expired`, `wrong
 * audience`, `unknown key id`...) for the log, and never contains the token or its claims.
 */
export class IdTokenRejected extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(`ID token rejected: ${reason}`);
    this.name = 'IdTokenRejected';
    this.reason = reason;
  }
}

export interface IdTokenVerifier {
  /**
   * The token's claims when it is a valid Google-signed token for `audience`. Throws
   * IdTokenRejected when it is not; any other error means the check could not be made (Google's
   * certificates could not be fetched) and says nothing about the token.
   */
  verify(token: string, audience: string): Promise<IdTokenClaims>;
}
