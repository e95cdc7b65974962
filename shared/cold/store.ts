/**
 * Cold storage over the BlobStore port: writes bundles and snapshots under their deterministic
 * names, finds and reads them back.
 *
 * Guarantee 6, the cold half: an object is written with `ifAbsent`, so a rewrite (a bundler re-run
 * after a crash, or a fenced bundler racing the new one) never replaces what is there; an object
 * that is there is read back and checked, and only a damaged one is overwritten. Bundles may
 * overlap (a re-run after a crash can cut a different last bundle); every bundle holding an index
 * holds the same record for it (the log never changes), so readers take any bundle that covers
 * the index they need and skip what they already have: each record comes out once.
 */
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { BlobStore, LogPatch } from '../ports/index.js';
import type { PatchRecord } from '../protocol.js';
import { decodeBundle, decodeBundlePatches, decodeSnapshot, encodeBundle, encodeSnapshot } from './format.js';
import { type BundleRef, bundleKey, bundlePrefix, parseBundleKey, parseSnapshotKey, snapshotKey, snapshotPrefix } from './names.js';

const CONTENT_TYPE = 'application/gzip';
/**
 * Bundles a reader fetches ahead of the one it hands out (see ColdStore.pages). Measured on a
 * 100,000-patch rebuild from bundles of 1,000: none 170k patches/s, one 210k, two 250-290k, three
 * no better than two. Memory: three bundles instead of one (PATCHBAY_BUNDLE_MAX_BYTES each, at most).
 */
const READ_AHEAD = 2;

/** Objects deleted at once by `deleteScope`. */
const DELETE_PARALLEL = 8;

export type WriteOutcome = 'written' | 'present' | 'repaired';

export class ColdStore {
  constructor(private readonly blobs: BlobStore) {}

  /** The scope's bundles, by `from` ascending (a longer one first when two start together). */
  async listBundles(id: string): Promise<BundleRef[]> {
    const refs = (await this.blobs.list(bundlePrefix(id))).map((k) => parseBundleKey(id, k)).filter((r): r is BundleRef => r !== null);
    return refs.sort((a, b) => a.from - b.from || b.to - a.to);
  }

  /** The indices of the scope's snapshots, ascending. */
  async listSnapshots(id: string): Promise<number[]> {
    const iis = (await this.blobs.list(snapshotPrefix(id))).map((k) => parseSnapshotKey(id, k)).filter((n): n is number => n !== null);
    return iis.sort((a, b) => a - b);
  }

  async readBundle(id: string, ref: BundleRef): Promise<PatchRecord[]> {
    return decodeBundle(ref.key, await this.bundleBytes(ref), { scope: id, from: ref.from, to: ref.to });
  }

  /** The ii and patch of a bundle's records (what a rebuild needs), checked like readBundle. */
  async readBundlePatches(id: string, ref: BundleRef): Promise<LogPatch[]> {
    return decodeBundlePatches(ref.key, await this.bundleBytes(ref), { scope: id, from: ref.from, to: ref.to });
  }

  private async bundleBytes(ref: BundleRef): Promise<Uint8Array> {
    const bytes = await this.blobs.get(ref.key);
    if (bytes === null) throw new PatchbayError('internal', `cold object ${ref.key} is missing`, { reason: 'cold_object_missing', key: ref.key });
    return bytes;
  }

  async readSnapshot(id: string, ii: number): Promise<Json | null> {
    const key = snapshotKey(id, ii);
    const bytes = await this.blobs.get(key);
    return bytes === null ? null : decodeSnapshot(key, bytes, { scope: id, ii });
  }

  /**
   * The newest snapshot at or below `atMost`. A damaged snapshot is reported to `onDamaged` and
   * passed over for an older one: snapshots are a shortcut, never the only copy of anything.
   */
  async latestSnapshot(id: string, atMost: number, onDamaged: (err: unknown) => void = () => {}): Promise<{ ii: number; state: Json } | null> {
    const candidates = (await this.listSnapshots(id)).filter((ii) => ii <= atMost).reverse();
    for (const ii of candidates) {
      try {
        const state = await this.readSnapshot(id, ii);
        if (state !== null) return { ii, state };
      } catch (err) {
        onDamaged(err);
      }
    }
    return null;
  }

  /**
   * Records from..to of the scope, in order, each once, read bundle by bundle (memory: one bundle).
   * Throws `internal` when no bundle holds an index in the range: cold storage lost something.
   */
  async *records(id: string, from: number, to: number): AsyncGenerator<PatchRecord> {
    for await (const page of this.recordPages(id, from, to)) yield* page;
  }

