/**
 * Storage adapters for the offline queue (./offline.ts): a small async key-value contract the
 * client keeps its retry session, its `si` counter and each scope's confirmed state and pending
 * patches in, so that they survive a reload or a restart. Three adapters: `memoryStorage()` (one
 * process; two client objects given the same one share it), `indexedDbStorage()` (browsers), and
 * `fileStorage(dir)` in ./file-storage.ts (Node; its own entry, `@patchbay/client/file-storage`,
 * so the browser build never sees `node:fs`).
 */

/**
 * What the client needs of a store. Values are JSON text. Contract:
 * - `set` resolves only once the value is stored as durably as the medium allows (a later `get`,
 *   from this or a new process, sees it); the client sends a patch only after the `set` holding it
 *   (and the `si` it was given) has resolved.
 * - `get` of a key never set (or deleted) resolves undefined; `keys(prefix)` lists the stored keys
 *   starting with `prefix`, in any order.
 * - Calls may overlap; the last `set` of a key to resolve wins, and the client never has two `set`s
 *   of one key in flight at once.
 */
export interface ClientStorage {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
  keys(prefix: string): Promise<string[]>;
}

/** A store in memory: survives a new client object in the same process (hand it to both), not a reload. */
export function memoryStorage(): ClientStorage {
  const map = new Map<string, string>();
  return {
    get: async (key) => map.get(key),
    set: async (key, value) => void map.set(key, value),
    delete: async (key) => void map.delete(key),
    keys: async (prefix) => [...map.keys()].filter((k) => k.startsWith(prefix)),
  };
}

/**
 * A store in the browser's IndexedDB (database `name`, one object store `kv`): survives reloads
 * and browser restarts. Each `set` is one readwrite transaction, resolved on its `complete`.
 */
export function indexedDbStorage(name = 'patchbay-client'): ClientStorage {
  let db: Promise<Idb> | undefined;
  const open = (): Promise<Idb> => {
    db ??= new Promise((resolve, reject) => {
      const factory = (globalThis as unknown as { indexedDB?: { open(name: string, version: number): IdbRequest<Idb> } }).indexedDB;
      if (!factory) return reject(new Error('indexedDB is not available here'));
      const req = factory.open(name, 1);
      req.onupgradeneeded = () => req.result.createObjectStore('kv');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    return db;
  };
  const run = async <T>(mode: 'readonly' | 'readwrite', fn: (store: IdbStore) => IdbRequest<T>): Promise<T> => {
    const tx = (await open()).transaction('kv', mode);
    const req = fn(tx.objectStore('kv'));
    return new Promise<T>((resolve, reject) => {
      tx.oncomplete = () => resolve(req.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  };
  return {
    get: async (key) => (await run('readonly', (s) => s.get(key))) as string | undefined,
    set: async (key, value) => void (await run('readwrite', (s) => s.put(value, key))),
    delete: async (key) => void (await run('readwrite', (s) => s.delete(key))),
    keys: async (prefix) => (await run('readonly', (s) => s.getAllKeys())).map(String).filter((k) => k.startsWith(prefix)),
  };
}

// The few IndexedDB shapes used above, declared here so the module also typechecks without the DOM library (Node's tests).
interface IdbRequest<T> {
  result: T;
  error: unknown;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
  onupgradeneeded?: (() => void) | null;
}
interface IdbStore {
  get(key: string): IdbRequest<unknown>;
  put(value: string, key: string): IdbRequest<unknown>;
  delete(key: string): IdbRequest<unknown>;
  getAllKeys(): IdbRequest<unknown[]>;
}
interface Idb {
  createObjectStore(name: string): unknown;
  transaction(
    store: string,
    mode: 'readonly' | 'readwrite',
  ): { objectStore(name: string): IdbStore; error: unknown; oncomplete: (() => void) | null; onerror: (() => void) | null; onabort: (() => void) | null };
}
