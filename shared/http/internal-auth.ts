/**
 * Who may call the internal endpoints: the `push` function (Pub/Sub push deliveries), the
 * scheduled `sweep` and `bundle` functions, and any later Cloud Scheduler target. IAM lets only
 * their invokers in; this is the second line behind it, so a mistaken IAM binding (say `allUsers`)
 * does not open them.
 *
 * With PATCHBAY_OIDC on, a request must carry `Authorization: Bearer <OIDC ID token>` that Google
 * signed (checked by the ID-token port) for the audience `<PATCHBAY_OIDC_AUDIENCE>/<endpoint>`
 * (`push/<consumer>`, `sweep`, `bundle`: what Pub/Sub and Cloud Scheduler put in `aud` by default
 * for those URLs), for an email in PATCHBAY_OIDC_EMAILS that the token says is verified.
 * Anything else is refused with 401 `unauthorized` before the request is read or acted on
 * (guarantee 3: nothing processed, a push consumer's cursor unchanged). The refusal's reason goes
 * to the request log line (WARNING), never the token. The endpoint is judged from the consumer
 * name in the path before the consumer is looked up, so a stranger learns nothing about which
 * consumers exist.
 */
import type { IncomingMessage } from 'node:http';
import type { OidcConfig } from '../config.js';
import { PatchbayError } from '../errors.js';
import type { Logger } from '../log.js';
import { IdTokenRejected, type IdTokenVerifier } from '../ports/id-tokens.js';

/** A refusal of an internal call: 401 `unauthorized`, with the reason for the log only. */
export class CallerRefused extends PatchbayError {
  readonly reason: string;
  constructor(reason: string) {
    super('unauthorized', 'this endpoint needs a Google-signed OIDC token for it, from an allowed service account');
    this.reason = reason;
  }
}

/** The log fields of a failure: the reason of a refused caller. */
export function refusalFields(err: unknown): { reason?: string } {
  return err instanceof CallerRefused ? { reason: err.reason } : {};
}

export class InternalAuth {
  private readonly emails: Set<string>;

  /** `verifier` is null exactly when PATCHBAY_OIDC is off. */
  constructor(
    private readonly verifier: IdTokenVerifier | null,
    private readonly config: Pick<OidcConfig, 'oidcAudience' | 'oidcEmails'>,
    private readonly logger: Pick<Logger, 'error'>,
  ) {
    this.emails = new Set(config.oidcEmails.map((e) => e.toLowerCase()));
  }

  /** The audience a token for `endpoint` (`push/<consumer>`, `sweep`, `bundle`) must name. */
  audience(endpoint: string): string {
    return `${this.config.oidcAudience}/${endpoint}`;
  }

  /**
   * Resolves with the caller's email (null when the check is off); throws CallerRefused (401) for
   * a missing or refused token, and `unavailable` (503, so Pub/Sub and Cloud Scheduler retry)
   * when Google's certificates cannot be fetched.
   */
  async check(req: IncomingMessage, endpoint: string): Promise<string | null> {
    if (this.verifier === null) return null;
    const m = /^Bearer +([A-Za-z0-9_.~+/=-]+) *$/i.exec(req.headers.authorization ?? '');
    if (!m) throw new CallerRefused(req.headers.authorization === undefined ? 'no token' : 'not a bearer token');
    let claims: Awaited<ReturnType<IdTokenVerifier['verify']>>;
    try {
      claims = await this.verifier.verify(m[1] as string, this.audience(endpoint));
    } catch (err) {
      if (err instanceof IdTokenRejected) throw new CallerRefused(err.reason);
      this.logger.error({ message: 'OIDC check failed: cannot fetch Google certificates', endpoint, err: err instanceof Error ? err.message : String(err) });
      throw new PatchbayError('unavailable', 'the caller cannot be checked now; retry');
    }
    const email = claims.email?.toLowerCase();
    if (email === undefined || !this.emails.has(email)) throw new CallerRefused(`email not allowed: ${email ?? 'none'}`);
    if (!claims.emailVerified) throw new CallerRefused(`email not verified: ${email}`);
    return email;
  }
}
