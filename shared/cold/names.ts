/**
 * Object names of cold storage. Deterministic: a bundle is named by its scope and its first and
 * last index, a snapshot by its scope and index, so writing the same object again (a bundler
 * re-run after a crash) lands on the same name with the same content.
 *
 *   bundles/<scope>/<from, 12 digits>-<to, 12 digits>.ndjson.gz   patches from..to (inclusive)
 *   snapshots/<scope>/<ii, 12 digits>.ndjson.gz                    the state at ii
 *
 * `<scope>` is the scope id itself, except that an id starting with `.` (`.tmp-x`, `..x`: valid
 * scope ids, but a segment starting with `.tmp-` is not a valid blob key, nor are `.` and `..`)
 * gets a `=` in front. No scope id contains
 * `=`, so the mapping is one to one, and every segment fits the blob stores' key rule
 * (`[A-Za-z0-9_.:=-]+`, not `.` or `..`, not starting with `.tmp-`).
 */

const DIGITS = 12;
const BUNDLE = /^(\d{12,})-(\d{12,})\.ndjson\.gz$/;
const SNAPSHOT = /^(\d{12,})\.ndjson\.gz$/;

/** The key segment of a scope id. */
export function scopeSegment(id: string): string {
  return id.startsWith('.') ? `=${id}` : id;
}

const pad = (n: number): string => String(n).padStart(DIGITS, '0');

/** Prefix of every bundle key of the scope (ends with `/`, so `a` never lists `ab`'s bundles). */
export const bundlePrefix = (id: string): string => `bundles/${scopeSegment(id)}/`;
export const snapshotPrefix = (id: string): string => `snapshots/${scopeSegment(id)}/`;

export const bundleKey = (id: string, from: number, to: number): string => `${bundlePrefix(id)}${pad(from)}-${pad(to)}.ndjson.gz`;
export const snapshotKey = (id: string, ii: number): string => `${snapshotPrefix(id)}${pad(ii)}.ndjson.gz`;

export interface BundleRef {
  key: string;
  from: number;
  to: number;
}

/** A bundle key of scope `id` parsed back into its range; null for any other key. */
export function parseBundleKey(id: string, key: string): BundleRef | null {
  const prefix = bundlePrefix(id);
  if (!key.startsWith(prefix)) return null;
  const m = BUNDLE.exec(key.slice(prefix.length));
  if (!m) return null;
  const from = Number(m[1]);
  const to = Number(m[2]);
  return from >= 1 && to >= from ? { key, from, to } : null;
}

/** A snapshot key of scope `id` parsed back into its index; null for any other key. */
export function parseSnapshotKey(id: string, key: string): number | null {
  const prefix = snapshotPrefix(id);
  if (!key.startsWith(prefix)) return null;
  const m = SNAPSHOT.exec(key.slice(prefix.length));
  return m ? Number(m[1]) : null;
}
