/**
 * A development stand-in for Google Cloud Storage: an HTTP server speaking the subset of the GCS
 * JSON API (v1) that `@google-cloud/storage` 7 uses for patchbay's blob store. No real emulator
 * runs here (docs: ENVIRONMENT.md), so `npm run dev:cloud` and the tests use this one.
 *
 * How a client reaches it (both checked against @google-cloud/storage 7.22 by test/gcs-blobs.gcs.test.ts):
 * - `new Storage({ apiEndpoint: url, projectId })`: JSON calls go to `${url}/storage/v1/b/...`.
 * - `STORAGE_EMULATOR_HOST=url`: JSON calls go to `${url}/b/...` (the client drops `/storage/v1`).
 * Uploads go to `${url}/upload/storage/v1/b/...` either way. Either way the client sends no
 * credentials (a custom endpoint turns auth off), so this server checks none. Use a project id.
 *
 * Routes (JSON routes under both `/storage/v1` and the bare form):
 * - Buckets: `POST /b` (create; 409 if it exists), `GET /b` (list), `GET /b/B`, `DELETE /b/B` (409 unless empty).
 * - `POST /upload/storage/v1/b/B/o?uploadType=media|multipart|resumable&name=N`: `media` takes the
 *   bytes as the body; `multipart` a `multipart/related` body (JSON metadata, then the bytes);
 *   `resumable` opens a session and answers its URI in `Location`. `PUT` to that URI with
 *   `Content-Range: bytes A-B/T` appends a chunk (308 with `Range: bytes=0-N` until all T bytes
 *   are in); an end of `*` sends the rest in this one request, a range of `*` asks the status, and
 *   the total T may be `*` (not known yet). `DELETE` cancels (499). No `Content-Range`: the whole object.
 * - `GET /b/B/o/N`: metadata; with `alt=media` (or `GET /download/storage/v1/b/B/o/N`): the bytes, with
 *   `Content-Length`, `Content-Type`, `x-goog-hash: crc32c=…,md5=…` and `x-goog-stored-content-encoding`
 *   (the client only checks hashes when that header is present, and fails a download whose
 *   `x-goog-hash` lacks the crc32c), `Range: bytes=a-b` (206). `HEAD` too.
 * - `GET /b/B/o?prefix&delimiter&maxResults&pageToken&startOffset&endOffset&includeTrailingDelimiter`:
 *   names ascending by UTF-8 bytes (GCS order); `maxResults` (≤ 1000) counts items plus prefixes.
 * - `DELETE /b/B/o/N`: 204; 404 if missing.
 * - Preconditions `ifGenerationMatch` (0 = must not exist), `ifGenerationNotMatch`,
 *   `ifMetagenerationMatch`, `ifMetagenerationNotMatch` on upload, get and delete → 412 (304 on a read).
 *   Hashes sent with an upload (`x-goog-hash`, or `md5Hash`/`crc32c` in the metadata) are checked → 400.
 * Object resources carry `generation` (increasing, microsecond-like), `metageneration`, `size`,
 * `contentType`, `md5Hash` (base64 MD5) and `crc32c` (base64 of the big-endian CRC32C).
 *
 * - V4 signed URLs (`/BUCKET/OBJECT?X-Goog-Signature=...`, path style): `PUT` stores, `GET`/`HEAD` read,
 *   each only after the signature is verified against the `signers` option's keys, as Cloud Storage
 *   does (infra/local/gcs-signed-urls.ts): tampered, expired and wrong-method requests are refused;
 *   a body outside `x-goog-content-length-range` (when sent) is 400 EntityTooLarge.
 *
 * - Object `PATCH` (`/storage/v1/b/B/o/O`, JSON): changes `cacheControl`, `contentType`,
 *   `contentDisposition`, `contentLanguage`, `metadata` (metageneration + 1). Media downloads
 *   answer the object's `cacheControl`, or `private, max-age=0` as for a non-public object.
 *
 * Not supported (501, or ignored where harmless): object PUT metadata, compose, copy/rewrite,
 * ACLs, IAM, notifications (tests post the finalize notification themselves), HMAC keys, V2 signed URLs and the rest of the XML API, `matchGlob`, object versioning
 * (`versions` is ignored: only live objects exist), reading old generations, `fields`/`projection`
 * (full resources are always returned: a superset), decompressive transcoding (gzip objects are
 * served as stored), customer-supplied encryption keys, expiry of resumable sessions.
 *
 * Guarantee: a precondition is checked and the object replaced in one synchronous step of the event
 * loop, so of concurrent uploads of one name with `ifGenerationMatch=0` exactly one succeeds; the
 * others get 412. A reader sees either the old object or the new one, whole.
 *
 * Storage: memory by default; with `dir`, each bucket is `dir/BUCKET/` holding `bucket.json`,
 * `objects/<sha256(name)>.json` (metadata) and `blobs/<uuid>` (bytes). Bytes are written before the
 * metadata that points at them, each by rename, so a killed server restarts with whole objects;
 * unreferenced blobs are removed at start.
 *
 * Run it: `node dist/infra/local/gcs-server.js [--port 4443] [--host 127.0.0.1] [--dir DIR] [--bucket NAME]... [--signer KEYFILE]...`
 * (or GCS_SERVER_PORT, GCS_SERVER_HOST, GCS_SERVER_DIR, GCS_SERVER_BUCKETS=a,b, GCS_SERVER_SIGNERS=key.json,...). It prints its url
 * on the first line; then point clients at it with STORAGE_EMULATOR_HOST=<url>.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exitOnSignal } from '../../shared/http/listen.js';
import { isSignedUrl, SignedUrlVerifier } from './gcs-signed-urls.js';
import { runIfMain } from './proc.js';

export interface GcsServerOptions {
  /** 0 (the default) picks a free port (see the returned url). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Keep buckets and objects under this directory (created if missing) instead of in memory. */
  dir?: string;
  /** Buckets to create at start if missing. */
  buckets?: string[];
  /** Largest object accepted; larger is refused with 413. Default 256 MiB. */
  maxObjectBytes?: number;
  /**
   * Service accounts whose V4 signed URLs this server accepts: email -> key (PEM; a private key's
   * public half is used). A signed-URL request is verified as Cloud Storage does (gcs-signed-urls.ts).
   */
  signers?: Record<string, string>;
  /** The clock signed URLs are checked against (default Date.now). */
  now?: () => number;
}

