/**
 * Domain records (shared/domains/domains.ts) on the embedded record store: admins are added
 * once, concurrent changes from two instances both land (compare-and-set, re-decided), a change
 * reaches another instance once its cached copy is PATCHBAY_DOMAIN_CACHE_MS old and not before,
 * and `checkAdmin` refuses anyone else with `forbidden`.
 */
import { describe, expect, it } from 'vitest';
import { SqliteLedger } from '../shared/adapters/embedded/index.js';
import { Domains } from '../shared/domains/domains.js';

const store = () => new SqliteLedger(':memory:').records;

describe('Domains', () => {
  it('a domain nobody claimed has no record and no admin', async () => {
    const d = new Domains(store(), { cacheMs: 1000 });
    expect(await d.get('example.com')).toBeNull();
    expect(await d.isAdmin('example.com', 'u1')).toBe(false);
    await expect(d.checkAdmin('example.com', 'u1')).rejects.toMatchObject({ code: 'forbidden' });
  });

  it('addAdmin creates the record, keeps the order, and adds a user once', async () => {
    let t = 1000;
    const d = new Domains(store(), { cacheMs: 1000, now: () => t });
    await d.addAdmin('example.com', 'u1');
    t = 2000;
    await d.addAdmin('example.com', 'u2');
    await d.addAdmin('example.com', 'u1');
    expect(await d.get('example.com')).toEqual({ domain: 'example.com', admins: ['u1', 'u2'], origins: [], created: 1000, updated: 2000 });
    await expect(d.checkAdmin('example.com', 'u2')).resolves.toBeUndefined();
    await expect(d.checkAdmin('example.com', 'u3')).rejects.toMatchObject({ code: 'forbidden' });
  });

  it('concurrent changes from two instances both land', async () => {
    const s = store();
    const a = new Domains(s, { cacheMs: 0 });
    const b = new Domains(s, { cacheMs: 0 });
    await Promise.all([
      ...Array.from({ length: 5 }, (_, i) => a.addAdmin('example.com', `a${i}`)),
      ...Array.from({ length: 5 }, (_, i) => b.addAdmin('example.com', `b${i}`)),
      a.update('example.com', () => ({ origins: ['https://example.com'] })),
    ]);
    const r = await a.get('example.com');
    expect([...(r?.admins ?? [])].sort()).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4']);
    expect(r?.origins).toEqual(['https://example.com']);
  });

  it('another instance sees a change once its cached copy is older than the cache time, not before', async () => {
    let t = 0;
    const s = store();
    const writer = new Domains(s, { cacheMs: 10_000, now: () => t });
    const other = new Domains(s, { cacheMs: 10_000, now: () => t });
    expect(await other.isAdmin('example.com', 'u1')).toBe(false); // cached: no record
    await writer.addAdmin('example.com', 'u1');
    expect(await writer.isAdmin('example.com', 'u1')).toBe(true); // its own change, at once
    t = 9_999;
    expect(await other.isAdmin('example.com', 'u1')).toBe(false);
    t = 10_000;
    expect(await other.isAdmin('example.com', 'u1')).toBe(true);
  });
});
