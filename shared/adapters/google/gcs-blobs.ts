/**
 * The Google blob store: Cloud Storage, one object per key, named `prefix + key` in one bucket (a
 * prefix isolates a namespace: a test, a deployment sharing a bucket).
 *
 * `ifAbsent` is GCS's `ifGenerationMatch=0` precondition, which the service checks atomically with
 * the write: of concurrent writers of one key exactly one succeeds, the others get 412, returned
 * here as false. That is what makes rewriting a deterministic bundle or snapshot harmless.
 * Objects are written whole: a reader sees the old object or the new one, never a mix. Uploads
 * carry the client's CRC32C, which the client checks against the one the service computed, and
 * downloads are checked the same way, so a corrupted transfer fails instead of returning wrong bytes.
 *
 * One caveat of preconditions over HTTP: an ifAbsent upload whose response is lost and that the
 * client library retries finds its own object and reports false. Callers already treat false as
 * "an object is there", which stays true.
 *
 * Only the types of @google-cloud/storage are imported: the caller builds the `Storage` client
 * (credentials, endpoint) and hands over a `Bucket`.
 */
import type { Bucket } from '@google-cloud/storage';
import { PatchbayError } from '../../errors.js';
import type { BlobStore } from '../../ports/index.js';

export interface GcsBlobStoreOptions {
  /** Prepended to every key; a `/` is added if missing. Default: none (keys are object names). */
  prefix?: string;
  /** Objects per list request (GCS allows at most 1000, the default). */
  pageSize?: number;
  /** From this size on, uploads are resumable (two requests or more) instead of one multipart request. Default 8 MiB. */
  resumableFromBytes?: number;
}

/** The same keys the embedded store accepts, so a key that works in one mode works in the other. */
const KEY = /^[A-Za-z0-9_.:=-]+(\/[A-Za-z0-9_.:=-]+)*$/;

/** The HTTP status in an error from @google-cloud/storage (ApiError `code`, or GaxiosError `status`). */
function statusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown } };
  for (const v of [e.code, e.status, e.response?.status]) if (typeof v === 'number') return v;
  return undefined;
}

export class GcsBlobStore implements BlobStore {
  private readonly prefix: string;
  private readonly pageSize: number;
  private readonly resumableFromBytes: number;

  constructor(
    private readonly bucket: Bucket,
    opts: GcsBlobStoreOptions = {},
  ) {
    const p = opts.prefix ?? '';
    this.prefix = p === '' || p.endsWith('/') ? p : `${p}/`;
    this.pageSize = opts.pageSize ?? 1000;
    this.resumableFromBytes = opts.resumableFromBytes ?? 8 * 1024 * 1024;
  }

  private name(key: string): string {
    if (!KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..')) {
      throw new PatchbayError('invalid_request', `invalid blob key ${JSON.stringify(key)}`);
    }
    return this.prefix + key;
  }

  async put(key: string, data: Uint8Array, opts: { contentType?: string; ifAbsent?: boolean } = {}): Promise<boolean> {
    const file = this.bucket.file(this.name(key));
    try {
      await file.save(Buffer.from(data.buffer, data.byteOffset, data.byteLength), {
        resumable: data.byteLength >= this.resumableFromBytes,
        // set explicitly: otherwise the client guesses one from the key's extension
        contentType: opts.contentType ?? 'application/octet-stream',
        ...(opts.ifAbsent && { preconditionOpts: { ifGenerationMatch: 0 } }),
      });
      return true;
    } catch (err) {
      if (opts.ifAbsent && statusOf(err) === 412) return false;
      throw err;
    }
  }

  async get(key: string): Promise<Uint8Array | null> {
    try {
      const [buf] = await this.bucket.file(this.name(key)).download();
      return new Uint8Array(buf); // a copy: a small Buffer may be a view into Node's shared pool
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let pageToken: string | undefined;
    do {
      const [files, next] = await this.bucket.getFiles({ prefix: this.prefix + prefix, maxResults: this.pageSize, pageToken, autoPaginate: false });
      for (const f of files) keys.push(f.name.slice(this.prefix.length));
      pageToken = (next as { pageToken?: string } | null)?.pageToken;
    } while (pageToken);
    return keys; // GCS lists in name order, which is ascending key order under one prefix
  }

  async delete(key: string): Promise<void> {
    try {
      await this.bucket.file(this.name(key)).delete();
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  async close(): Promise<void> {}
}
