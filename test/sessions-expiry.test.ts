/**
 * Closed sessions expire: a session record is put with an expiry (PutOptions.expireAt, the field a
 * Firestore TTL policy reads) only once it is closed, a day past the hour the sweep keeps it
 * (PATCHBAY_SESSION_CLOSED_KEEP_MS, here 5 minutes), so the TTL is a backstop and never removes a session that is open or closing.
 *
 * The sweep's cost: it reads the due index up to now, not every session record, so sessions that
 * are not due cost it nothing however many there are; one heartbeated since is moved, not closed;
 * and records without a due entry (written before the index existed) are indexed by the periodic pass.
 */
import { cpSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Json } from '../shared/json.js';
import { type PutOptions, RECORD_TTL_GRACE_MS, type RecordStore } from '../shared/ports/records.js';
import { SESSION_DUE_KIND, SESSION_KIND, type SessionValue } from '../shared/sessions/sessions.js';
import { startServer, tempDir } from './helpers/server.js';

/** A session record's state, or 'missing'. */
async function stateOf(records: RecordStore, id: string): Promise<string> {
  const r = await records.get(SESSION_KIND, id);
  return r ? (r.value as unknown as SessionValue).state : 'missing';
}

describe('session records and their expiry', () => {
  it('only a closed session carries an expiry: its close time plus PATCHBAY_SESSION_CLOSED_KEEP_MS plus a day', async () => {
    const puts: Array<{ value: { state?: string; closed?: number | null }; expireAt: number | undefined }> = [];
    const spy = (base: RecordStore): RecordStore => ({
      get: (kind, key) => base.get(kind, key),
      delete: (kind, key, rev) => base.delete(kind, key, rev),
      list: (kind, opts) => base.list(kind, opts),
      put: (kind: string, key: string, value: Json, rev: number, opts?: PutOptions) => {
        if (kind === SESSION_KIND) puts.push({ value: value as { state?: string; closed?: number | null }, expireAt: opts?.expireAt });
        return base.put(kind, key, value, rev, opts);
      },
    });
    const srv = await startServer({ sessionClosedKeepMs: 300_000 }, undefined, { wrap: (a) => ({ ...a, records: spy(a.records) }) });
    try {
      const { id } = await srv.app.sessions.open('anon:u1', 'default');
      await srv.app.sessions.close(id, 'anon:u1', 'bye', null);
      const states = puts.map((p) => p.value.state);
      expect(states).toContain('open');
      expect(states.at(-1)).toBe('closed');
      for (const p of puts) {
        if (p.value.state !== 'closed') expect(p.expireAt, String(p.value.state)).toBeUndefined();
        else expect(p.expireAt).toBe((p.value.closed as number) + 300_000 + RECORD_TTL_GRACE_MS);
      }
    } finally {
      await srv.close();
    }
  });

  it('the sweep reads only due sessions: none while nothing is due, each due one once, and records without an entry by the periodic indexing pass', async () => {
    const reads = { sessions: 0, lists: 0 };
    const spy = (base: RecordStore): RecordStore => ({
      get: (kind, key) => {
        if (kind === SESSION_KIND) reads.sessions++;
        return base.get(kind, key);
      },
      delete: (kind, key, rev) => base.delete(kind, key, rev),
      list: (kind, opts) => {
        if (kind === SESSION_KIND) reads.lists++;
        return base.list(kind, opts);
      },
      put: (kind: string, key: string, value: Json, rev: number, opts?: PutOptions) => base.put(kind, key, value, rev, opts),
    });
    const cfg = { sessionTimeoutMs: 1000, sessionClosedKeepMs: 60_000 };
    const srv = await startServer(cfg, undefined, { wrap: (a) => ({ ...a, records: spy(a.records) }) });
    let dataDir = '';
    try {
      const { sessions } = srv.app;
      await sessions.sweep(); // the one indexing pass (nothing to index) and its marker
      const ids: Array<{ id: string; user: string }> = [];
      for (let i = 0; i < 40; i++) ids.push({ id: (await sessions.open(`anon:s${i}`, 'default')).id, user: `anon:s${i}` });
      reads.sessions = 0;
      reads.lists = 0;
      expect(await sessions.sweep()).toEqual({ timedOut: 0, finished: 0, purged: 0 });
      expect(reads).toEqual({ sessions: 0, lists: 0 }); // 40 open sessions, none due: none read
      await new Promise((r) => setTimeout(r, 600));
      for (const { id, user } of ids.slice(1)) await sessions.heartbeat(id, user); // all but the first keep alive
      await new Promise((r) => setTimeout(r, 500)); // past the first expiry, before the heartbeats'
      reads.sessions = 0;
      const swept = await sessions.sweep();
      expect(swept.timedOut).toBe(1); // the silent one; the 39 others were moved to their new expiry
      expect(reads.lists).toBe(0);
      const first = ids[0] as { id: string; user: string };
      expect(await stateOf(srv.app.adapters.records, first.id)).toBe('closed');
      reads.sessions = 0;
      expect((await sessions.sweep()).timedOut).toBe(0);
      expect(reads.sessions).toBe(0); // moved entries are not due again until the heartbeats' expiry
      // Silent from now on, the 39 time out through their moved entries.
      await new Promise((r) => setTimeout(r, 1100));
      expect((await sessions.sweep()).timedOut).toBe(39);
      // A record from before the index (no due entry), expired: found by the indexing pass (run again when its marker is gone or old).
      const legacy = 'sess_0123456789abcdef0123456789abcdef';
      const value = {
        ...((await srv.app.adapters.records.get(SESSION_KIND, (ids[1] as { id: string }).id))?.value as object),
        expires: Date.now() - 1,
        state: 'open',
      };
      await srv.app.adapters.records.put(SESSION_KIND, legacy, value as Json, 0);
      const marker = await srv.app.adapters.records.get('session-due-indexed', 'v1');
      expect(marker).not.toBeNull();
      expect((await srv.app.adapters.records.list(SESSION_DUE_KIND, { prefix: '', limit: 1000 })).some((e) => e.key.endsWith(legacy))).toBe(false);
      await srv.app.adapters.records.delete('session-due-indexed', 'v1', marker?.rev as number);
      await srv.app.close();
      dataDir = tempDir();
      cpSync(srv.dataDir, dataDir, { recursive: true });
    } finally {
      await srv.close().catch(() => {});
    }
    const again = await startServer({ ...cfg, dataDir });
    try {
      expect((await again.app.sessions.sweep()).timedOut).toBeGreaterThanOrEqual(1);
      expect(await stateOf(again.app.adapters.records, 'sess_0123456789abcdef0123456789abcdef')).toBe('closed');
      expect(await again.app.adapters.records.get('session-due-indexed', 'v1')).not.toBeNull();
    } finally {
      await again.close();
    }
  }, 30_000);
});
