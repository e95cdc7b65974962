/**
 * The file store port: objects a client uploads and downloads itself, through short-lived signed
 * URLs, so the API never carries a file's bytes. Keys are BlobStore keys (`uploads/<id>`); the
 * Google adapter signs Cloud Storage V4 URLs for its bucket, the embedded one signs HMAC URLs that
 * the same HTTP server answers (`PUT`/`GET /v1/files/{token}`).
 *
 * Contract:
 * - A signed URL is valid until `expires` (ms since epoch) and only for its `method`. An upload
 *   URL is bound to its content type (the `content-type` header must be the one signed), and to
 *   the MD5 when one is given; `headers` are what the client must send with it.
 * - `stat` describes the object as stored (its size, base64 MD5, content type), or null when no
 *   object is there. `delete` of a missing object is not an error.
 * - Signing reads no object and writes nothing: an unused URL leaves nothing behind (except a
 *   public download, which may set the object's caching metadata first, see DownloadGrant).
 * - A download URL is a function of its grant: the same key and grant give the same URL, so a
 *   grant whose `from` and `expires` are rounded gives every caller one URL, which caches reuse.
 */
export interface SignedUrl {
  url: string;
  method: 'PUT' | 'GET';
  /** Headers the request must carry (an upload's `content-type`, its `content-md5`). */
  headers: Record<string, string>;
  /** When the URL stops working, ms since epoch. */
  expires: number;
}

export interface FileInfo {
  size: number;
  /** Base64 MD5 of the bytes. */
  md5: string;
  contentType: string;
}

export interface UploadGrant {
  contentType: string;
  /** Ms since epoch. */
  expires: number;
  /** Largest body accepted, in bytes (embedded: in the token; Cloud Storage: a signed `x-goog-content-length-range`). */
  maxBytes: number;
  /** Base64 MD5 the bytes must have, when the client declared one. */
  md5?: string;
}

export interface DownloadGrant {
  /** Ms since epoch. */
  expires: number;
  contentType: string;
  /** When the URL starts working, ms since epoch (default: now); a public URL is dated at the start of its window, so it is the same all window long. */
  from?: number;
  /**
   * Set for a public file: its bytes may be cached by anyone this many seconds
   * (`Cache-Control: public, max-age=N`; embedded: in the token; Cloud Storage: the object's
   * `cacheControl` metadata, set when it is not so already). Unset: `Cache-Control: private, max-age=0`.
   */
  publicCacheSeconds?: number;
}

export interface FileStore {
  /** A URL through which one `PUT` stores the object at `key`. */
  signUpload(key: string, grant: UploadGrant): Promise<SignedUrl>;
  /** A URL through which `GET` reads the object at `key` until `expires`. */
  signDownload(key: string, grant: DownloadGrant): Promise<SignedUrl>;
  stat(key: string): Promise<FileInfo | null>;
  delete(key: string): Promise<void>;
  /** Present when this server answers the signed URLs itself (embedded: `/v1/files/{token}`). */
  readonly server?: FileServer;
}

/** What a signed URL allows, as the server answering it reads it from the token. */
export interface FileGrant {
  key: string;
  method: 'PUT' | 'GET';
  contentType: string;
  /** PUT: the largest body. */
  maxBytes?: number;
  /** PUT: the base64 MD5 the bytes must have. */
  md5?: string;
  /** GET: how long the bytes may be cached publicly (DownloadGrant.publicCacheSeconds). */
  publicCacheSeconds?: number;
  /** When the grant ends, ms since epoch. */
  expires: number;
}

/** The serving half of a self-served file store. */
export interface FileServer {
  /** The grant of `token` for a request of `method` (HEAD counts as GET); `forbidden` for a changed, expired or other-method token. */
  verify(token: string, method: string): FileGrant;
  /** Stores an upload's bytes under the grant's key (the caller checked them against the grant). */
  write(grant: FileGrant, data: Uint8Array): Promise<FileInfo>;
  /** The bytes and content type at key, or null. */
  read(key: string): Promise<{ data: Uint8Array; contentType: string } | null>;
}
