/**
 * The Firestore ledger's consumer cursors: one document per consumer and scope
 * (<root>/{id}/cursors/{consumer}), which may exist for a scope id the log does not know.
 *
 * The guarantee kept here: a cursor moves only from the position its mover read, so of two
 * racing deliveries exactly one wins. Compare-and-set without a transaction: every write moves a
 * cursor strictly forward, so a document that changed since it was read (a failed precondition),
 * or that already exists when we expected none, is no longer at `expected`.
 */
import { PatchbayError } from '../../../errors.js';
import type { ConsumerCursors } from '../../../ports/index.js';
import { ALREADY_EXISTS, FAILED_PRECONDITION, hasCode, num } from './codec.js';
import type { Layout } from './layout.js';

export class FirestoreCursors implements ConsumerCursors {
  constructor(private readonly docs: Layout) {}

  async getCursor(consumer: string, id: string): Promise<number> {
    return num((await this.docs.cursor(consumer, id).get()).get('ii'));
  }

  async advanceCursor(consumer: string, id: string, expected: number, to: number): Promise<boolean> {
    if (!(to > expected)) throw new PatchbayError('internal', 'a cursor only moves forward');
    const ref = this.docs.cursor(consumer, id);
    const data = { consumer, scope: id, ii: to };
    try {
      if (expected === 0) {
        await ref.create(data);
        return true;
      }
      const snap = await ref.get();
      if (num(snap.get('ii')) !== expected) return false;
      await ref.update(data, { lastUpdateTime: snap.updateTime });
      return true;
    } catch (err) {
      if (hasCode(err, ALREADY_EXISTS) || hasCode(err, FAILED_PRECONDITION)) return false;
      throw err;
    }
  }
}