export interface GcsServer {
  /** `http://host:port`: what STORAGE_EMULATOR_HOST or the `apiEndpoint` option takes. */
  url: string;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Hashes

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as GCS computes it. */
export function crc32c(data: Uint8Array): number {
  const t = CRC32C_TABLE;
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = (t[(c ^ (data[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The `crc32c` field of an object resource: base64 of the four big-endian bytes. */
export function crc32cBase64(data: Uint8Array): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32c(data));
  return b.toString('base64');
}

const md5Base64 = (data: Uint8Array): string => createHash('md5').update(data).digest('base64');

// ---------------------------------------------------------------------------------------------
// Errors and responses

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const notFound = (message: string) => new HttpError(404, 'notFound', message);
const invalid = (message: string) => new HttpError(400, 'invalid', message);
const JSON_TYPE = 'application/json; charset=UTF-8';

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** The JSON API's error shape, which the client turns into an ApiError with `code` = status. */
function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.status, { error: { code: err.status, message: err.message, errors: [{ message: err.message, domain: 'global', reason: err.reason }] } });
}

// ---------------------------------------------------------------------------------------------
// State

interface StoredObject {
  name: string;
  generation: number;
  metageneration: number;
  size: number;
  contentType: string;
  contentEncoding?: string;
  contentDisposition?: string;
  contentLanguage?: string;
  cacheControl?: string;
  metadata?: Record<string, string>;
  md5Hash: string;
  crc32c: string;
  timeCreated: string;
  updated: string;
  /** The bytes (memory), or the name of the file under `blobs/` (dir). */
  blob: Buffer | string;
}

interface BucketState {
  name: string;
  timeCreated: string;
  objects: Map<string, StoredObject>;
  /** Object names in GCS order, for listing. */
  sorted: string[];
}

/** The metadata an upload sets (from the multipart part, the resumable session's body, or headers). */
type Draft = Pick<StoredObject, 'contentType' | 'contentEncoding' | 'contentDisposition' | 'contentLanguage' | 'cacheControl' | 'metadata'>;

interface Session {
  id: string;
  bucket: string;
  name: string;
  draft: Draft;
  /** The preconditions given when the session was opened; checked again when it completes. */
  conditions: URLSearchParams;
  chunks: Buffer[];
  received: number;
  /** The object resource once complete: a status query or a repeated final PUT answers it again. */
  result?: Record<string, unknown>;
}

/**
 * GCS orders names by their UTF-8 bytes, which is code point order. JavaScript's `<` compares
 * UTF-16 units, which differs for astral characters against U+E000..U+FFFF; compare code points there.
 */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a.charCodeAt(i) !== b.charCodeAt(i)) return (a.codePointAt(i) as number) - (b.codePointAt(i) as number);
  }
  return a.length - b.length;
}

