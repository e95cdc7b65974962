/**
 * The RFC 6902 patch from one JSON state to another, for `scope.draft(fn)`: fast-json-patch's
 * `compare` (already the server's patch engine), and a `replace` of the root when the two are not
 * both objects or both arrays. The result is checked by the caller: it applies with the server's
 * semantics (./apply.ts) and must give exactly the drafted state.
 */
import fjp from 'fast-json-patch';
import type { Json } from '../../shared/json.js';
import type { Patch } from '../../shared/wire.js';

const container = (v: Json): 'array' | 'object' | null => (Array.isArray(v) ? 'array' : v !== null && typeof v === 'object' ? 'object' : null);

export function diff(before: Json, after: Json): Patch {
  const kind = container(before);
  if (kind === null || kind !== container(after)) {
    return JSON.stringify(before) === JSON.stringify(after) ? [] : [{ op: 'replace', path: '', value: after }];
  }
  return fjp.compare(before as object, after as object) as Patch;
}
