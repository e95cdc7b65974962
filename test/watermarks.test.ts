/**
 * The watermark writer keeps one watermark write per scope in flight, whichever way a mark
 * arrives: runs noted after publishes (batched) and the sweeper's marks (written at once) share
 * that one path, so a sweep can never overlap a batched write and leave the watermark stuck.
 */
import { describe, expect, it } from 'vitest';
import { Outbox as Sweeper } from '../shared/engine/sweeper.js';
import { WatermarkWriter } from '../shared/engine/watermarks.js';
import type { Outbox } from '../shared/ports/index.js';
import type { PatchRecord } from '../shared/protocol.js';

/** An outbox whose writes take `ms` each, counting the most writes ever in flight for one scope. */
function slowOutbox(ms: number) {
  let inFlight = 0;
  let most = 0;
  const marks: Array<[number, number]> = [];
  const outbox = {
    async markPublished(_id: string, to: number, from: number) {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, ms));
      marks.push([from, to]);
      inFlight--;
    },
    async listUnpublished() {
      return [];
    },
  } as unknown as Outbox;
  return { outbox, marks, most: () => most };
}

describe('WatermarkWriter', () => {
  it("writes a sweeper's mark after the scope's batched write in flight, never beside it", async () => {
    const o = slowOutbox(50);
    const w = new WatermarkWriter(o.outbox, 0, () => {});
    w.note('s', 1, 5); // starts a write at once (delay 0)
    const swept = w.markNow('s', 6, 9); // arrives while that write is in flight
    await swept;
    expect(o.most()).toBe(1);
    expect(o.marks).toEqual([
      [1, 5],
      [6, 9],
    ]);
  });

  it('resolves markNow only once its own run is written', async () => {
    const o = slowOutbox(20);
    const w = new WatermarkWriter(o.outbox, 10_000, () => {});
    w.note('s', 1, 2); // waits for the (long) batching delay
    await w.markNow('s', 3, 4);
    expect(o.marks.flat()).toContain(4);
    await w.flush();
  });

  it("the sweeper's republish marks through the same writer as live publishes", async () => {
    const o = slowOutbox(50);
    const bus = { publish: async () => {}, subscribe: async () => async () => {}, close: async () => {} };
    const sweeper = new Sweeper(
      { ledger: o.outbox, bus } as never,
      { publishMarkMs: 0, sweepAgeMs: 0 },
      async function* () {},
      () => {},
    );
    const rec = (ii: number) => ({ scope: 's', ii }) as PatchRecord;
    await sweeper.publish('s', [rec(1), rec(2)]); // a live publish: its mark is written at once (delay 0)
    await sweeper.publish('s', [rec(3)], true); // the sweeper's: while the first write is in flight
    expect(o.most()).toBe(1);
    await sweeper.flush();
  });
});
