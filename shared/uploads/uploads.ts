/**
 * Uploads and downloads by signed URL. An upload is a scope (id `upload:<uuid>`, type = the
 * file's MIME type, owned by the uploader, written by patchbay only: shared/uploads/rules.ts)
 * whose state says where the file is:
 * `{status: 'pending' | 'ready' | 'expired' | 'failed', name, type, size, md5, object, expires, error}`.
 *
 * - `create`: checks the type (PATCHBAY_UPLOAD_TYPES, and the domain's `limits.uploadTypes`), the
 *   size (PATCHBAY_MAX_UPLOAD_BYTES, or the domain's lower `limits.maxUploadBytes`), the
 *   rate and the file-bytes quota, creates the scope `pending`, notes it in the pending list (a
 *   record of kind `upload-pending`, keyed by its expiry so the sweep reads the oldest first) and
 *   answers a signed PUT URL (the FileStore port) valid PATCHBAY_UPLOAD_URL_TTL_S.
 * - `landed`: the object is there (the embedded PUT finished; Cloud Storage's finalize
 *   notification; `complete`, when the client says so; the sweep, finding it). Checks it against
 *   the upload (size, type, MD5) and marks the scope `ready` with what was stored, or `failed`
 *   (the object deleted). Idempotent: only a pending upload changes (a `test` op in the patch).
 * - `sweep`: an upload still pending PATCHBAY_UPLOAD_GRACE_S after its URL expired becomes
 *   `expired`, its object (if a late one landed) deleted, its reserved bytes given back.
 * - `download`: a signed GET URL for a ready upload (the route checked the caller may read it).
 * - `purge`: deleting the scope deletes the object (called by the deleter's purge, so a crash
 *   mid-delete is finished by the deleted-scopes sweep).
 */
import { randomUUID } from 'node:crypto';
import type { Config, UploadsConfig } from '../config.js';
import type { ActiveConfigs } from '../domains/active.js';
import { SYSTEM_USER } from '../domains/apply.js';
import type { Engine } from '../engine/engine.js';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { FileInfo, FileStore, SignedUrl } from '../ports/files.js';
import type { RecordStore } from '../ports/records.js';
import type { PatchRequest } from '../protocol.js';
import { isUploadScope, UPLOAD_PREFIX } from './rules.js';

export type UploadStatus = 'pending' | 'ready' | 'expired' | 'failed';

export interface UploadState {
  status: UploadStatus;
  name: string | null;
  type: string;
  /** Declared while pending (or null), as stored once ready. */
  size: number | null;
  /** Base64 MD5: declared while pending (or null), as stored once ready. */
  md5: string | null;
  /** The object's key in the file store. */
  object: string;
  /** When the upload URL expires, ms since epoch. */
  expires: number;
  /** Why an upload failed (`too_large`, `size_mismatch`, `type_mismatch`, `md5_mismatch`), else null. */
  error: string | null;
}

export interface UploadRequest {
  name?: string;
  type: string;
  size?: number;
  md5?: string;
}

/** What the uploads need of the limits (shared/http/limits.ts). */
export interface UploadLimits {
  upload(user: string, bytes: number): Promise<void>;
  files(user: string, delta: number): void;
  created(owner: string, bytes: number): void;
}

/** The push endpoint Cloud Storage's notifications are delivered to (`POST /push/uploads`). */
export const UPLOADS_PUSH = 'uploads';

const PENDING = 'upload-pending';
const SESSION = 'sys:uploads';
/** The (session, si) of each platform patch: one of each per upload, so a repeat is a duplicate. */
const SI = { ready: 1, expired: 2, failed: 3 } as const;

export const objectKey = (id: string): string => `uploads/${id.slice(UPLOAD_PREFIX.length)}`;
/** The upload scope of an object key, or null for a key that is not an upload's. */
export function uploadOfObject(key: string): string | null {
  const m = /^uploads\/([0-9a-f-]{36})$/.exec(key);
  return m ? `${UPLOAD_PREFIX}${m[1]}` : null;
}
const pendingKey = (expires: number, id: string): string => `${String(expires).padStart(15, '0')}/${id}`;

/** Whether a MIME type is one PATCHBAY_UPLOAD_TYPES allows (`type/*` and `*\/*` patterns). */
export function typeAllowed(type: string, allowed: readonly string[]): boolean {
  const essence = (type.split(';')[0] as string).trim().toLowerCase();
  const [major] = essence.split('/');
  return allowed.some((p) => {
    const q = p.toLowerCase();
    return q === '*/*' || q === essence || (q.endsWith('/*') && q.slice(0, -2) === major);
  });
}