/** First index whose name is >= name (or > name with `after`). */
function bound(sorted: string[], name: string, after = false): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareNames(sorted[mid] as string, name);
    if (c < 0 || (after && c === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const BUCKET_NAME = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

function checkObjectName(name: string): void {
  if (name === '' || Buffer.byteLength(name) > 1024) throw invalid('Object name must be 1-1024 bytes of UTF-8.');
  if (/[\r\n]/.test(name) || name === '.' || name === '..') throw invalid(`Invalid object name: ${JSON.stringify(name)}`);
}

const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');

class Store {
  readonly buckets = new Map<string, BucketState>();
  readonly sessions = new Map<string, Session>();
  private lastGeneration = 0;
  /** Per object, the chain of pending disk writes, so they land in commit order. */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly dir: string | undefined) {}

  /** Strictly increasing, and close to GCS's microsecond timestamps. */
  nextGeneration(): number {
    this.lastGeneration = Math.max(this.lastGeneration + 1, Date.now() * 1000);
    return this.lastGeneration;
  }

  bucket(name: string): BucketState {
    const b = this.buckets.get(name);
    if (!b) throw notFound('The specified bucket does not exist.');
    return b;
  }

  async load(): Promise<void> {
    if (!this.dir) return;
    await mkdir(this.dir, { recursive: true });
    for (const entry of await readdir(this.dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || !BUCKET_NAME.test(entry.name)) continue;
      const base = join(this.dir, entry.name);
      let info: { name: string; timeCreated: string };
      try {
        info = JSON.parse(await readFile(join(base, 'bucket.json'), 'utf8'));
      } catch {
        continue; // not a bucket directory
      }
      const bucket: BucketState = { name: info.name, timeCreated: info.timeCreated, objects: new Map(), sorted: [] };
      const referenced = new Set<string>();
      for (const file of await readdir(join(base, 'objects')).catch(() => [] as string[])) {
        const path = join(base, 'objects', file);
        if (!file.endsWith('.json')) {
          await unlink(path).catch(() => {}); // a temporary file a killed server left
          continue;
        }
        const obj = JSON.parse(await readFile(path, 'utf8')) as StoredObject;
        bucket.objects.set(obj.name, obj);
        referenced.add(obj.blob as string);
        this.lastGeneration = Math.max(this.lastGeneration, obj.generation);
      }
      for (const file of await readdir(join(base, 'blobs')).catch(() => [] as string[])) {
        if (!referenced.has(file)) await unlink(join(base, 'blobs', file)).catch(() => {});
      }
      bucket.sorted = [...bucket.objects.keys()].sort(compareNames);
      this.buckets.set(bucket.name, bucket);
    }
  }

  async createBucket(name: string): Promise<BucketState> {
    if (!BUCKET_NAME.test(name)) throw invalid(`Invalid bucket name: ${JSON.stringify(name)}`);
    if (this.buckets.has(name)) throw new HttpError(409, 'conflict', 'Your previous request to create the named bucket succeeded and you already own it.');
    const bucket: BucketState = { name, timeCreated: new Date().toISOString(), objects: new Map(), sorted: [] };
    this.buckets.set(name, bucket);
    if (this.dir) {
      const base = join(this.dir, name);
      await mkdir(join(base, 'objects'), { recursive: true });
      await mkdir(join(base, 'blobs'), { recursive: true });
      await writeAtomic(join(base, 'bucket.json'), JSON.stringify({ name, timeCreated: bucket.timeCreated }));
    }
    return bucket;
  }

  async deleteBucket(name: string): Promise<void> {
    const bucket = this.bucket(name);
    if (bucket.objects.size > 0) throw new HttpError(409, 'conflict', 'The bucket you tried to delete is not empty.');
    this.buckets.delete(name);
    if (this.dir) await rm(join(this.dir, name), { recursive: true, force: true });
  }

  /** Puts the bytes where a commit can point at them (a file in dir mode). */
  async stage(bucket: string, data: Buffer): Promise<Buffer | string> {
    if (!this.dir) return data;
    const file = randomUUID();
    await writeAtomic(join(this.dir, bucket, 'blobs', file), data);
    return file;
  }

  private async discard(bucket: string, blob: Buffer | string): Promise<void> {
    if (this.dir && typeof blob === 'string') await unlink(join(this.dir, bucket, 'blobs', blob)).catch(() => {});
  }

  /**
   * Checks the preconditions and replaces the object, in one synchronous step: no other request
   * runs between the check and the write. Resolves once the change is on disk (dir mode).
   */
  async commit(bucketName: string, name: string, blob: Buffer | string, data: Buffer, draft: Draft, conditions: URLSearchParams): Promise<StoredObject> {
    const bucket = this.buckets.get(bucketName);
    const previous = bucket?.objects.get(name);
    const failure = bucket ? preconditionFailure(conditions, previous, false) : notFound('The specified bucket does not exist.');
    if (failure || !bucket) {
      await this.discard(bucketName, blob);
      throw failure;
    }
    const now = new Date().toISOString();
    const obj: StoredObject = {
      ...draft,
      name,
      generation: this.nextGeneration(),
      metageneration: 1,
      size: data.byteLength,
      md5Hash: md5Base64(data),
      crc32c: crc32cBase64(data),
      timeCreated: now,
      updated: now,
      blob,
    };
    bucket.objects.set(name, obj);
    if (!previous) bucket.sorted.splice(bound(bucket.sorted, name), 0, name);
    await this.persist(bucketName, name, obj, previous);
    return obj;
  }

  /** Changes an object's metadata (the fields an upload may set); the bytes and generation stay. */
  async patch(bucketName: string, name: string, meta: Record<string, unknown>, conditions: URLSearchParams): Promise<StoredObject> {
    const bucket = this.bucket(bucketName);
    const current = bucket.objects.get(name);
    if (!current) throw notFound(`No such object: ${bucketName}/${name}`);
    const failure = preconditionFailure(conditions, current, false);
    if (failure) throw failure;
    const draft = draftFrom(meta, current.contentType);
    const obj: StoredObject = { ...current, ...draft, metageneration: current.metageneration + 1, updated: new Date().toISOString() };
    bucket.objects.set(name, obj);
    await this.persist(bucketName, name, obj, undefined);
    return obj;
  }

  async remove(bucketName: string, name: string, conditions: URLSearchParams): Promise<void> {
    const bucket = this.bucket(bucketName);
    const current = bucket.objects.get(name);
    if (!current) throw notFound(`No such object: ${bucketName}/${name}`);
    const failure = preconditionFailure(conditions, current, false);
    if (failure) throw failure;
    bucket.objects.delete(name);
    const i = bound(bucket.sorted, name);
    if (bucket.sorted[i] === name) bucket.sorted.splice(i, 1);
    await this.persist(bucketName, name, undefined, current);
  }

  /** The bytes of an object; reads again if an overwrite removed the file in between. */
  async read(bucketName: string, name: string): Promise<{ obj: StoredObject; data: Buffer }> {
    let tried: StoredObject | undefined;
    for (;;) {
      const obj = this.bucket(bucketName).objects.get(name);
      if (!obj) throw notFound(`No such object: ${bucketName}/${name}`);
      if (typeof obj.blob !== 'string') return { obj, data: obj.blob };
      try {
        return { obj, data: await readFile(join(this.dir as string, bucketName, 'blobs', obj.blob)) };
      } catch (err) {
        // ENOENT with a newer object in place: an overwrite won the race, read that one instead
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || obj === tried) throw err;
        tried = obj;
      }
    }
  }

  private persist(bucket: string, name: string, obj: StoredObject | undefined, previous: StoredObject | undefined): Promise<void> {
    const dir = this.dir;
    if (!dir) return Promise.resolve();
    const key = `${bucket}/${name}`;
    const metaPath = join(dir, bucket, 'objects', `${sha256hex(name)}.json`);
    const write = async (): Promise<void> => {
      if (obj) await writeAtomic(metaPath, JSON.stringify(obj));
      else await unlink(metaPath).catch(() => {});
      if (previous) await this.discard(bucket, previous.blob);
    };
    const next = (this.chains.get(key) ?? Promise.resolve()).then(write);
    const tail = next.catch(() => {});
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return next;
  }

  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.all(this.chains.values());
  }
}