  /** The records from..to, one page per bundle read (see `records`). */
  recordPages(id: string, from: number, to: number): AsyncGenerator<PatchRecord[]> {
    return this.pages(id, from, to, (ref) => this.readBundle(id, ref));
  }

  /** The ii and patch of records from..to, one page per bundle read: freshly parsed, the caller's own. */
  patchPages(id: string, from: number, to: number): AsyncGenerator<LogPatch[]> {
    return this.pages(id, from, to, (ref) => this.readBundlePatches(id, ref));
  }

  /**
   * One page per bundle read. The next READ_AHEAD bundles are fetched, unzipped and parsed while
   * the caller works on the current page (the blob reads and the unzipping run off the main
   * thread), so at most READ_AHEAD + 1 bundles are in memory at a time.
   */
  private async *pages<T>(id: string, from: number, to: number, read: (ref: BundleRef) => Promise<T[]>): AsyncGenerator<T[]> {
    let refs: BundleRef[] | null = null;
    const ahead: Array<{ ref: BundleRef; page: Promise<T[]> }> = [];
    let next = from;
    while (next <= to) {
      refs ??= await this.listBundles(id);
      let best: BundleRef | undefined = pick(refs, next);
      if (!best) {
        refs = await this.listBundles(id); // written since we listed?
        best = pick(refs, next);
      }
      if (!best) throw new PatchbayError('internal', `cold storage of ${id} has no bundle holding ${next}`, { reason: 'cold_object_missing' });
      const queued = ahead[0]?.ref === best ? ahead.shift() : undefined;
      if (!queued) ahead.length = 0; // the listing changed: read afresh
      const all = await (queued?.page ?? read(best));
      const end = Math.min(to, best.to);
      for (let at = (ahead[ahead.length - 1]?.ref ?? best).to + 1; ahead.length < READ_AHEAD && at <= to; ) {
        const ref = pick(refs, at);
        if (!ref) break;
        const page = read(ref);
        page.catch(() => {}); // awaited when its turn comes; dropped if the caller stops first
        ahead.push({ ref, page });
        at = ref.to + 1;
      }
      yield next === best.from && end === best.to ? all : all.slice(next - best.from, end - best.from + 1);
      next = end + 1;
    }
  }

  /**
   * Writes a bundle of `lines` (records from..to, see `recordLine`) unless a sound one is there.
   * Returns what happened: written, already present, or present but damaged and rewritten.
   */
  async writeBundle(id: string, from: number, to: number, lines: readonly string[]): Promise<WriteOutcome> {
    const key = bundleKey(id, from, to);
    const bytes = await encodeBundle(id, from, to, lines);
    return this.writeOnce(key, bytes, (b) => decodeBundle(key, b, { scope: id, from, to }));
  }

  /** Writes a snapshot of the state at ii (`stateJson` is its JSON text) unless a sound one is there. */
  async writeSnapshot(id: string, ii: number, stateJson: string): Promise<WriteOutcome> {
    const key = snapshotKey(id, ii);
    const bytes = await encodeSnapshot(id, ii, stateJson);
    return this.writeOnce(key, bytes, (b) => decodeSnapshot(key, b, { scope: id, ii }));
  }

  /**
   * Deletes every bundle and snapshot of the scope (the purge of a deleted scope,
   * shared/engine/deleter.ts); returns how many objects it found. Repeatable: a crash midway
   * leaves the rest for the next call.
   */
  async deleteScope(id: string): Promise<number> {
    const keys = [...(await this.blobs.list(bundlePrefix(id))), ...(await this.blobs.list(snapshotPrefix(id)))];
    await this.deleteKeys(keys);
    return keys.length;
  }

  /** Deletes these objects, a few at a time (a missing one is no error). */
  async deleteKeys(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_PARALLEL) await Promise.all(keys.slice(i, i + DELETE_PARALLEL).map((k) => this.blobs.delete(k)));
  }

  private async writeOnce(key: string, bytes: Uint8Array, check: (existing: Uint8Array) => Promise<unknown>): Promise<WriteOutcome> {
    if (await this.blobs.put(key, bytes, { contentType: CONTENT_TYPE, ifAbsent: true })) return 'written';
    const existing = await this.blobs.get(key);
    if (existing !== null) {
      try {
        await check(existing);
        return 'present';
      } catch {
        // damaged: replace it below with the sound copy we have
      }
    }
    await this.blobs.put(key, bytes, { contentType: CONTENT_TYPE });
    return 'repaired';
  }
}

/** The bundle covering `ii` that reaches furthest. */
function pick(refs: readonly BundleRef[], ii: number): BundleRef | undefined {
  let best: BundleRef | undefined;
  for (const r of refs) {
    if (r.from > ii) break;
    if (r.to >= ii && (!best || r.to > best.to)) best = r;
  }
  return best;
}