export class Uploads {
  constructor(
    private readonly engine: Engine,
    readonly files: FileStore,
    private readonly records: RecordStore,
    private readonly limits: UploadLimits,
    private readonly config: UploadsConfig & Pick<Config, 'quotaFileBytes'>,
    /** The domains' configurations: their `limits.maxUploadBytes` and `limits.uploadTypes` only tighten the deployment's. */
    private readonly configs?: ActiveConfigs,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts an upload for `user` in `domain`: the pending scope and a signed PUT URL. */
  async create(user: string, domain: string, req: UploadRequest): Promise<{ id: string; upload: SignedUrl; state: UploadState }> {
    await this.configs?.prepare?.(domain);
    const own = this.configs?.get(domain)?.config.limits;
    for (const allowed of [this.config.uploadTypes, own?.uploadTypes ?? ['*/*']]) {
      if (!typeAllowed(req.type, allowed))
        throw new PatchbayError('unsupported_media_type', `uploads of ${req.type} are not accepted here`, { allowed: [...allowed] });
    }
    const max = Math.min(this.config.maxUploadBytes, own?.maxUploadBytes ?? Number.POSITIVE_INFINITY);
    if (req.size !== undefined && req.size > max) throw new PatchbayError('too_large', `a file may be at most ${max} bytes`, { limit: 'maxUploadBytes', max });
    const reserved = req.size ?? 0;
    await this.limits.upload(user, reserved);
    const id = `${UPLOAD_PREFIX}${randomUUID()}`;
    const expires = this.now() + this.config.uploadUrlTtlSeconds * 1000;
    const state: UploadState = {
      status: 'pending',
      name: req.name ?? null,
      type: req.type,
      size: req.size ?? null,
      md5: req.md5 ?? null,
      object: objectKey(id),
      expires,
      error: null,
    };
    const upload = await this.files.signUpload(state.object, { contentType: req.type, expires, maxBytes: req.size ?? max, md5: req.md5 });
    // Noted before the scope exists: a crash in between leaves a note the sweep drops, never a pending scope nothing expires.
    await this.records.put(PENDING, pendingKey(expires, id), { id, owner: user, reserved }, 0);
    const view = await this.engine.createScope(user, { id, type: req.type, state: state as unknown as Json }, { domain });
    this.limits.created(user, view.meta.size);
    this.limits.files(user, reserved);
    return { id, upload, state };
  }

  /**
   * Every user's file bytes as the stored uploads say (pending: the size declared, ready: the size
   * stored; expired, failed and deleted ones hold none), which is what `create`, `landed`, the
   * sweep and `deleted` count as they go: what embedded mode seeds its in-memory counters with at
   * start, so the file-bytes quota survives a restart. Reads the upload scopes only (their ids
   * sort together under `upload:`), one page at a time.
   */
  async fileUsage(listScopes: (after: string, limit: number) => Promise<Array<{ id: string }>>): Promise<Map<string, number>> {
    const totals = new Map<string, number>();
    let after = UPLOAD_PREFIX;
    for (;;) {
      const page = await listScopes(after, 500);
      for (const { id } of page) {
        if (!isUploadScope(id)) return totals;
        let found: Awaited<ReturnType<Uploads['state']>>;
        try {
          found = await this.state(id);
        } catch (err) {
          if (err instanceof PatchbayError && err.code === 'scope_not_found') continue; // deleted meanwhile
          throw err;
        }
        const { state, owner } = found;
        if (state.status === 'pending' || state.status === 'ready') totals.set(owner, (totals.get(owner) ?? 0) + (state.size ?? 0));
      }
      if (page.length < 500) return totals;
      after = (page[page.length - 1] as { id: string }).id;
    }
  }

  /** The upload's state, or `scope_not_found` for a scope that is not an upload. */
  async state(id: string): Promise<{ state: UploadState; owner: string; domain: string }> {
    if (!isUploadScope(id)) throw new PatchbayError('scope_not_found', `${id} is not an upload`, { id });
    const view = await this.engine.getScope(id);
    return { state: view.state as unknown as UploadState, owner: view.meta.owner, domain: view.meta.domain };
  }

  /**
   * The object of upload `id` is stored, as `info` says (null: look it up). Marks the upload ready
   * (or failed, deleting the object) if it is still pending; returns its state after. `incomplete`
   * (409 `upload_incomplete`) when there is no object yet.
   */
  async landed(id: string, info: FileInfo | null = null): Promise<UploadState> {
    const { state, owner, domain } = await this.state(id);
    if (state.status !== 'pending') return state;
    const found = info ?? (await this.files.stat(state.object));
    if (!found) throw new PatchbayError('upload_incomplete', 'nothing has been uploaded to this upload yet', { id });
    const error =
      found.size > this.config.maxUploadBytes || (state.size !== null && found.size > state.size)
        ? 'too_large'
        : state.size !== null && found.size !== state.size
          ? 'size_mismatch'
          : found.contentType !== state.type
            ? 'type_mismatch'
            : state.md5 !== null && found.md5 !== state.md5
              ? 'md5_mismatch'
              : null;
    if (error !== null) {
      await this.files.delete(state.object);
      await this.finish(id, domain, state, 'failed', { error });
      this.limits.files(owner, -(state.size ?? 0));
    } else {
      await this.finish(id, domain, state, 'ready', { size: found.size, md5: found.md5 });
      this.limits.files(owner, found.size - (state.size ?? 0));
    }
    return (await this.state(id)).state;
  }

  /**
   * A finalize notification of Cloud Storage (shared/uploads/notifications.ts): the upload whose
   * object it names has landed. Objects of other buckets, and objects that are no upload's, are
   * ignored. Returns the upload's id and status, or null when ignored.
   */
  async finalized(bucket: string, expectedBucket: string, object: string, info: FileInfo): Promise<{ id: string; status: UploadStatus } | null> {
    const id = bucket === expectedBucket ? uploadOfObject(object) : null;
    if (id === null) return null;
    try {
      return { id, status: (await this.landed(id, info)).status };
    } catch (err) {
      // The upload was deleted meanwhile: its purge deleted (or deletes) the object.
      if (err instanceof PatchbayError && err.code === 'scope_not_found') return { id, status: 'expired' };
      throw err;
    }
  }

  /**
   * A signed GET URL for a ready upload (`upload_incomplete` otherwise); the caller's read access
   * is the route's to check. A `public` scope's file (with PATCHBAY_PUBLIC_DOWNLOAD_URL_TTL_S
   * set) gets a long-lived, cacheable URL: signed as of the start of the current window (half
   * the TTL), so every caller in that window gets the same URL, which then works at least
   * another half TTL; the bytes may be cached publicly for half the TTL, so no cache outlives
   * the URL it was filled through. Private files get a short URL of their own.
   */
  async download(id: string, opts: { public?: boolean } = {}): Promise<SignedUrl & { cache: 'public' | 'private'; windowEnd?: number }> {
    const { state } = await this.state(id);
    if (state.status !== 'ready') throw new PatchbayError('upload_incomplete', `the upload is ${state.status}, not ready`, { id, status: state.status });
    const ttl = this.config.publicDownloadUrlTtlSeconds;
    if (opts.public && ttl > 0) {
      const half = Math.max(1, Math.floor(ttl / 2));
      const from = Math.floor(this.now() / 1000 / half) * half * 1000;
      const url = await this.files.signDownload(state.object, { from, expires: from + ttl * 1000, contentType: state.type, publicCacheSeconds: half });
      return { ...url, cache: 'public', windowEnd: from + half * 1000 };
    }
    const url = await this.files.signDownload(state.object, { expires: this.now() + this.config.downloadUrlTtlSeconds * 1000, contentType: state.type });
    return { ...url, cache: 'private' };
  }

  /** Deletes the object of a deleted upload scope (the deleter's purge; repeatable). */
  async purge(id: string): Promise<void> {
    if (isUploadScope(id)) await this.files.delete(objectKey(id));
  }

  /**
   * Gives back a deleted upload's file bytes (the delete route, which read its state before): a
   * pending one's reservation, a ready one's size. An expired or failed upload gave them back already.
   */
  deleted(owner: string, state: UploadState): void {
    if (state.status === 'pending' || state.status === 'ready') this.limits.files(owner, -(state.size ?? 0));
  }

  /**
   * Expires what is pending past its URL's expiry plus PATCHBAY_UPLOAD_GRACE_S (an object found
   * there is taken as landed instead: a missed notification). Returns how many it settled.
   */
  async sweep(): Promise<number> {
    const before = this.now() - this.config.uploadGraceSeconds * 1000;
    let settled = 0;
    for (let page = 0; page < 10; page++) {
      const notes = await this.records.list(PENDING, { limit: 50 });
      const due = notes.filter((n) => Number(n.key.split('/')[0]) < before);
      for (const n of due) {
        const { id, owner, reserved } = n.value as { id: string; owner: string; reserved: number };
        try {
          const { state, domain } = await this.state(id);
          if (state.status === 'pending') {
            const info = await this.files.stat(state.object);
            if (info) await this.landed(id, info);
            else {
              await this.finish(id, domain, state, 'expired', {});
              await this.files.delete(state.object); // one that lands after this check is deleted by the scope's delete
              this.limits.files(owner, -reserved);
            }
          }
        } catch (err) {
          if (!(err instanceof PatchbayError && err.code === 'scope_not_found')) throw err;
        }
        await this.records.delete(PENDING, n.key, n.rev);
        settled++;
      }
      if (due.length < notes.length || notes.length < 50) break;
    }
    return settled;
  }

  /** The platform's patch that moves a pending upload to `status`; a repeat is a duplicate, a lost race a `test` failure, both ignored. */
  private async finish(id: string, domain: string, state: UploadState, status: Exclude<UploadStatus, 'pending'>, fields: Partial<UploadState>): Promise<void> {
    const patch: PatchRequest['patch'] = [
      { op: 'test', path: '/status', value: 'pending' },
      { op: 'replace', path: '/status', value: status },
      ...Object.entries(fields).map(([k, v]) => ({ op: 'replace' as const, path: `/${k}`, value: v as Json })),
    ];
    try {
      await this.engine.submit(id, SYSTEM_USER, { patch, session: SESSION, si: SI[status] }, { domain });
    } catch (err) {
      if (err instanceof PatchbayError && (err.code === 'patch_failed' || err.code === 'duplicate_mismatch')) return;
      throw err;
    }
    await this.dropNote(id, state.expires);
  }

  private async dropNote(id: string, expires: number): Promise<void> {
    const note = await this.records.get(PENDING, pendingKey(expires, id));
    if (note) await this.records.delete(PENDING, note.key, note.rev);
  }
}
