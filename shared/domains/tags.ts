/**
 * Tags (issue 13, part 6): a user tags a scope it may read with a tag type and an optional context.
 * A tag is itself a scope: of the reserved type TAG_SCOPE_TYPE, owned by the tagger, in the
 * tagger's domain, with the state `{tagType, target, context}` (TagState), so everything scopes
 * have (access, streams, deletion, the mirror's `tags` table: shared/mirror/sql.ts) tags have too.
 *
 * - One tag per (tagger's domain, tagger, target, tag type): the tag scope is the tagger's named
 *   scope `patchbay/tag/<tagType>/<target>`, and the ledger keeps names unique per (domain,
 *   owner) in the create's own transaction, so concurrent identical tags give one scope
 *   (Engine.createOrResolve). Names and types starting with `patchbay/` are refused on the
 *   generic routes, and a tag scope takes no patch and no rename (shared/engine/decide.ts,
 *   Engine.rename): its name, state and index entry never disagree.
 * - Its access at creation: the target's visibility at that moment, with no listed users, so a
 *   tag is never readable by more callers than the target was. The tagger may change it later
 *   like any scope's.
 * - "Tags on a target" across taggers need an index: a record of kind `tag` per tag, keyed
 *   `<target>/<tagType>/<tagId>`, holding what the listing shows. It is written BEFORE the tag
 *   scope is created, so a crash leaves at most an entry without a scope, never a tag without an
 *   entry; an entry whose scope does not exist (a crash, a lost create race, a deletion whose
 *   cleanup did not run) is skipped by listings and removed by them once it is older than
 *   ENTRY_GRACE_MS (a younger one may be a create in flight). Deleting a tag scope removes its
 *   entry at once (`forget`, from the delete route), best effort.
 * - Reading a listing: each entry's tag scope is read (its head) and shown only to callers its own
 *   access lets read it, so a private tag is seen by its tagger only.
 */
import { randomUUID } from 'node:crypto';
import { type Caller, canRead } from '../engine/access.js';
import type { Engine, ScopeView } from '../engine/engine.js';
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { RecordStore } from '../ports/records.js';
import { type CreateTagRequest, type ScopeMeta, TAG_SCOPE_TYPE, TAG_TYPE, type TagState } from '../protocol.js';

const KIND = 'tag';
/** An index entry without its scope is left alone this long (its create may still be running), then removed. */
export const ENTRY_GRACE_MS = 60_000;

/** What a listing shows of a tag. */
export interface TagView {
  id: string;
  owner: string;
  domain: string;
  tagType: string;
  target: string;
  context: string[];
  created: number;
}

/** An index entry's value: the tag as listings show it (a tag never changes, so it stays true). */
type Entry = TagView & { [k: string]: Json };

/** The name of `owner`'s tag of `tagType` on `target` (unique per (domain, owner), like every name). */
export function tagName(tagType: string, target: string): string {
  return `${TAG_SCOPE_TYPE}/${tagType}/${target}`;
}

/** The tag type and target a tag scope's name carries, or null when it is not a tag's name. */
export function parseTagName(name: string | null): { tagType: string; target: string } | null {
  if (name === null || !name.startsWith(`${TAG_SCOPE_TYPE}/`)) return null;
  const rest = name.slice(TAG_SCOPE_TYPE.length + 1);
  const slash = rest.indexOf('/');
  if (slash < 0) return null;
  const tagType = rest.slice(0, slash);
  return TAG_TYPE.test(tagType) ? { tagType, target: rest.slice(slash + 1) } : null;
}

const entryKey = (target: string, tagType: string, id: string) => `${target}/${tagType}/${id}`;

export interface TagPage {
  tags: TagView[];
  /** Where the next page starts (the route makes it opaque); null on the last page. */
  next: string | null;
}

export class Tags {
  constructor(
    private readonly records: RecordStore,
    private readonly engine: Engine,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Tags `target` for `tagger`: `{view, created: true}` with the new tag scope, or `created:
   * false` with the tagger's existing tag of that type on that target, as it is (its context is
   * not changed). `scope_not_found` when the tagger may not read the target, with nothing stored.
   * `beforeCreate` runs only when a tag scope is about to be created (the create rate and quotas).
   */
  async tag(
    tagger: Caller & { domain: string },
    target: string,
    req: CreateTagRequest,
    beforeCreate: () => Promise<void>,
  ): Promise<{ view: ScopeView; created: boolean }> {
    const { meta: targetMeta } = await this.engine.head(target);
    if (!canRead(targetMeta, tagger)) throw new PatchbayError('scope_not_found', `scope ${target} does not exist`, { id: target });
    const name = tagName(req.tagType, target);
    const held = await this.engine.resolveName(tagger.domain, tagger.id, name);
    if (held !== null) return { view: await this.engine.getScope(held), created: false };

    const id = randomUUID();
    const state: TagState = { tagType: req.tagType, target, context: req.context ?? [] };
    const entry: Entry = { id, owner: tagger.id, domain: tagger.domain, tagType: req.tagType, target, context: state.context, created: this.now() };
    const key = entryKey(target, req.tagType, id);
    // The entry first: a crash between the two leaves an entry without a scope (skipped, then removed), never an unlisted tag.
    const stored = await this.records.put(KIND, key, entry, 0);
    if (!stored) throw new PatchbayError('internal', `tag index entry ${key} exists already`);
    const drop = () => this.records.delete(KIND, key, stored.rev).catch(() => false);
    try {
      const visibility = targetMeta.access?.visibility ?? 'authenticated';
      const out = await this.engine.createOrResolve(
        tagger.id,
        name,
        { type: TAG_SCOPE_TYPE, state: state as unknown as Json, access: { visibility, readers: [], writers: [] } },
        { domain: tagger.domain, id, beforeCreate },
      );
      if (!out.created) await drop(); // another request made this tag first: its entry is the one
      return out;
    } catch (err) {
      await drop();
      throw err;
    }
  }

