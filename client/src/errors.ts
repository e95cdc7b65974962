/**
 * The client's one error type: what the server answered (`code` from the server's closed table,
 * shared/errors.ts, with its `status` and details), or one of the client's own codes for what
 * never reached an answer (`network_error`), was given up (`closed`), or a storage adapter that
 * failed (`storage_error`, ./offline.ts), or a file the storage or the
 * server refused after the upload started (`upload_failed`, ./uploads.ts).
 */
import type { ErrorCode } from '../../shared/errors.js';

export type ClientErrorCode = ErrorCode | 'network_error' | 'closed' | 'storage_error' | 'upload_failed';

export class PatchbayClientError extends Error {
  /** The server's error code, or the client's own (`network_error`, `closed`, `storage_error`, `upload_failed`). */
  readonly code: ClientErrorCode;
  /** The HTTP status, or 0 when no answer arrived. */
  readonly status: number;
  /** The server's details (`op` for patch_failed, `head` for out_of_sync, `expected`, `limit`...). */
  readonly details: Record<string, unknown>;

  constructor(code: ClientErrorCode, message: string, status = 0, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'PatchbayClientError';
    this.code = code;
    this.status = status;
    this.details = details;
  }

  /** Whether sending the same request again may succeed (no answer, a 5xx, a rate limit or timeout). */
  get retryable(): boolean {
    return this.code === 'network_error' || this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/** The error a non-2xx answer carries (`{"error": {code, message, ...details}}`), or a generic one. */
export async function errorFrom(res: Response): Promise<PatchbayClientError> {
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const error = (body as { error?: Record<string, unknown> } | undefined)?.error;
  if (error && typeof error.code === 'string') return errorOf(error as ServerError, res.status);
  return new PatchbayClientError(res.status >= 500 ? 'unavailable' : 'invalid_request', `HTTP ${res.status}`, res.status);
}

/** The server's error object (`{code, message, ...details}`), as the answer's body or a batch item's or a stream event's `error` carries it. */
export type ServerError = { code: string; message?: unknown } & Record<string, unknown>;

/** The PatchbayClientError of a server error object, with `status` (the answer's, or what the caller knows). */
export function errorOf(error: ServerError, status: number): PatchbayClientError {
  const { code, message, ...details } = error;
  return new PatchbayClientError(code as ErrorCode, typeof message === 'string' ? message : code, status, details);
}
