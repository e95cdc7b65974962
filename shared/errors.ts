/**
 * One error type with a closed set of codes. Every failure the service reports to a client
 * is a PatchbayError; the HTTP status of each code is decided here and nowhere else.
 */

/** Each code, its HTTP status, and when it is used. */
export const ERROR_CODES = {
  /** The request's shape is wrong (zod issues in `issues`), or a value breaks a syntactic rule. */
  invalid_request: 400,
  /** No credential, or a credential that does not verify. */
  unauthorized: 401,
  /** The credential is valid but does not allow this call on this scope. */
  forbidden: 403,
  /** No route matches the path. */
  not_found: 404,
  /** The scope does not exist. */
  scope_not_found: 404,
  /** The caller has no claim of this domain (`domain`): none was started, or it finished long ago. */
  claim_not_found: 404,
  /** No open or closed session of the caller has this id (a stranger's session is not found either). */
  session_not_found: 404,
  /** The route exists but not with this method. */
  method_not_allowed: 405,
  /** A scope with this id already exists. */
  scope_exists: 409,
  /** The owner already has a scope of this name in this domain (`name`, `domain`); nothing was changed. */
  name_taken: 409,
  /** The patch's `ii` is ahead of head+1: the client missed patches and must replay (`expected`). */
  replay_required: 409,
  /** The patch's `ii` is at or below head and it is not a retry of an accepted patch (`head`). */
  out_of_sync: 409,
  /** A `(session, si)` pair that was already accepted came back with a different patch. */
  duplicate_mismatch: 409,
  /** A domain configuration upload names a version that is no longer the latest (`latest`): read it, then upload again. */
  version_conflict: 409,
  /** The session is closed (or closing): it takes no more heartbeats, guarantees, presence or writes. */
  session_closed: 409,
  /** An upload has no file yet (`complete` before the PUT), or a download asks for one that is not `ready` (`status`). */
  upload_incomplete: 409,
  /** The request body did not arrive in time (`timeoutMs`). */
  request_timeout: 408,
  /** A size or count limit was exceeded (`limit`, `max`, `actual`). */
  too_large: 413,
  /** The body is not `application/json`; or an upload's MIME type is not one PATCHBAY_UPLOAD_TYPES allows. */
  unsupported_media_type: 415,
  /**
   * A domain configuration does not parse or breaks its schema (`issues`: each with `path`, `line`
   * and `column`, 1-based, and `message`); nothing was changed.
   */
  invalid_config: 400,
  /** An operation of the patch cannot be applied (`op` is its index); nothing was changed. */
  patch_failed: 422,
  /**
   * The scope's state (initial, or after the patch) does not satisfy the JSON Schema its domain's
   * configuration gives its type (`type`, and the first error's `instancePath`, `schemaPath` and
   * `keyword`); nothing was changed.
   */
  validation_failed: 422,
  /**
   * A rate limit or a stream cap was hit (`limit`, `retryAfter` seconds, also sent as `Retry-After`);
   * nothing was done. Retry after that long.
   */
  rate_limited: 429,
  /**
   * A per-user quota is used up (`quota`: `scopes` or `bytes`, `max`, `actual`); nothing was done.
   * Waiting does not help: it lasts until the quota is raised or the user stores less, which a
   * user over the bytes quota can do: patches of only `remove` and `test` operations are accepted.
   */
  quota_exceeded: 403,
  /** No named query of that name that the caller's domain may run (shared/mirror/queries.ts). */
  unknown_query: 404,
  /** A named query's parameters are missing, unknown, reserved (`REQUESTER`, `DOMAIN`) or of the wrong type (`param`). */
  invalid_params: 400,
  /** A named query failed in the database (`pgCode`: the SQLSTATE); the database's message is not passed on. */
  query_failed: 422,
  /** A named query ran past its statement timeout (PATCHBAY_MIRROR_QUERY_TIMEOUT_MS). */
  query_timeout: 504,
  /** A dependency (ledger, cache, bus) failed; the request may be retried. */
  unavailable: 503,
  /** A bug. */
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class PatchbayError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'PatchbayError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_CODES[this.code];
  }

  /** The wire form: `{"error": {"code", "message", ...details}}`. */
  toBody(): { error: Record<string, unknown> } {
    return { error: { ...this.details, code: this.code, message: this.message } };
  }
}

/**
 * Whether an error came from a backend and a retry may cure it: a gRPC status (Firestore, Pub/Sub),
 * a network error (ECONNREFUSED, ETIMEDOUT, a failed or aborted fetch: Upstash, Cloud Storage), or
 * a busy or failing SQLite file.
 */
export function isBackendError(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 3) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'number' && code >= 1 && code <= 16) return true;
  if (typeof code === 'string' && (/^E[A-Z]+$/.test(code) || /^SQLITE_(BUSY|LOCKED|IOERR|FULL)/.test(code))) return true;
  if (err.name === 'UpstashError' || err.name === 'AbortError' || err.name === 'TimeoutError') return true;
  if (err instanceof TypeError && err.message === 'fetch failed') return true;
  return isBackendError((err as { cause?: unknown }).cause, depth + 1);
}

/**
 * Any thrown value as a PatchbayError, without leaking its text: backend failures become
 * `unavailable` (503, retry), anything else `internal` (500, a bug).
 */
export function asPatchbayError(err: unknown): PatchbayError {
  if (err instanceof PatchbayError) return err;
  if (isBackendError(err)) return new PatchbayError('unavailable', 'a backend is unavailable; retry');
  return new PatchbayError('internal', 'internal error');
}
