/**
 * Ledger conformance, consumer cursors (ConsumerCursors in shared/ports/ledger.ts): a cursor moves
 * only from the position its mover expected, so of two racing deliveries exactly one wins.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Harness } from './fixtures.js';

export function consumerCursorsConformance({ open }: Harness): void {
  describe('consumer cursors', () => {
    it('start at 0, move only from the expected position, and are kept per consumer and scope', async () => {
      const l = await open();
      const a = `scope-${randomUUID()}`;
      const b = `scope-${randomUUID()}`;
      expect(await l.getCursor('mirror', a)).toBe(0);
      expect(await l.advanceCursor('mirror', a, 0, 3)).toBe(true);
      expect(await l.getCursor('mirror', a)).toBe(3);
      expect(await l.advanceCursor('mirror', a, 0, 5)).toBe(false); // stale expectation
      expect(await l.advanceCursor('mirror', a, 2, 5)).toBe(false);
      expect(await l.getCursor('mirror', a)).toBe(3);
      expect(await l.advanceCursor('mirror', a, 3, 4)).toBe(true);
      expect(await l.getCursor('mirror', a)).toBe(4);
      expect(await l.getCursor('mirror', b)).toBe(0);
      expect(await l.getCursor('worker', a)).toBe(0);
    });

    it('let exactly one of two racing advances from one position win', async () => {
      const l = await open();
      const id = `scope-${randomUUID()}`;
      const results = await Promise.all([l.advanceCursor('c', id, 0, 1), l.advanceCursor('c', id, 0, 2)]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect([1, 2]).toContain(await l.getCursor('c', id));
    });
  });
}
