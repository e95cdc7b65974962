/**
 * The Google file store: Cloud Storage V4 signed URLs from @google-cloud/storage
 * (`file.getSignedUrl`), for objects in the deployment's bucket under the blob store's keys.
 * The `Bucket` handed in decides how URLs are signed: a `Storage` made with `credentials:
 * {client_email, private_key}` signs offline (development, tests: PATCHBAY_GCS_SIGNING_KEY_FILE);
 * one made with only the service account's email (PATCHBAY_GCS_SIGNER_EMAIL) signs through IAM
 * `signBlob`, which is what a deployed function does, having no private key. An upload URL is
 * bound to its content type, its size range (`x-goog-content-length-range: 0,<max>`) and, when
 * given, its MD5: all signed headers, so Cloud Storage refuses a PUT without them or outside them.
 * The size is checked again when the object lands (shared/uploads/uploads.ts).
 * A public download is signed as of its window's start (`accessibleAt`), so the URL is the same
 * all window long; Cloud Storage serves an object's own `cacheControl` metadata, so before the
 * first public URL of an object this instance sets it to `public, max-age=<N>` (and back to
 * `private, max-age=0` before a private URL of an object it made public).
 * The client finds a local stand-in through STORAGE_EMULATOR_HOST, and then signs URLs for it.
 */
import { readFileSync } from 'node:fs';
import { type Bucket, Storage } from '@google-cloud/storage';
import { LRUCache } from 'lru-cache';
import type { GoogleConfig, UploadsConfig } from '../../config.js';
import type { DownloadGrant, FileInfo, FileStore, SignedUrl, UploadGrant } from '../../ports/files.js';

function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; response?: { status?: unknown } } | null;
  for (const v of [e?.code, e?.response?.status]) if (typeof v === 'number') return v;
  return undefined;
}

const PRIVATE = 'private, max-age=0';

export class GcsFiles implements FileStore {
  constructor(
    private readonly bucket: Bucket,
    private readonly prefix = '',
  ) {}

  /** The object name of a key (the bucket's notifications name objects this way). */
  objectName(key: string): string {
    return this.prefix + key;
  }

  /** The key of an object name, or null for an object outside this store's prefix. */
  keyOf(objectName: string): string | null {
    return objectName.startsWith(this.prefix) ? objectName.slice(this.prefix.length) : null;
  }

  async signUpload(key: string, grant: UploadGrant): Promise<SignedUrl> {
    // Signed, so the PUT must carry it; Cloud Storage refuses a body outside the range.
    const range = { 'x-goog-content-length-range': `0,${grant.maxBytes}` };
    const [url] = await this.bucket.file(this.objectName(key)).getSignedUrl({
      version: 'v4',
      action: 'write',
      expires: grant.expires,
      contentType: grant.contentType,
      extensionHeaders: range,
      ...(grant.md5 && { contentMd5: grant.md5 }),
    });
    const headers: Record<string, string> = { 'content-type': grant.contentType, ...range, ...(grant.md5 && { 'content-md5': grant.md5 }) };
    return { url, method: 'PUT', headers, expires: grant.expires };
  }

  /** The Cache-Control this instance last set on an object (a public download sets it once, not per URL). */
  private readonly caching = new LRUCache<string, string>({ max: 10_000 });

  async signDownload(key: string, grant: DownloadGrant): Promise<SignedUrl> {
    const file = this.bucket.file(this.objectName(key));
    const want = grant.publicCacheSeconds === undefined ? PRIVATE : `public, max-age=${grant.publicCacheSeconds}`;
    // Set for public files; reset only where this instance made it public (other objects are private by default).
    if (want !== PRIVATE || this.caching.has(key)) {
      if (this.caching.get(key) !== want) {
        try {
          await file.setMetadata({ cacheControl: want });
        } catch (err) {
          if (statusOf(err) !== 404) throw err; // gone: the URL will answer 404, as it should
        }
        this.caching.set(key, want);
      }
    }
    const [url] = await file.getSignedUrl({
      version: 'v4',
      action: 'read',
      expires: grant.expires,
      ...(grant.from !== undefined && { accessibleAt: new Date(grant.from) }),
    });
    return { url, method: 'GET', headers: {}, expires: grant.expires };
  }

  async stat(key: string): Promise<FileInfo | null> {
    try {
      const [m] = await this.bucket.file(this.objectName(key)).getMetadata();
      return { size: Number(m.size), md5: String(m.md5Hash ?? ''), contentType: String(m.contentType ?? 'application/octet-stream') };
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    this.caching.delete(key);
    try {
      await this.bucket.file(this.objectName(key)).delete();
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }
}

/** The deployment's file store: its bucket, signing as PATCHBAY_GCS_SIGNING_KEY_FILE says. */
export function gcsFiles(config: Pick<GoogleConfig, 'gcpProject' | 'bucket'> & Pick<UploadsConfig, 'gcsSigningKeyFile'>): GcsFiles {
  let credentials: { client_email: string; private_key: string } | undefined;
  if (config.gcsSigningKeyFile !== '') {
    const key = JSON.parse(readFileSync(config.gcsSigningKeyFile, 'utf8')) as { client_email?: unknown; private_key?: unknown };
    if (typeof key.client_email !== 'string' || typeof key.private_key !== 'string') {
      throw new Error('PATCHBAY_GCS_SIGNING_KEY_FILE must hold a service-account key: {client_email, private_key}');
    }
    credentials = { client_email: key.client_email, private_key: key.private_key };
  }
  const storage = new Storage({ projectId: config.gcpProject, ...(credentials && { credentials }) });
  return new GcsFiles(storage.bucket(config.bucket));
}
