/**
 * The blob store port: immutable-by-convention objects (bundles, snapshots, uploads) under
 * `/`-separated keys. Writers use deterministic keys, so writing the same object twice is harmless.
 */
export interface BlobStore {
  /** Stores bytes at key. With `ifAbsent`, an existing object is left alone and false is returned. */
  put(key: string, data: Uint8Array, opts?: { contentType?: string; ifAbsent?: boolean }): Promise<boolean>;
  /** The bytes at key, or null. */
  get(key: string): Promise<Uint8Array | null>;
  /** Keys starting with prefix, ascending. */
  list(prefix: string): Promise<string[]>;
  /** Removes key; removing a missing key is not an error. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}
