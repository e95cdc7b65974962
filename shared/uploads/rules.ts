/**
 * Upload scopes are written by the platform only. Their ids start with UPLOAD_PREFIX; their owner
 * (the uploader) may read, share and delete them like any scope, but every patch from a client is
 * refused (`forbidden`), so `status`, `size` and `md5` always say what the platform saw. The
 * platform's own patches (SYSTEM_USER: ready, expired, failed) pass.
 */
import { SYSTEM_USER } from '../domains/apply.js';
import type { CommitRules } from '../engine/decide.js';
import { PatchbayError } from '../errors.js';

export const UPLOAD_PREFIX = 'upload:';
export const isUploadScope = (id: string): boolean => id.startsWith(UPLOAD_PREFIX);

export function uploadRules(base: CommitRules): CommitRules {
  return {
    ...base,
    authorize(ctx) {
      if (!isUploadScope(ctx.id)) return base.authorize(ctx);
      if (ctx.user === SYSTEM_USER) return;
      base.authorize(ctx); // a stranger learns what it would of any scope (scope_not_found)
      throw new PatchbayError('forbidden', 'an upload scope is written by patchbay only', { id: ctx.id });
    },
  };
}
