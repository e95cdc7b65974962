/**
 * Closed sessions expire: a session record is put with an expiry (PutOptions.expireAt, the field a
 * Firestore TTL policy reads) only once it is closed, a day past the hour the sweep keeps it
 * (PATCHBAY_SESSION_CLOSED_KEEP_MS, here 5 minutes), so the TTL is a backstop and never removes a session that is open or closing.
 */
import { describe, expect, it } from 'vitest';
import type { Json } from '../shared/json.js';
import { type PutOptions, RECORD_TTL_GRACE_MS, type RecordStore } from '../shared/ports/records.js';
import { SESSION_KIND } from '../shared/sessions/sessions.js';
import { startServer } from './helpers/server.js';

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
});
