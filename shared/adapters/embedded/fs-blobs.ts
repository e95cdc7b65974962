/**
 * The embedded blob store: one file per key under a root directory. Writes go to a temporary
 * file that is synced and then renamed (or hard-linked, for `ifAbsent`, which fails atomically
 * if the key exists), so a reader never sees half an object and a crash leaves no torn one.
 *
 * Unlike Cloud Storage, a key cannot be both an object and a folder of other keys (`a` and
 * `a/b`): such a put fails with `invalid_request`. patchbay's own key layouts never do this.
 */
import { randomUUID } from 'node:crypto';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { PatchbayError } from '../../errors.js';
import type { BlobStore } from '../../ports/index.js';

const KEY = /^[A-Za-z0-9_.:=-]+(\/[A-Za-z0-9_.:=-]+)*$/;

export class FsBlobStore implements BlobStore {
  constructor(private readonly root: string) {}

  private path(key: string): string {
    if (!KEY.test(key) || key.split('/').some((s) => s === '.' || s === '..' || s.startsWith('.tmp-'))) {
      throw new PatchbayError('invalid_request', `invalid blob key ${JSON.stringify(key)}`);
    }
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, data: Uint8Array, opts: { ifAbsent?: boolean } = {}): Promise<boolean> {
    const dest = this.path(key);
    try {
      await mkdir(dirname(dest), { recursive: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') {
        throw new PatchbayError('invalid_request', `blob key ${key} is under another key`);
      }
      throw err;
    }
    const tmp = join(dirname(dest), `.tmp-${randomUUID()}`);
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      if (!opts.ifAbsent) {
        await rename(tmp, dest);
        return true;
      }
      try {
        await link(tmp, dest);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if ((await stat(dest)).isDirectory()) throw err;
        return false;
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EISDIR' || code === 'EEXIST' || code === 'ENOTDIR' || code === 'ENOTEMPTY') {
        throw new PatchbayError('invalid_request', `blob key ${key} collides with a folder of other keys`);
      }
      throw err;
    } finally {
      await unlink(tmp).catch(() => {});
    }
  }

  async get(key: string): Promise<Uint8Array | null> {
    try {
      return new Uint8Array(await readFile(this.path(key)));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') return null; // a folder is not an object
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    let entries: string[];
    try {
      entries = await readdir(this.root, { recursive: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const keys: string[] = [];
    for (const e of entries) {
      const key = relative(this.root, join(this.root, e)).split(sep).join('/');
      if (!key.startsWith(prefix) || key.split('/').some((s) => s.startsWith('.tmp-'))) continue;
      if (KEY.test(key)) keys.push(key);
    }
    // directories show up too: keep only keys that are files
    const files = await Promise.all(
      keys.map(async (k) => {
        try {
          const fh = await open(this.path(k), 'r');
          const isFile = (await fh.stat()).isFile();
          await fh.close();
          return isFile ? k : null;
        } catch {
          return null;
        }
      }),
    );
    return files.filter((k): k is string => k !== null).sort();
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.path(key));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'ENOTDIR') throw err;
    }
  }

  async close(): Promise<void> {}
}
