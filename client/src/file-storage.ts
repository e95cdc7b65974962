/**
 * `fileStorage(dir)`: the offline queue's store in Node (./storage.ts has the contract), one file
 * per key in `dir` (created when missing), named by the key percent-encoded. A `set` writes a
 * temporary file, flushes it to disk (`fsync`) and renames it over the old one, so a crash at any
 * point leaves the old value or the new one, never a torn file. Its own entry
 * (`@patchbay/client/file-storage`): `node:fs` is loaded at the first call through a computed
 * specifier, so browser bundles and the client's browser-only typecheck never reach it.
 */
import type { ClientStorage } from './storage.js';

/** The few `node:fs/promises` calls used here (the client's tsconfig has no Node types on purpose). */
interface FsPromises {
  mkdir(path: string, opts: { recursive: true }): Promise<unknown>;
  readFile(path: string, enc: 'utf8'): Promise<string>;
  readdir(path: string): Promise<string[]>;
  rename(from: string, to: string): Promise<void>;
  rm(path: string, opts: { force: true }): Promise<void>;
  open(path: string, flags: 'w'): Promise<{ writeFile(data: string, enc: 'utf8'): Promise<void>; sync(): Promise<void>; close(): Promise<void> }>;
}

const SUFFIX = '.json';
let counter = 0;

export function fileStorage(dir: string): ClientStorage {
  const base = dir.replace(/\/+$/, '');
  let fsp: Promise<FsPromises> | undefined;
  const fs = (): Promise<FsPromises> => {
    fsp ??= (async () => {
      const spec = 'node:fs/promises';
      const mod = (await import(/* @vite-ignore */ spec)) as FsPromises;
      await mod.mkdir(base, { recursive: true });
      return mod;
    })();
    return fsp;
  };
  const file = (key: string) => `${base}/${encodeURIComponent(key)}${SUFFIX}`;
  return {
    async get(key) {
      try {
        return await (await fs()).readFile(file(key), 'utf8');
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT') return undefined;
        throw err;
      }
    },
    async set(key, value) {
      const f = await fs();
      const tmp = `${file(key)}.${Date.now()}-${++counter}.tmp`;
      const h = await f.open(tmp, 'w');
      try {
        await h.writeFile(value, 'utf8');
        await h.sync();
      } finally {
        await h.close();
      }
      await f.rename(tmp, file(key));
    },
    async delete(key) {
      await (await fs()).rm(file(key), { force: true });
    },
    async keys(prefix) {
      const names = await (await fs()).readdir(base);
      return names
        .filter((n) => n.endsWith(SUFFIX))
        .map((n) => decodeURIComponent(n.slice(0, -SUFFIX.length)))
        .filter((k) => k.startsWith(prefix));
    },
  };
}
