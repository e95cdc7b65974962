/**
 * The Firestore ledger's outbox: the published watermark and the `pending` mark, in their own
 * document (<root>/~outbox/watermarks/{id}), away from the head: publishers and the sweeper never
 * read or write the head, so they never contend with commits for it (contention on one document
 * is what makes Firestore slow).
 *
 * A commit writes the outbox blindly (no read, so no lock; see writesFor in ./plan.ts): `ii` and
 * `pending` = the oldest unpublished commit's `updated` time (a minimum transform). The guarantee
 * kept here: an unpublished scope is never lost from `listUnpublished`. `pending` is removed only
 * by a write that is conditional on the exact outbox version in which published >= ii; a commit in
 * between changes that version, so the removal fails and is decided again.
 */
import { type DocumentSnapshot, FieldValue } from '@google-cloud/firestore';
import type { Outbox } from '../../../ports/index.js';
import { FAILED_PRECONDITION, hasCode, num } from './codec.js';
import type { Layout } from './layout.js';

const OUTBOX_RETRIES = 20;

export class FirestoreOutbox implements Outbox {
  constructor(
    private readonly docs: Layout,
    /** For tests: runs between reading the outbox and writing it. */
    private readonly beforeOutboxWrite: (id: string) => Promise<void>,
  ) {}

  async markPublished(id: string, to: number, from?: number): Promise<void> {
    const floor = from === undefined ? Number.NEGATIVE_INFINITY : from - 1;
    await this.advanceOutbox(id, (published) => (published >= floor ? to : published));
  }

  /**
   * Moves the outbox's watermark to `next(published)`, and drops its `pending` mark once the
   * watermark covers ii. Returns the outbox as it left it (null: no such scope).
   */
  private async advanceOutbox(id: string, next: (published: number) => number): Promise<{ published: number; ii: number } | null> {
    const ref = this.docs.outbox(id);
    for (let attempt = 0; ; attempt++) {
      const snap = await ref.get();
      if (!snap.exists) return null;
      const published = num(snap.get('published'));
      const ii = num(snap.get('ii'));
      const target = Math.max(published, next(published));
      const clear = snap.get('pending') !== undefined && target >= ii;
      if (target === published && !clear) return { published, ii };
      await this.beforeOutboxWrite(id);
      if (!clear) {
        // The watermark only ever rises (maximum), and a floor checked above stays true as it
        // rises, so this needs no precondition.
        await ref.update({ published: FieldValue.maximum(target) });
        return { published: target, ii };
      }
      try {
        // Conditional on the version read: a commit since then (ii up, pending set) fails this.
        await ref.update({ published: FieldValue.maximum(target), pending: FieldValue.delete() }, { lastUpdateTime: snap.updateTime });
        return { published: target, ii };
      } catch (err) {
        if (!hasCode(err, FAILED_PRECONDITION) || attempt >= OUTBOX_RETRIES) throw err;
      }
    }
  }

  async listUnpublished(before: number, limit: number): Promise<Array<{ id: string; published: number; ii: number }>> {
    const out: Array<{ id: string; published: number; ii: number }> = [];
    const marked = this.docs.outboxes().where('pending', '<', before).orderBy('pending');
    let query = marked;
    while (out.length < limit) {
      const want = limit - out.length;
      const page = await query.limit(want).get();
      for (const d of page.docs) {
        const id = d.get('id') as string;
        let s: { published: number; ii: number } | null = { published: num(d.get('published')), ii: num(d.get('ii')) };
        // A mark left where published >= ii (a watermark set past a later commit's index): drop
        // it, unless a commit has just moved ii again.
        if (s.published >= s.ii) s = await this.advanceOutbox(id, (p) => p);
        if (s && s.published < s.ii) out.push({ id, ...s });
      }
      if (page.size < want) break;
      query = marked.startAfter(page.docs[page.docs.length - 1] as DocumentSnapshot);
    }
    return out;
  }
}
