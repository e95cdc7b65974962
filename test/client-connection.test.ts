/**
 * The client's connection state machine (client/src/connection.ts) step by step, on its own (it
 * is pure: no I/O); test/contract/client-api.ts checks the same states against a real server
 * going away and back on both stacks. What it must guarantee: events only on a change; a loss
 * while online is `reconnecting`, `offline` only when an attempt started after the loss fails
 * too; nothing changes on a failure while a stream is up; a gateway's 502/503/504 is a failure,
 * the server's own JSON error an answer; a tab served by another takes that tab's state; the
 * browser's `offline` event is `offline` at once and its `online` event ends every retry's wait.
 */
import { expect, it } from 'vitest';
import { Connection, type ConnectionStatus } from '../client/src/connection.js';

function watched(): { conn: Connection; seen: ConnectionStatus[] } {
  const conn = new Connection();
  const seen: ConnectionStatus[] = [];
  conn.on('change', (c) => seen.push(c.status));
  return { conn, seen };
}

it('goes online on an answer, reconnecting on a loss, offline only when a retry started after it fails', () => {
  const { conn, seen } = watched();
  expect(conn.status).toBe('connecting');
  conn.answered(200, 'application/json', conn.mark());
  conn.answered(404, 'application/json', conn.mark()); // an answer all the same: no event
  expect(seen).toEqual(['online']);
  const before = conn.mark();
  const concurrent = conn.mark();
  conn.failed(before);
  expect(seen).toEqual(['online', 'reconnecting']);
  conn.failed(concurrent); // started before the loss: the same outage, not a failed retry
  expect(conn.status).toBe('reconnecting');
  const retry = conn.mark();
  conn.failed(retry);
  conn.failed(conn.mark());
  conn.failed(conn.mark());
  expect(seen).toEqual(['online', 'reconnecting', 'offline']);
  conn.answered(200, null, conn.mark());
  conn.answered(200, null, conn.mark());
  expect(seen).toEqual(['online', 'reconnecting', 'offline', 'online']);
});

it('a first attempt that fails is offline at once', () => {
  const { conn, seen } = watched();
  conn.failed(conn.mark());
  expect(seen).toEqual(['offline']);
});

it('changes nothing on a failed request while a stream is up; the stream’s drop is the loss', () => {
  const { conn, seen } = watched();
  const stream = {};
  conn.streamUp(stream);
  conn.failed(conn.mark());
  conn.answered(502, 'text/html', conn.mark());
  expect(seen).toEqual(['online']);
  conn.streamDown(stream);
  conn.failed(conn.mark());
  expect(seen).toEqual(['online', 'reconnecting']);
  conn.streamUp(stream);
  expect(seen).toEqual(['online', 'reconnecting', 'online']);
});

it('counts a gateway’s 502/503/504 as a failure and the server’s own JSON 503 as an answer', () => {
  const { conn, seen } = watched();
  conn.answered(200, 'application/json', conn.mark());
  conn.answered(503, 'application/json; charset=utf-8', conn.mark());
  expect(seen).toEqual(['online']);
  conn.answered(502, 'text/html', conn.mark());
  conn.answered(504, null, conn.mark());
  expect(seen).toEqual(['online', 'reconnecting', 'offline']);
});

it('a tab served by another takes its state; its own failures count only when that tab is not online', () => {
  const { conn, seen } = watched();
  conn.relay('online');
  conn.failed(conn.mark()); // the leader's stream is up
  expect(seen).toEqual(['online']);
  conn.relay('reconnecting');
  conn.relay('offline');
  conn.relay('online');
  expect(seen).toEqual(['online', 'reconnecting', 'offline', 'online']);
  conn.relay('connecting'); // it leads now: the relay no longer counts as a stream
  conn.failed(conn.mark());
  expect(seen).toEqual(['online', 'reconnecting', 'offline', 'online', 'reconnecting']);
});

it("the browser's offline event is offline at once, even with a stream up; its online event ends every retry's wait", async () => {
  const { conn, seen } = watched();
  conn.streamUp('stream');
  expect(seen).toEqual(['online']);
  conn.lost();
  conn.lost(); // no second event
  expect(seen).toEqual(['online', 'offline']);
  // Retries waiting out a long backoff: all go when the network is back, not after 60 s.
  const t0 = Date.now();
  const aborted = new AbortController();
  const waits = [conn.pause(60_000), conn.pause(60_000), conn.pause(60_000, aborted.signal)];
  aborted.abort();
  await waits[2];
  conn.wake();
  await Promise.all(waits);
  expect(Date.now() - t0).toBeLessThan(30_000);
  // a wait that starts after the wake waits its time again
  let done = false;
  void conn.pause(50).then(() => {
    done = true;
  });
  conn.answered(200, 'application/json', conn.mark());
  expect(done).toBe(false);
  await new Promise((r) => setTimeout(r, 100));
  expect(done).toBe(true);
  expect(seen).toEqual(['online', 'offline', 'online']);
});
