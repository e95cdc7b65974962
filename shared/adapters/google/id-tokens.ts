/**
 * The ID-token port on google-auth-library: Google's own verification of the OIDC tokens that
 * Pub/Sub push and Cloud Scheduler attach. Certificates come from PATCHBAY_OIDC_CERTS_URL
 * (Google's PEM certificates by key id) and are cached as long as that answer's
 * `Cache-Control: max-age` says; the token's signature, `iat`/`exp` (5 minutes of clock skew, at
 * most a day ahead), issuer (`accounts.google.com`, with or without `https://`) and audience are
 * checked by the library.
 */
import { OAuth2Client, type TokenPayload } from 'google-auth-library';
import { type IdTokenClaims, IdTokenRejected, type IdTokenVerifier } from '../../ports/id-tokens.js';

/** The issuers of Google-signed ID tokens. */
export const GOOGLE_ISSUERS = ['https://accounts.google.com', 'accounts.google.com'];

/**
 * The library's refusals, by the start of their message, in words fit for a log: its messages
 * themselves quote the token or its payload, which must never be logged.
 */
const REASONS: Array<[string, string]> = [
  ['Wrong number of segments', 'malformed token'],
  ["Can't parse token", 'malformed token'],
  ['No pem found', 'unknown key id'],
  ['Invalid token signature', 'bad signature'],
  ['No issue time', 'no iat'],
  ['No expiration time', 'no exp'],
  ['iat field', 'bad iat'],
  ['exp field', 'bad exp'],
  ['Expiration time too far in future', 'exp too far ahead'],
  ['Token used too early', 'not yet valid'],
  ['Token used too late', 'expired'],
  ['Invalid issuer', 'wrong issuer'],
  ['Wrong recipient', 'wrong audience'],
];

function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : '';
  return REASONS.find(([start]) => message.startsWith(start))?.[1] ?? 'invalid token';
}

export class GoogleIdTokens implements IdTokenVerifier {
  private readonly client: OAuth2Client;

  constructor(certsUrl: string) {
    this.client = new OAuth2Client({ endpoints: { oauth2FederatedSignonPemCertsUrl: certsUrl } });
  }

  async verify(token: string, audience: string): Promise<IdTokenClaims> {
    // Fetched (or taken from the cache) apart from the check, so a fetch failure is not taken
    // for a bad token.
    const { certs } = await this.client.getFederatedSignonCertsAsync();
    let payload: TokenPayload | undefined;
    try {
      payload = (await this.client.verifySignedJwtWithCertsAsync(token, certs, audience, GOOGLE_ISSUERS)).getPayload();
    } catch (err) {
      throw new IdTokenRejected(reasonOf(err));
    }
    if (!payload) throw new IdTokenRejected('no payload');
    return { email: payload.email, emailVerified: payload.email_verified === true, subject: payload.sub };
  }
}
