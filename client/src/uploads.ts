/**
 * Uploads (docs/uploads-and-sessions.md): a file goes straight to storage through a signed URL,
 * never through the API. `upload` starts one (`POST /v1/uploads` with the type, name and size),
 * PUTs the bytes to the URL with exactly the headers the server signed (Content-Type, and on
 * Google `x-goog-content-length-range`) and no bearer token (the URL is the credential; it may
 * be another origin), then asks the server to settle it (`POST /v1/uploads/{id}/complete`, which
 * is how it becomes `ready` where no storage notification arrives), and answers the upload
 * scope's state. A file the storage took but the server refused on landing (a size or type other
 * than declared) is `upload_failed` with the state's `error`; the PUT's own refusal (an expired
 * URL, a size over the limit) is `upload_failed` too, with the storage's HTTP status.
 */
import { PatchbayClientError } from './errors.js';
import type { Transport } from './http.js';
import { backoff } from './stream.js';

/** An upload scope's state (its `status` moves from `pending` to `ready`, `failed` or `expired`). */
export interface UploadState {
  status: 'pending' | 'ready' | 'failed' | 'expired';
  name: string | null;
  type: string;
  size: number | null;
  md5: string | null;
  /** Why it failed: `too_large`, `size_mismatch`, `type_mismatch`, `md5_mismatch`. */
  error: string | null;
  [key: string]: unknown;
}

export interface UploadOptions {
  /** The file's name, kept in the upload's state. */
  name?: string;
  /** Its MIME type: default the Blob's own type; required for bytes. */
  type?: string;
  /** Cancels the upload's requests (the upload then stays `pending` and expires on the server). */
  signal?: AbortSignal;
}

interface Started {
  id: string;
  url: string;
  method: string;
  headers: Record<string, string>;
}

/** How many times `complete` is asked again while the storage has not shown the object yet. */
const COMPLETE_TRIES = 6;

export async function upload(
  transport: Transport,
  data: Blob | ArrayBuffer | Uint8Array,
  opts: UploadOptions = {},
): Promise<{ id: string; state: UploadState }> {
  const type = opts.type ?? (data instanceof Blob && data.type !== '' ? data.type : undefined);
  if (type === undefined) throw new PatchbayClientError('invalid_request', 'upload: a type is needed (opts.type, or a Blob with one)', 0);
  const size = data instanceof Blob ? data.size : data.byteLength;
  const body = { type, size, ...(opts.name === undefined ? {} : { name: opts.name }) };
  const started = await transport.json<Started>('POST', '/v1/uploads', body);
  let res: Response;
  try {
    res = await transport.fetchFn(started.url, { method: started.method, headers: started.headers, body: data as Blob, signal: opts.signal });
  } catch (err) {
    if (opts.signal?.aborted) throw new PatchbayClientError('closed', 'the upload was cancelled', 0, { id: started.id });
    throw new PatchbayClientError('network_error', `upload PUT: ${err instanceof Error ? err.message : String(err)}`, 0, { id: started.id });
  }
  await res.body?.cancel();
  if (!res.ok) throw new PatchbayClientError('upload_failed', `the storage refused the file (HTTP ${res.status})`, res.status, { id: started.id });
  for (let attempt = 0; ; attempt++) {
    try {
      const { state } = await transport.json<{ state: UploadState }>('POST', `/v1/uploads/${encodeURIComponent(started.id)}/complete`);
      if (state.status !== 'ready') {
        throw new PatchbayClientError('upload_failed', `the upload is ${state.status}${state.error ? `: ${state.error}` : ''}`, 0, { id: started.id, state });
      }
      return { id: started.id, state };
    } catch (err) {
      // The object is written but not yet visible to the server (a storage's read-after-write lag): ask again.
      if (!(err instanceof PatchbayClientError) || err.code !== 'upload_incomplete' || attempt + 1 >= COMPLETE_TRIES) throw err;
      await new Promise((r) => setTimeout(r, backoff(attempt + 2)));
    }
  }
}

/** A signed URL to download an upload (for whoever may read it; `upload_incomplete` until it is ready). */
export async function downloadUrl(transport: Transport, id: string): Promise<string> {
  return (await transport.json<{ url: string }>('GET', `/v1/uploads/${encodeURIComponent(id)}/download`)).url;
}
