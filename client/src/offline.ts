/**
 * The offline queue's persistence: what a client keeps in its storage adapter (./storage.ts) so
 * that a reload or a restart loses no local write and applies none twice.
 *
 * Stored, under the client's `storageKey` prefix:
 * - `<prefix>client`: `{session, si, token?}`: the retry session, the last `si` given to a patch,
 *   and the anonymous token when the client signed in itself (so a restart is the same user);
 * - `<prefix>scope:<id>`: `{ii, state, pending}`: the server's state at `ii` as this client last
 *   confirmed it, and the patches made on top of it that the server has not acknowledged, each
 *   with its `si`.
 *
 * Guarantee (with the server's retry check, shared/engine/decide.ts): a patch is sent only after
 * the record holding it and its `si` is stored (`durable()`), so after any crash a patch that may
 * have reached the server is resent from storage with its original `(session, si)`: the server
 * acknowledges it as a duplicate if it committed it, and commits it once if not. A new patch after
 * a restart gets an `si` past every stored one, so it is never mistaken for an old one.
 * A write made and lost before its record was stored never left the client: lost, not doubled.
 */
import type { Json } from '../../shared/json.js';
import type { Patch } from '../../shared/wire.js';
import type { ClientStorage } from './storage.js';

export interface SavedPending {
  patch: Patch;
  si: number;
}

export interface SavedScope {
  ii: number;
  state: Json;
  pending: SavedPending[];
}

export interface SavedClient {
  session: string;
  si: number;
  token?: string;
}

/** What a client finds in its storage when it opens. */
export interface Restored {
  client: SavedClient | undefined;
  scopes: Map<string, SavedScope>;
}

export class OfflineStore {
  /** The current value of each key changed since it was last stored (undefined: delete it). */
  private readonly dirty = new Map<string, () => string | undefined>();
  private gen = 0;
  private storedGen = 0;
  private writing = false;
  private waiters: Array<{ gen: number; resolve(): void }> = [];

  constructor(
    private readonly storage: ClientStorage,
    private readonly prefix: string,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Reads everything stored under the prefix. A damaged record is skipped (reported), not fatal. */
  async load(): Promise<Restored> {
    const scopes = new Map<string, SavedScope>();
    let client: SavedClient | undefined;
    const clientRaw = await this.storage.get(`${this.prefix}client`);
    if (clientRaw !== undefined) client = this.parse<SavedClient>(clientRaw);
    const scopePrefix = `${this.prefix}scope:`;
    for (const key of await this.storage.keys(scopePrefix)) {
      const raw = await this.storage.get(key);
      const saved = raw === undefined ? undefined : this.parse<SavedScope>(raw);
      if (saved && Number.isSafeInteger(saved.ii) && Array.isArray(saved.pending)) scopes.set(key.slice(scopePrefix.length), saved);
    }
    return { client, scopes };
  }

  /** The client record changed (a new `si`, a token): stored with the next write. */
  client(value: () => SavedClient): void {
    this.mark(`${this.prefix}client`, () => JSON.stringify(value()));
  }

  /** A scope's record changed: `value` is read when it is written (undefined: nothing to keep). */
  scope(id: string, value: () => SavedScope | undefined): void {
    this.mark(`${this.prefix}scope:${id}`, () => {
      const v = value();
      return v === undefined ? undefined : JSON.stringify(v);
    });
  }

  /** Resolves once every change marked so far is stored (storage failures are reported, not thrown). */
  durable(): Promise<void> {
    if (this.storedGen >= this.gen) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ gen: this.gen, resolve }));
  }

  private mark(key: string, value: () => string | undefined): void {
    this.dirty.set(key, value);
    this.gen++;
    if (!this.writing) {
      this.writing = true;
      queueMicrotask(() => void this.write());
    }
  }

  /** Writes the dirty keys, a pass at a time (one `set` per key in flight), until none is left. */
  private async write(): Promise<void> {
    try {
      while (this.dirty.size > 0) {
        const gen = this.gen;
        const batch = [...this.dirty];
        this.dirty.clear();
        await Promise.all(
          batch.map(async ([key, value]) => {
            try {
              const v = value();
              if (v === undefined) await this.storage.delete(key);
              else await this.storage.set(key, v);
            } catch (err) {
              this.onError(err);
            }
          }),
        );
        this.storedGen = gen;
        const ready = this.waiters.filter((w) => w.gen <= gen);
        this.waiters = this.waiters.filter((w) => w.gen > gen);
        for (const w of ready) w.resolve();
      }
    } finally {
      this.writing = false;
    }
  }

  private parse<T>(raw: string): T | undefined {
    try {
      return JSON.parse(raw) as T;
    } catch (err) {
      this.onError(err);
      return undefined;
    }
  }
}