async function writeAtomic(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.${randomUUID()}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** The error a failed precondition answers: 412, or 304 for a read whose NotMatch failed. */
function preconditionFailure(q: URLSearchParams, current: StoredObject | undefined, read: boolean): HttpError | undefined {
  const num = (param: string): number | undefined => {
    const v = q.get(param);
    if (v === null) return undefined;
    if (!/^\d+$/.test(v)) throw invalid(`Invalid value for ${param}: ${v}`);
    return Number(v);
  };
  const failed = new HttpError(412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.');
  const notModified = read ? new HttpError(304, 'notModified', 'Not Modified') : failed;
  const gm = num('ifGenerationMatch');
  if (gm !== undefined && (gm === 0 ? current !== undefined : current?.generation !== gm)) return failed;
  const gnm = num('ifGenerationNotMatch');
  if (gnm !== undefined && (gnm === 0 ? current === undefined : current?.generation === gnm)) return notModified;
  const mm = num('ifMetagenerationMatch');
  if (mm !== undefined && current?.metageneration !== mm) return failed;
  const mnm = num('ifMetagenerationNotMatch');
  if (mnm !== undefined && current?.metageneration === mnm) return notModified;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Resources

function objectResource(base: string, bucket: string, o: StoredObject): Record<string, unknown> {
  const path = `b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(o.name)}`;
  return {
    kind: 'storage#object',
    id: `${bucket}/${o.name}/${o.generation}`,
    selfLink: `${base}/storage/v1/${path}`,
    mediaLink: `${base}/download/storage/v1/${path}?generation=${o.generation}&alt=media`,
    name: o.name,
    bucket,
    generation: String(o.generation),
    metageneration: String(o.metageneration),
    contentType: o.contentType,
    ...(o.contentEncoding !== undefined && { contentEncoding: o.contentEncoding }),
    ...(o.contentDisposition !== undefined && { contentDisposition: o.contentDisposition }),
    ...(o.contentLanguage !== undefined && { contentLanguage: o.contentLanguage }),
    ...(o.cacheControl !== undefined && { cacheControl: o.cacheControl }),
    ...(o.metadata !== undefined && { metadata: o.metadata }),
    storageClass: 'STANDARD',
    size: String(o.size),
    md5Hash: o.md5Hash,
    crc32c: o.crc32c,
    etag: etag(o),
    timeCreated: o.timeCreated,
    updated: o.updated,
    timeStorageClassUpdated: o.timeCreated,
  };
}

const etag = (o: StoredObject): string => Buffer.from(`${o.generation}/${o.metageneration}`).toString('base64');

function bucketResource(base: string, b: BucketState): Record<string, unknown> {
  return {
    kind: 'storage#bucket',
    id: b.name,
    selfLink: `${base}/storage/v1/b/${encodeURIComponent(b.name)}`,
    name: b.name,
    projectNumber: '0',
    metageneration: '1',
    location: 'US',
    locationType: 'multi-region',
    storageClass: 'STANDARD',
    etag: 'CAE=',
    timeCreated: b.timeCreated,
    updated: b.timeCreated,
  };
}

/** The metadata fields an upload may set; others (acl, hashes, ...) are not stored. */
function draftFrom(meta: Record<string, unknown>, fallbackType: string | undefined): Draft {
  const str = (k: string): string | undefined => (typeof meta[k] === 'string' ? (meta[k] as string) : undefined);
  const draft: Draft = { contentType: str('contentType') ?? fallbackType ?? 'application/octet-stream' };
  for (const k of ['contentEncoding', 'contentDisposition', 'contentLanguage', 'cacheControl'] as const) {
    const v = str(k);
    if (v !== undefined) draft[k] = v;
  }
  const custom = meta.metadata;
  if (custom && typeof custom === 'object') {
    draft.metadata = Object.fromEntries(Object.entries(custom as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
  }
  return draft;
}

/** Refuses bytes whose hashes differ from those the client sent (header or metadata). */
function checkHashes(data: Buffer, header: string | undefined, meta: Record<string, unknown> = {}): void {
  const sent: { crc32c?: unknown; md5?: unknown } = { crc32c: meta.crc32c, md5: meta.md5Hash };
  for (const pair of (header ?? '').split(',')) {
    const i = pair.indexOf('=');
    if (i < 0) continue;
    const kind = pair.slice(0, i).trim();
    if (kind === 'crc32c' || kind === 'md5') sent[kind] = pair.slice(i + 1).trim();
  }
  if (typeof sent.crc32c === 'string' && sent.crc32c !== crc32cBase64(data)) {
    throw invalid(`Provided CRC32C "${sent.crc32c}" doesn't match calculated CRC32C "${crc32cBase64(data)}".`);
  }
  if (typeof sent.md5 === 'string' && sent.md5 !== md5Base64(data)) {
    throw invalid(`Provided MD5 hash "${sent.md5}" doesn't match calculated MD5 hash "${md5Base64(data)}".`);
  }
}

// ---------------------------------------------------------------------------------------------
// Request bodies

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) throw new HttpError(413, 'uploadTooLarge', `The object is larger than this server's limit of ${limit} bytes.`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, n);
}

function parseJson(body: Buffer): Record<string, unknown> {
  if (body.length === 0) return {};
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {}
  throw invalid('The request body is not a JSON object.');
}

/** A `multipart/related` body as @google-cloud/storage (teeny-request) builds it: metadata, then media. */
function parseMultipart(body: Buffer, contentType: string): { meta: Record<string, unknown>; data: Buffer; dataType?: string } {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) throw invalid('multipart upload without a boundary');
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  let pos = body.indexOf(`--${boundary}`);
  if (pos < 0) throw invalid('multipart body without its boundary');
  pos += boundary.length + 2;
  const parts: { headers: Map<string, string>; content: Buffer }[] = [];
  while (body.toString('latin1', pos, pos + 2) !== '--') {
    if (body.toString('latin1', pos, pos + 2) !== '\r\n') throw invalid('malformed multipart body');
    pos += 2;
    const end = body.indexOf(delimiter, pos);
    if (end < 0) throw invalid('malformed multipart body: a part is not terminated');
    const part = body.subarray(pos, end);
    // the part's headers end with an empty line; a part without headers starts with it
    let head = '';
    let content = part.subarray(2);
    if (part.toString('latin1', 0, 2) !== '\r\n') {
      const split = part.indexOf('\r\n\r\n');
      if (split < 0) throw invalid('malformed multipart body: no blank line after a part’s headers');
      head = part.toString('latin1', 0, split);
      content = part.subarray(split + 4);
    }
    const headers = new Map<string, string>();
    for (const line of head.split('\r\n')) {
      const i = line.indexOf(':');
      if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    parts.push({ headers, content });
    pos = end + delimiter.length;
  }
  const [metaPart, dataPart] = parts;
  if (parts.length !== 2 || !metaPart || !dataPart) throw invalid(`A multipart upload has 2 parts, not ${parts.length}.`);
  return { meta: parseJson(metaPart.content), data: dataPart.content, dataType: dataPart.headers.get('content-type') };
}

// ---------------------------------------------------------------------------------------------
// The server

const MAX_RESULTS = 1000;

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw invalid(`Malformed percent-encoding in ${JSON.stringify(segment)}`);
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

export async function startGcsServer(opts: GcsServerOptions = {}): Promise<GcsServer> {
  const host = opts.host ?? '127.0.0.1';
  const maxObjectBytes = opts.maxObjectBytes ?? 256 * 1024 * 1024;
  const store = new Store(opts.dir);
  await store.load();
  for (const b of opts.buckets ?? []) if (!store.buckets.has(b)) await store.createBucket(b);

  const verifier = new SignedUrlVerifier(opts.signers ?? {}, opts.now);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const q = url.searchParams;
    const method = req.method ?? 'GET';
    // Links in resources (selfLink, mediaLink, the resumable session URI) point back at this server as the client addressed it.
    const base = `http://${req.headers.host ?? `${host}`}`;
    let path = url.pathname;
    if (isSignedUrl(req.url ?? '')) return signedRequest(req, res, path, base);

    if (path.startsWith('/upload/storage/v1/b/')) {
      const m = /^\/upload\/storage\/v1\/b\/([^/]+)\/o\/?$/.exec(path);
      if (!m) throw notFound(`No such upload route: ${path}`);
      return upload(req, res, decode(m[1] as string), q, base);
    }
    let media = q.get('alt') === 'media';
    if (path.startsWith('/download/storage/v1/')) {
      path = path.slice('/download'.length);
      media = true;
    }
    if (path.startsWith('/storage/v1/')) path = path.slice('/storage/v1'.length);

    if (path === '/b' || path === '/b/') {
      if (method === 'POST') {
        const body = parseJson(await readBody(req, 1024 * 1024));
        if (typeof body.name !== 'string') throw invalid('A bucket needs a name.');
        return sendJson(res, 200, bucketResource(base, await store.createBucket(body.name)));
      }
      if (method === 'GET') return sendJson(res, 200, { kind: 'storage#buckets', items: [...store.buckets.values()].map((b) => bucketResource(base, b)) });
    }
    const bm = /^\/b\/([^/]+)(\/o(?:\/(.+))?)?\/?$/.exec(path);
    if (bm) {
      const bucketName = decode(bm[1] as string);
      if (bm[2] === undefined) {
        if (method === 'GET') return sendJson(res, 200, bucketResource(base, store.bucket(bucketName)));
        if (method === 'DELETE') {
          await store.deleteBucket(bucketName);
          res.writeHead(204).end();
          return;
        }
      } else if (bm[3] === undefined) {
        if (method === 'GET') return sendJson(res, 200, list(store.bucket(bucketName), q, base));
      } else {
        const name = decode(bm[3]);
        if (method === 'GET' || method === 'HEAD') return getObject(req, res, bucketName, name, q, base, media);
        if (method === 'PATCH') {
          const meta = JSON.parse((await readBody(req, 1024 * 1024)).toString('utf8') || '{}') as Record<string, unknown>;
          return sendJson(res, 200, objectResource(base, bucketName, await store.patch(bucketName, name, meta, q)));
        }
        if (method === 'DELETE') {
          await store.remove(bucketName, name, q);
          res.writeHead(204).end();
          return;
        }
      }
    }
    throw new HttpError(501, 'notImplemented', `patchbay's gcs-server does not implement ${method} ${url.pathname}`);
  };

  /**
   * A request through a V4 signed URL (path style, `/BUCKET/OBJECT`, the XML API's form): the
   * signature checked first (an XML error as Cloud Storage answers: 403 SignatureDoesNotMatch, 400
   * ExpiredToken), then `PUT` stores the body with the request's `Content-Type` (and checks a
   * `Content-MD5`), `GET`/`HEAD` answer the object.
   */
  async function signedRequest(req: IncomingMessage, res: ServerResponse, path: string, base: string): Promise<void> {
    const verdict = verifier.verify({ method: req.method ?? 'GET', target: req.url ?? '/', headers: req.headers });
    const xmlError = (status: number, code: string, message: string) => {
      const body = `<?xml version='1.0' encoding='UTF-8'?><Error><Code>${code}</Code><Message>${message.replace(/[<&]/g, '')}</Message></Error>`;
      res.writeHead(status, { 'content-type': 'application/xml; charset=UTF-8', 'content-length': Buffer.byteLength(body) }).end(body);
    };
    if (!verdict.ok) {
      req.resume();
      return xmlError(verdict.status, verdict.code, verdict.message);
    }
    const m = /^\/([^/]+)\/(.+)$/.exec(path);
    if (!m) return xmlError(400, 'InvalidURI', 'a signed URL names /BUCKET/OBJECT');
    const bucketName = decode(m[1] as string);
    const name = decode(m[2] as string);
    if (req.method === 'GET' || req.method === 'HEAD') return getObject(req, res, bucketName, name, new URLSearchParams(), base, true);
    if (req.method !== 'PUT') throw new HttpError(501, 'notImplemented', `patchbay's gcs-server does not implement ${req.method} through signed URLs`);
    store.bucket(bucketName);
    checkObjectName(name);
    const data = await readBody(req, maxObjectBytes);
    // A signed `x-goog-content-length-range: min,max` bounds the body (the signature check made it present if signed).
    const range = /^(\d+),(\d+)$/.exec(header(req, 'x-goog-content-length-range') ?? '');
    if (range && (data.length < Number(range[1]) || data.length > Number(range[2]))) {
      return xmlError(400, 'EntityTooLarge', 'Your proposed upload is outside the range allowed by x-goog-content-length-range.');
    }
    const md5 = header(req, 'content-md5');
    if (md5 !== undefined && md5 !== md5Base64(data)) return xmlError(400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.');
    const draft = { contentType: header(req, 'content-type') ?? 'application/octet-stream' };
    const obj = await store.commit(bucketName, name, await store.stage(bucketName, data), data, draft, new URLSearchParams());
    res
      .writeHead(200, {
        etag: `"${etag(obj)}"`,
        'x-goog-generation': String(obj.generation),
        'x-goog-hash': `crc32c=${obj.crc32c},md5=${obj.md5Hash}`,
        'content-length': '0',
      })
      .end();
  }

  async function getObject(req: IncomingMessage, res: ServerResponse, bucketName: string, name: string, q: URLSearchParams, base: string, media: boolean) {
    const current = store.bucket(bucketName).objects.get(name);
    const generation = q.get('generation');
    if (!current || (generation !== null && generation !== String(current.generation))) throw notFound(`No such object: ${bucketName}/${name}`);
    const failure = preconditionFailure(q, current, true);
    if (failure?.status === 304) {
      res.writeHead(304).end();
      return;
    }
    if (failure) throw failure;
    if (!media) return sendJson(res, 200, objectResource(base, bucketName, current));

    const { obj, data } = await store.read(bucketName, name);
    const headers: Record<string, string> = {
      'content-type': obj.contentType,
      'x-goog-hash': `crc32c=${obj.crc32c},md5=${obj.md5Hash}`,
      'x-goog-stored-content-encoding': obj.contentEncoding ?? 'identity',
      'x-goog-stored-content-length': String(obj.size),
      'x-goog-generation': String(obj.generation),
      'x-goog-metageneration': String(obj.metageneration),
      'x-goog-storage-class': 'STANDARD',
      etag: `"${etag(obj)}"`,
      'last-modified': new Date(obj.updated).toUTCString(),
      'accept-ranges': 'bytes',
      'cache-control': obj.cacheControl ?? 'private, max-age=0',
    };
    if (obj.contentEncoding) headers['content-encoding'] = obj.contentEncoding;
    let status = 200;
    let body = data;
    const range = header(req, 'range');
    if (range) {
      const r = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      let start = Number.NaN;
      let end = data.length - 1;
      if (r?.[1]) {
        start = Number(r[1]);
        if (r[2]) end = Math.min(Number(r[2]), data.length - 1);
      } else if (r?.[2]) {
        start = Math.max(0, data.length - Number(r[2]));
      }
      if (!(start <= end)) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}`, 'content-type': JSON_TYPE }).end();
        return;
      }
      status = 206;
      body = data.subarray(start, end + 1);
      headers['content-range'] = `bytes ${start}-${end}/${data.length}`;
    }
    headers['content-length'] = String(body.length);
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  function list(bucket: BucketState, q: URLSearchParams, base: string): Record<string, unknown> {
    if (q.has('matchGlob')) throw new HttpError(501, 'notImplemented', "patchbay's gcs-server does not implement matchGlob");
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') || undefined;
    const startOffset = q.get('startOffset') ?? '';
    const endOffset = q.get('endOffset') || undefined;
    const trailing = q.get('includeTrailingDelimiter') === 'true';
    const maxParam = q.get('maxResults');
    const max = maxParam === null ? MAX_RESULTS : Number(maxParam);
    if (!Number.isInteger(max) || max < 1) throw invalid(`Invalid value for maxResults: ${maxParam}`);
    const limit = Math.min(max, MAX_RESULTS);
    let token: { last: string; isPrefix: boolean } | undefined;
    const pageToken = q.get('pageToken');
    if (pageToken) {
      try {
        const t = JSON.parse(Buffer.from(pageToken, 'base64url').toString('utf8'));
        token = { last: String(t.l), isPrefix: t.p === true };
      } catch {
        throw invalid('Invalid pageToken.');
      }
    }

    const sorted = bucket.sorted;
    let i = bound(sorted, compareNames(prefix, startOffset) >= 0 ? prefix : startOffset);
    if (token) i = Math.max(i, bound(sorted, token.last, true));
    const items: Record<string, unknown>[] = [];
    const prefixes: string[] = [];
    let last: { l: string; p: boolean } | undefined;
    let more = false;
    for (; i < sorted.length; i++) {
      const name = sorted[i] as string;
      if (!name.startsWith(prefix) || (endOffset !== undefined && compareNames(name, endOffset) >= 0)) break;
      if (token?.isPrefix && name.startsWith(token.last)) continue; // inside a prefix the previous page returned
      if (last?.p && name.startsWith(last.l)) continue; // inside the prefix just returned
      const cut = delimiter ? name.indexOf(delimiter, prefix.length) : -1;
      const asPrefix = cut >= 0 ? name.slice(0, cut + (delimiter as string).length) : undefined;
      const entries = asPrefix === undefined ? 1 : trailing && asPrefix === name ? 2 : 1;
      if (items.length + prefixes.length + entries > limit) {
        more = true;
        break;
      }
      if (asPrefix === undefined || (trailing && asPrefix === name)) items.push(objectResource(base, bucket.name, bucket.objects.get(name) as StoredObject));
      if (asPrefix !== undefined) {
        prefixes.push(asPrefix);
        last = { l: asPrefix, p: true };
      } else {
        last = { l: name, p: false };
      }
    }
    return {
      kind: 'storage#objects',
      ...(items.length > 0 && { items }),
      ...(prefixes.length > 0 && { prefixes }),
      ...(more && last && { nextPageToken: Buffer.from(JSON.stringify(last)).toString('base64url') }),
    };
  }

  async function upload(req: IncomingMessage, res: ServerResponse, bucketName: string, q: URLSearchParams, base: string): Promise<void> {
    const method = req.method ?? 'GET';
    const type = q.get('uploadType');
    const uploadId = q.get('upload_id');
    if (type === 'resumable' && uploadId !== null) return resumablePut(req, res, uploadId, base);
    if (method !== 'POST') throw new HttpError(501, 'notImplemented', `patchbay's gcs-server does not implement ${method} uploads`);
    store.bucket(bucketName);

    if (type === 'resumable') {
      const meta = parseJson(await readBody(req, 1024 * 1024));
      const name = q.get('name') ?? (typeof meta.name === 'string' ? meta.name : '');
      checkObjectName(name);
      const conditions = new URLSearchParams(q);
      // Checked here to fail early, and again when the session completes, which is what counts.
      const failure = preconditionFailure(conditions, store.bucket(bucketName).objects.get(name), false);
      if (failure) throw failure;
      const id = randomUUID();
      store.sessions.set(id, {
        id,
        bucket: bucketName,
        name,
        draft: draftFrom(meta, header(req, 'x-upload-content-type')),
        conditions,
        chunks: [],
        received: 0,
      });
      const location = `${base}/upload/storage/v1/b/${encodeURIComponent(bucketName)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
      res.writeHead(200, { location, 'content-length': '0' }).end();
      return;
    }

    const body = await readBody(req, maxObjectBytes + 1024 * 1024);
    let meta: Record<string, unknown> = {};
    let data: Buffer;
    let contentType: string | undefined;
    if (type === 'multipart') {
      const parsed = parseMultipart(body, header(req, 'content-type') ?? '');
      ({ meta, data } = parsed);
      contentType = parsed.dataType;
    } else if (type === 'media' || type === null) {
      data = body;
      contentType = header(req, 'content-type');
    } else {
      throw invalid(`Unknown uploadType: ${type}`);
    }
    if (data.length > maxObjectBytes) throw new HttpError(413, 'uploadTooLarge', `The object is larger than this server's limit of ${maxObjectBytes} bytes.`);
    const name = q.get('name') ?? (typeof meta.name === 'string' ? meta.name : '');
    checkObjectName(name);
    checkHashes(data, header(req, 'x-goog-hash'), meta);
    // Checked here to skip staging a doomed upload; commit checks again, which is what counts.
    const early = preconditionFailure(q, store.bucket(bucketName).objects.get(name), false);
    if (early) throw early;
    const obj = await store.commit(bucketName, name, await store.stage(bucketName, data), data, draftFrom(meta, contentType), q);
    sendJson(res, 200, objectResource(base, bucketName, obj));
  }

  async function resumablePut(req: IncomingMessage, res: ServerResponse, id: string, base: string): Promise<void> {
    const session = store.sessions.get(id);
    if (!session) throw notFound('No such upload session.');
    if (req.method === 'DELETE') {
      store.sessions.delete(id);
      res.writeHead(499, { 'content-length': '0' }).end();
      return;
    }
    if (req.method !== 'PUT') throw new HttpError(501, 'notImplemented', `patchbay's gcs-server does not implement ${req.method} on an upload session`);
    const body = await readBody(req, maxObjectBytes + 1);
    if (session.result) return sendJson(res, 200, session.result);

    // Content-Range: "bytes A-B/T" (a chunk), "bytes A-*/T" (the rest, in this request), "bytes */T" (status); T may be "*".
    const range = header(req, 'content-range') ?? 'bytes 0-*/*';
    // (an empty last chunk comes as "bytes N-(N-1)/N", e.g. "bytes 0--1/0" for an empty object)
    const m = /^bytes (?:(\d+)-(-?\d+|\*)|\*)\/(\d+|\*)$/.exec(range.trim());
    if (!m) throw invalid(`Invalid Content-Range: ${range}`);
    const total = m[3] === '*' ? undefined : Number(m[3]);
    let final = false;
    if (m[1] === undefined) {
      if (body.length > 0) throw invalid('A status request has no body.');
      final = total !== undefined && total === session.received;
    } else {
      const start = Number(m[1]);
      if (start > session.received) throw invalid(`Chunk starts at ${start} but ${session.received} bytes were received.`);
      const fresh = body.subarray(session.received - start); // bytes before `received` were already stored
      if (m[2] !== '*' && Number(m[2]) - start + 1 !== body.length) throw invalid(`Content-Range ${range} does not match the ${body.length} bytes sent.`);
      if (fresh.length > 0) {
        session.chunks.push(fresh);
        session.received += fresh.length;
      }
      if (session.received > maxObjectBytes)
        throw new HttpError(413, 'uploadTooLarge', `The object is larger than this server's limit of ${maxObjectBytes} bytes.`);
      if (total !== undefined && session.received > total) throw invalid(`More than the announced ${total} bytes were sent.`);
      final = total !== undefined ? session.received === total : m[2] === '*';
    }
    if (!final) {
      const headers: Record<string, string> = { 'content-length': '0' };
      if (session.received > 0) headers.range = `bytes=0-${session.received - 1}`;
      res.writeHead(308, headers).end();
      return;
    }
    const data = Buffer.concat(session.chunks, session.received);
    session.chunks = [data];
    checkHashes(data, header(req, 'x-goog-hash'));
    try {
      const obj = await store.commit(session.bucket, session.name, await store.stage(session.bucket, data), data, session.draft, session.conditions);
      session.result = objectResource(base, session.bucket, obj);
    } catch (err) {
      store.sessions.delete(id); // a failed precondition ends the session, as on GCS
      throw err;
    }
    session.chunks = [];
    // A client whose response got lost asks again; answer it for a while, then forget the session.
    setTimeout(() => store.sessions.delete(id), 10 * 60_000).unref();
    sendJson(res, 200, session.result);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) {
        if (err.status === 413) res.setHeader('connection', 'close');
        sendError(res, err);
        return;
      }
      process.stderr.write(`gcs-server: ${req.method} ${req.url}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      sendError(res, new HttpError(500, 'backendError', err instanceof Error ? err.message : String(err)));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await store.idle();
    },
  };
}

/** `node dist/infra/local/gcs-server.js [--port N] [--host H] [--dir DIR] [--bucket NAME]...` */
async function main(): Promise<void> {
  const env = process.env;
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: env.GCS_SERVER_PORT ?? '4443' },
      host: { type: 'string', default: env.GCS_SERVER_HOST ?? '127.0.0.1' },
      dir: { type: 'string', default: env.GCS_SERVER_DIR },
      bucket: { type: 'string', multiple: true, default: (env.GCS_SERVER_BUCKETS ?? '').split(',').filter(Boolean) },
      signer: { type: 'string', multiple: true, default: (env.GCS_SERVER_SIGNERS ?? '').split(',').filter(Boolean) },
    },
  });
  // Service-account key files ({client_email, private_key}) whose signed URLs are accepted.
  const signers: Record<string, string> = {};
  for (const file of values.signer) {
    const key = JSON.parse(await readFile(file, 'utf8')) as { client_email: string; private_key: string };
    signers[key.client_email] = key.private_key;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port / GCS_SERVER_PORT: not a port: ${values.port}`);
  const srv = await startGcsServer({ port, host: values.host, dir: values.dir, buckets: values.bucket, signers });
  // The first line is the url alone, so scripts can read it.
  process.stdout.write(`${srv.url}\n`);
  process.stdout.write(`gcs-server (${values.dir ? `data in ${values.dir}` : 'in memory'}): STORAGE_EMULATOR_HOST=${srv.url}\n`);
  exitOnSignal(srv.close);
}

runIfMain(import.meta.url, 'gcs-server', main);
