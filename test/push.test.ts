/**
 * Pub/Sub push deliveries (the `push` function) over a real socket, embedded stack: a consumer
 * handles each patch of a scope once and in index order, whatever the deliveries look like
 * (duplicates, redeliveries, out of order, gaps, which are filled from the log); a failing handler
 * gets a non-2xx so Pub/Sub redelivers, and the redelivery resumes where it stopped; a body that is
 * not a push delivery is refused and changes nothing; a bus signal on the same topic is acknowledged
 * and skipped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, createApp } from '../shared/app.js';
import type { PatchEvent } from '../shared/protocol.js';
import { request, serveHandler, testConfig } from './helpers/server.js';

let app: App;
let close: () => void;
let url: string;
const seen: Array<[string, number]> = [];
let failAt: number | null = null;

beforeAll(async () => {
  app = await createApp(testConfig(), {
    sweeper: false,
    deliverLocally: false, // this file is the push function's: it posts every delivery itself
    consumers: {
      recorder: async (e: PatchEvent) => {
        if (e.ii === failAt) {
          failAt = null;
          throw new Error('handler failed once');
        }
        seen.push([e.scope, e.ii]);
      },
    },
  });
  ({ url, close } = await serveHandler(app.push));
});
afterAll(async () => {
  close();
  await app.close();
});

/** A push body exactly as Pub/Sub wraps it. */
function wrap(e: PatchEvent, attrs: Record<string, string> = { scope: e.scope, ii: String(e.ii) }) {
  return {
    message: { data: Buffer.from(JSON.stringify(e)).toString('base64'), attributes: attrs, messageId: `${e.scope}-${e.ii}` },
    subscription: 'projects/p/subscriptions/s',
  };
}

async function scopeWithPatches(n: number): Promise<{ id: string; events: PatchEvent[] }> {
  const { id } = await app.engine.createScope('owner', { state: { n: 0 } });
  for (let i = 1; i <= n; i++) await app.engine.submit(id, 'owner', { patch: [{ op: 'replace', path: '/n', value: i }] });
  const events: PatchEvent[] = [];
  for await (const r of app.engine.readLog(id, 1, n)) events.push({ scope: id, ii: r.ii, patch: r.patch, at: r.at, by: r.by });
  return { id, events };
}

const deliver = (body: unknown, consumer = 'recorder') => request(url, 'POST', `/push/${consumer}`, { body });
const seenOf = (id: string) => seen.filter(([s]) => s === id).map(([, ii]) => ii);

describe('push consumer', () => {
  it('handles each patch once, in order, through duplicates, reordering and gaps', async () => {
    const { id, events } = await scopeWithPatches(6);
    const e = (ii: number) => events[ii - 1] as PatchEvent;
    for (const ii of [1, 1, 3, 2, 3, 6, 5, 6]) expect((await deliver(wrap(e(ii)))).status).toBe(204);
    expect(seenOf(id)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await app.adapters.ledger.getCursor('recorder', id)).toBe(6);
  });

  it('answers a failing handler with a non-2xx, and the redelivery resumes where it stopped', async () => {
    const { id, events } = await scopeWithPatches(4);
    failAt = 3;
    const first = await deliver(wrap(events[3] as PatchEvent)); // ii 4: fills 1..3, fails at 3
    expect(first.status).toBeGreaterThanOrEqual(500);
    expect(seenOf(id)).toEqual([1, 2]);
    expect((await deliver(wrap(events[3] as PatchEvent))).status).toBe(204); // the redelivery
    expect(seenOf(id)).toEqual([1, 2, 3, 4]);
  });

  it('refuses what is not a push delivery (400), an unknown consumer (404) and other methods (405), changing nothing', async () => {
    const { id, events } = await scopeWithPatches(1);
    const good = events[0] as PatchEvent;
    const bad: unknown[] = [
      {},
      { message: { data: '' } },
      { message: { data: 'not base64 json!' } },
      { message: { data: Buffer.from('{"scope":"x"}').toString('base64') } },
      wrap({ ...good, ii: 0 }),
      wrap(good, { scope: 'other', ii: '1' }),
      wrap(good, { scope: id, ii: '2' }),
    ];
    for (const body of bad) {
      const res = await deliver(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.json.error.code).toBe('invalid_request');
    }
    expect((await deliver(wrap(good), 'nobody')).status).toBe(404);
    expect((await request(url, 'GET', '/push/recorder')).status).toBe(405);
    expect(seenOf(id)).toEqual([]);
    expect(await app.adapters.ledger.getCursor('recorder', id)).toBe(0);
  });

  it('acknowledges a bus signal (an access change) and skips it: no handler call, no cursor move', async () => {
    const { id, events } = await scopeWithPatches(1);
    const signal = {
      message: {
        data: Buffer.from(JSON.stringify({ scope: id, signal: 'access' })).toString('base64'),
        attributes: { scope: id, signal: 'access' },
        messageId: 'sig-1',
      },
      subscription: 'projects/p/subscriptions/s',
    };
    expect((await deliver(signal)).status).toBe(204);
    expect(seenOf(id)).toEqual([]);
    expect(await app.adapters.ledger.getCursor('recorder', id)).toBe(0);
    expect((await deliver(wrap(events[0] as PatchEvent))).status).toBe(204); // patches still flow
    expect(seenOf(id)).toEqual([1]);
  });
});
