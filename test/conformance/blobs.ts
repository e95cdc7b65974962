/**
 * BlobStore conformance: what every blob adapter must do (shared/ports/blobs.ts is the contract).
 * Bytes round-trip exactly (every byte value, and a 1 MiB object); `ifAbsent` never replaces an
 * existing object, which is what makes rewriting a deterministic bundle or snapshot harmless;
 * `list(prefix)` is a plain string-prefix match over `/`-separated keys, ascending; deleting is
 * idempotent.
 *
 * Usage: `blobConformance('FsBlobStore', async () => new FsBlobStore(dir))`. Each `make()` must
 * return a fresh, empty instance; the suite closes every instance it made. Every key sits under
 * a per-test random root anyway, so a shared bucket stays isolated.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../shared/ports/index.js';

const newRoot = (): string => `t-${randomUUID()}`;
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

function expectBytes(got: Uint8Array | null, want: Uint8Array): void {
  expect(got).toBeInstanceOf(Uint8Array);
  const g = got as Uint8Array;
  expect(g.byteLength).toBe(want.byteLength);
  // compare as buffers: a readable failure without a million-element diff
  const same = Buffer.from(g.buffer, g.byteOffset, g.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength));
  expect(same, 'bytes differ').toBe(true);
}

export function blobConformance(name: string, make: () => Promise<BlobStore>): void {
  describe(`${name} (BlobStore conformance)`, () => {
    const made: BlobStore[] = [];
    const open = async (): Promise<BlobStore> => {
      const b = await make();
      made.push(b);
      return b;
    };
    afterEach(async () => {
      await Promise.all(made.splice(0).map((b) => b.close()));
    });

    it('put then get round-trips every byte value', async () => {
      const b = await open();
      const key = `${newRoot()}/all-bytes.bin`;
      const data = new Uint8Array(512);
      for (let i = 0; i < 256; i++) {
        data[i] = i;
        data[511 - i] = i;
      }
      expect(await b.put(key, data, { contentType: 'application/octet-stream' })).toBe(true);
      expectBytes(await b.get(key), data);

      const empty = `${newRoot()}/empty`;
      expect(await b.put(empty, new Uint8Array(0))).toBe(true);
      expectBytes(await b.get(empty), new Uint8Array(0));
    });

    it('a view into a larger buffer stores only the view’s bytes', async () => {
      const b = await open();
      const key = `${newRoot()}/view.bin`;
      const backing = new Uint8Array([9, 9, 9, 1, 2, 3, 9, 9]);
      expect(await b.put(key, backing.subarray(3, 6))).toBe(true);
      expectBytes(await b.get(key), new Uint8Array([1, 2, 3]));
    });

    it('get of a missing key is null', async () => {
      const b = await open();
      const root = newRoot();
      expect(await b.get(`${root}/missing`)).toBeNull();
      expect(await b.get(`${root}/nested/deeper/missing.json`)).toBeNull();
    });

    it('ifAbsent stores a missing key, and leaves an existing one alone returning false', async () => {
      const b = await open();
      const key = `${newRoot()}/snapshots/scope-1/00000100.json.gz`;
      expect(await b.put(key, utf8('first'), { ifAbsent: true, contentType: 'application/gzip' })).toBe(true);
      expectBytes(await b.get(key), utf8('first'));
      expect(await b.put(key, utf8('second, longer than the first'), { ifAbsent: true })).toBe(false);
      expectBytes(await b.get(key), utf8('first'));
      expect(await b.put(key, new Uint8Array(0), { ifAbsent: true })).toBe(false);
      expectBytes(await b.get(key), utf8('first'));
    });

    it('concurrent ifAbsent puts of one key: exactly one wins and its bytes are stored whole', async () => {
      const b = await open();
      const key = `${newRoot()}/race.bin`;
      const bodies = Array.from({ length: 4 }, (_, i) => new Uint8Array(4096).fill(i + 1));
      const won = await Promise.all(bodies.map((d) => b.put(key, d, { ifAbsent: true })));
      expect(won.filter(Boolean)).toHaveLength(1);
      expectBytes(await b.get(key), bodies[won.indexOf(true)] as Uint8Array);
    });

    it('a plain put overwrites', async () => {
      const b = await open();
      const key = `${newRoot()}/uploads/file.txt`;
      expect(await b.put(key, utf8('version one, long'))).toBe(true);
      expect(await b.put(key, utf8('v2'))).toBe(true);
      expectBytes(await b.get(key), utf8('v2'));
      expect(await b.put(key, utf8('v3 ✓'), { ifAbsent: false })).toBe(true);
      expectBytes(await b.get(key), utf8('v3 ✓'));
    });

    it('list(prefix) returns exactly the keys starting with prefix, ascending, nested keys included', async () => {
      const b = await open();
      const root = newRoot();
      const keys = [
        `${root}/snapshots/scope-1/00000100.json.gz`,
        `${root}/bundles/scope-1/00000101-00000200.ndjson.gz`,
        `${root}/bundles/scope-2/00000001-00000050.ndjson.gz`,
        `${root}/bundles-old/x`,
        `${root}/bundles/scope-1/00000001-00000100.ndjson.gz`,
        `${root}/top.txt`,
        `${root}/a`,
      ];
      for (const k of keys) await b.put(k, utf8(k));
      const sorted = keys.slice().sort();

      expect(await b.list(`${root}/`)).toEqual(sorted);
      expect(await b.list(`${root}/bundles/scope-1/`)).toEqual([
        `${root}/bundles/scope-1/00000001-00000100.ndjson.gz`,
        `${root}/bundles/scope-1/00000101-00000200.ndjson.gz`,
      ]);
      expect(await b.list(`${root}/bundles/`)).toEqual([
        `${root}/bundles/scope-1/00000001-00000100.ndjson.gz`,
        `${root}/bundles/scope-1/00000101-00000200.ndjson.gz`,
        `${root}/bundles/scope-2/00000001-00000050.ndjson.gz`,
      ]);
      // a prefix is a string prefix, not a directory: it may end mid-segment
      expect(await b.list(`${root}/bundles`)).toEqual([
        `${root}/bundles-old/x`,
        `${root}/bundles/scope-1/00000001-00000100.ndjson.gz`,
        `${root}/bundles/scope-1/00000101-00000200.ndjson.gz`,
        `${root}/bundles/scope-2/00000001-00000050.ndjson.gz`,
      ]);
      expect(await b.list(`${root}/bundles/scope-1/0000010`)).toEqual([`${root}/bundles/scope-1/00000101-00000200.ndjson.gz`]);
      expect(await b.list(`${root}/top.txt`)).toEqual([`${root}/top.txt`]);
      expect(await b.list(`${root}/nothing/`)).toEqual([]);
      expect(await b.list(`${newRoot()}/`)).toEqual([]);
      for (const k of keys) expectBytes(await b.get(k), utf8(k));
    });

    it('delete removes a key; deleting a missing key is fine', async () => {
      const b = await open();
      const root = newRoot();
      const gone = `${root}/bundles/scope-1/00000001-00000100.ndjson.gz`;
      const kept = `${root}/bundles/scope-1/00000101-00000200.ndjson.gz`;
      await b.put(gone, utf8('gone'));
      await b.put(kept, utf8('kept'));
      await b.delete(gone);
      expect(await b.get(gone)).toBeNull();
      expect(await b.list(`${root}/`)).toEqual([kept]);
      expectBytes(await b.get(kept), utf8('kept'));
      await b.delete(gone);
      await b.delete(`${root}/never/existed`);
      // a deleted key can be written again, even with ifAbsent
      expect(await b.put(gone, utf8('back'), { ifAbsent: true })).toBe(true);
      expectBytes(await b.get(gone), utf8('back'));
    });

    it('a 1 MiB object round-trips', async () => {
      const b = await open();
      const key = `${newRoot()}/big.bin`;
      const data = new Uint8Array(randomBytes(1024 * 1024));
      expect(await b.put(key, data)).toBe(true);
      expectBytes(await b.get(key), data);
    });
    it('treats a key that only prefixes other keys as missing', async () => {
      const b = await open();
      const r = newRoot();
      await b.put(`${r}/x/y`, utf8('y'));
      expect(await b.get(`${r}/x`)).toBeNull();
      await b.delete(`${r}/x`);
      expectBytes(await b.get(`${r}/x/y`), utf8('y'));
    });
  });
}