  /**
   * A page of the tags on `target` (of `tagType`, or every type) that `caller` may read, in
   * index order, starting after `after` (a previous page's `next`). The route has checked that
   * the caller may read the target. A page may hold fewer than `limit` tags (entries the caller
   * may not read are skipped) and still have a `next`.
   */
  async onTarget(caller: Caller | null, target: string, q: { tagType?: string; after?: string; limit: number }): Promise<TagPage> {
    const prefix = q.tagType === undefined ? `${target}/` : `${target}/${q.tagType}/`;
    if (q.after !== undefined && !q.after.startsWith(prefix)) {
      throw new PatchbayError('invalid_request', 'not a cursor of this listing', { issues: [{ path: ['cursor'], message: 'unknown cursor' }] });
    }
    const rows = await this.records.list(KIND, { prefix, after: q.after, limit: q.limit });
    const seen = await Promise.all(
      rows.map(async (r) => {
        const entry = r.value as Entry;
        const meta = await this.liveMeta(entry);
        if (meta === null) {
          if (entry.created + ENTRY_GRACE_MS < this.now()) await this.records.delete(KIND, r.key, r.rev).catch(() => false);
          return null;
        }
        return canRead(meta, caller) ? view(entry) : null;
      }),
    );
    const last = rows.at(-1);
    return { tags: seen.filter((t): t is TagView => t !== null), next: rows.length === q.limit && last ? last.key : null };
  }

  /**
   * A page of `owner`'s own tags in `domain` (of `tagType`, or every type), in the ledger's
   * listing order (Ledger.listFor over the tag scopes). A page may hold fewer than `limit`.
   */
  async mine(owner: Caller, q: { domain: string; tagType?: string; after?: string; limit: number }): Promise<TagPage> {
    const page = await this.engine.listScopes(owner, { type: TAG_SCOPE_TYPE, domain: q.domain, after: q.after, limit: q.limit });
    const tags = await Promise.all(
      page.scopes.map(async (s) => {
        const parsed = parseTagName(s.meta.name);
        if (s.meta.owner !== owner.id || parsed === null || (q.tagType !== undefined && parsed.tagType !== q.tagType)) return null;
        const state = (await this.engine.getScope(s.id).then((v) => v.state as unknown as TagState)).context;
        return {
          id: s.id,
          owner: s.meta.owner,
          domain: s.meta.domain,
          tagType: parsed.tagType,
          target: parsed.target,
          context: state,
          created: s.meta.created,
        };
      }),
    );
    return { tags: tags.filter((t): t is TagView => t !== null), next: page.next };
  }

  /** After tag scope `id` (with this meta) was deleted: removes its index entry. Best effort (listings remove what is left). */
  async forget(id: string, meta: ScopeMeta): Promise<void> {
    if (meta.type !== TAG_SCOPE_TYPE) return;
    const parsed = parseTagName(meta.name);
    if (parsed === null) return;
    const key = entryKey(parsed.target, parsed.tagType, id);
    const r = await this.records.get(KIND, key);
    if (r) await this.records.delete(KIND, key, r.rev);
  }

  /** The tag scope's meta if it exists and is the tag the entry describes; null otherwise. */
  private async liveMeta(entry: Entry): Promise<ScopeMeta | null> {
    try {
      const { meta } = await this.engine.head(entry.id);
      const parsed = parseTagName(meta.name);
      const same = meta.type === TAG_SCOPE_TYPE && meta.owner === entry.owner && parsed?.target === entry.target && parsed.tagType === entry.tagType;
      return same ? meta : null;
    } catch (err) {
      if (err instanceof PatchbayError && err.code === 'scope_not_found') return null;
      throw err;
    }
  }
}

const view = (e: Entry): TagView => ({
  id: e.id,
  owner: e.owner,
  domain: e.domain,
  tagType: e.tagType,
  target: e.target,
  context: e.context,
  created: e.created,
});
