/**
 * The embedded file store: uploads and downloads through HMAC-signed URLs that the same HTTP
 * server answers (`PUT` and `GET /v1/files/{token}`, shared/http/routes/files.ts), with the bytes
 * in the local blob store. A token is `<claims>.<mac>`: base64url JSON claims (key, method,
 * content type, expiry in seconds, largest size, MD5; for downloads the start and how long a
 * public file may be cached) and an HMAC-SHA256 over them with a key
 * derived from the server's secret, so any change to a claim is refused, as Cloud Storage refuses
 * a tampered V4 URL. The content type is kept beside the object (`<key>.meta`), since the blob
 * store keeps bytes only.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { PatchbayError } from '../../errors.js';
import type { BlobStore } from '../../ports/blobs.js';
import type { DownloadGrant, FileGrant, FileInfo, FileServer, FileStore, SignedUrl, UploadGrant } from '../../ports/files.js';

const claimsSchema = z.strictObject({
  k: z.string().min(1),
  m: z.enum(['PUT', 'GET']),
  t: z.string().min(1),
  e: z.number().int(),
  n: z.number().int().min(0).optional(),
  h: z.string().optional(),
  /** GET: when the URL starts working, seconds (a public URL's window start). */
  f: z.number().int().optional(),
  /** GET: how long the bytes may be cached publicly, seconds. */
  c: z.number().int().min(1).optional(),
});
type FileClaims = z.infer<typeof claimsSchema>;

/** The path prefix the HTTP server answers signed file requests under. */
export const FILES_PATH = '/v1/files/';

const denied = (why: string) => new PatchbayError('forbidden', `signed URL refused: ${why}`);

export class SignedFiles implements FileStore, FileServer {
  private readonly key: Buffer;
  readonly server: FileServer = this;

  /**
   * `secret`: the server's secret (shared/http/auth.ts loadSecret); a key for file URLs is
   * derived from it. `publicUrl`: the origin the URLs name (empty: they are paths, and the route
   * answering the upload request resolves them against the request's Host).
   */
  constructor(
    private readonly blobs: BlobStore,
    secret: Uint8Array,
    private readonly publicUrl = '',
    private readonly now: () => number = Date.now,
  ) {
    this.key = createHmac('sha256', secret).update('patchbay signed files v1').digest();
  }

  private sign(claims: FileClaims): string {
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    const mac = createHmac('sha256', this.key).update(body).digest('base64url');
    return `${this.publicUrl.replace(/\/$/, '')}${FILES_PATH}${body}.${mac}`;
  }

  async signUpload(key: string, grant: UploadGrant): Promise<SignedUrl> {
    const claims: FileClaims = {
      k: key,
      m: 'PUT',
      t: grant.contentType,
      e: Math.floor(grant.expires / 1000),
      n: grant.maxBytes,
      ...(grant.md5 && { h: grant.md5 }),
    };
    const headers: Record<string, string> = { 'content-type': grant.contentType, ...(grant.md5 && { 'content-md5': grant.md5 }) };
    return { url: this.sign(claims), method: 'PUT', headers, expires: claims.e * 1000 };
  }

  async signDownload(key: string, grant: DownloadGrant): Promise<SignedUrl> {
    const claims: FileClaims = {
      k: key,
      m: 'GET',
      t: grant.contentType,
      e: Math.floor(grant.expires / 1000),
      ...(grant.from !== undefined && { f: Math.floor(grant.from / 1000) }),
      ...(grant.publicCacheSeconds !== undefined && { c: grant.publicCacheSeconds }),
    };
    return { url: this.sign(claims), method: 'GET', headers: {}, expires: claims.e * 1000 };
  }

  /**
   * The claims of `token` for a request of `method`: `forbidden` for a token that is not one of
   * ours (a changed claim or MAC), a wrong method, or one past its expiry.
   */
  verify(token: string, method: string): FileGrant {
    const [body, mac, extra] = token.split('.');
    if (body === undefined || mac === undefined || extra !== undefined) throw denied('not a file token');
    const want = createHmac('sha256', this.key).update(body).digest();
    const got = Buffer.from(mac, 'base64url');
    if (got.length !== want.length || !timingSafeEqual(got, want)) throw denied('bad signature');
    let claims: FileClaims;
    try {
      claims = claimsSchema.parse(JSON.parse(Buffer.from(body, 'base64url').toString('utf8')));
    } catch {
      throw denied('bad claims');
    }
    if (claims.m !== method && !(claims.m === 'GET' && method === 'HEAD')) throw denied(`signed for ${claims.m}, not ${method}`);
    if (claims.e * 1000 <= this.now()) throw denied('expired');
    if (claims.f !== undefined && claims.f * 1000 > this.now() + 60_000) throw denied('not valid yet');
    return {
      key: claims.k,
      method: claims.m,
      contentType: claims.t,
      expires: claims.e * 1000,
      ...(claims.c !== undefined && { publicCacheSeconds: claims.c }),
      ...(claims.n !== undefined && { maxBytes: claims.n }),
      ...(claims.h !== undefined && { md5: claims.h }),
    };
  }

  async write(grant: FileGrant, data: Uint8Array): Promise<FileInfo> {
    await this.blobs.put(`${grant.key}.meta`, Buffer.from(JSON.stringify({ contentType: grant.contentType })));
    await this.blobs.put(grant.key, data);
    return { size: data.byteLength, md5: md5(data), contentType: grant.contentType };
  }

  async read(key: string): Promise<{ data: Uint8Array; contentType: string } | null> {
    const data = await this.blobs.get(key);
    if (data === null) return null;
    return { data, contentType: await this.typeOf(key) };
  }

  async stat(key: string): Promise<FileInfo | null> {
    const data = await this.blobs.get(key);
    if (data === null) return null;
    return { size: data.byteLength, md5: md5(data), contentType: await this.typeOf(key) };
  }

  async delete(key: string): Promise<void> {
    await this.blobs.delete(key);
    await this.blobs.delete(`${key}.meta`);
  }

  private async typeOf(key: string): Promise<string> {
    const meta = await this.blobs.get(`${key}.meta`);
    if (meta === null) return 'application/octet-stream';
    return (JSON.parse(Buffer.from(meta).toString('utf8')) as { contentType: string }).contentType;
  }
}

const md5 = (data: Uint8Array): string => createHash('md5').update(data).digest('base64');
