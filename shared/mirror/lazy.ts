/**
 * A Mirror opened on first use. Embedded mode's PGlite takes seconds to start (3 to 35 s on a
 * loaded machine), so the app holds this instead: a server whose domains never declare a mirror
 * never starts it, and one that does pays once, on the first write, apply or query that needs it.
 * `close` closes the real mirror only if it was opened. Removing a deleted scope's rows does not
 * open it when `exists` says there is no stored mirror yet (nothing to remove).
 */

import type { EnsureReport, LagRecord, Mirror, MirroredScope, MirrorStatus, PreparedQuery, QueryLimits, QueryResult } from '../ports/mirror.js';
import type { MirrorTables } from './definitions.js';

export class LazyMirror implements Mirror {
  private real: Mirror | null = null;
  private closed = false;

  constructor(
    private readonly open: () => Mirror,
    /** Whether a mirror was ever stored (embedded: its directory exists). Default: yes. */
    private readonly exists: () => boolean = () => true,
  ) {}

  /** Whether the real mirror was opened (tests: a server that never needed it did not start it). */
  get opened(): boolean {
    return this.real !== null;
  }

  private get(): Mirror {
    if (this.closed) throw new Error('the mirror is closed');
    this.real ??= this.open();
    return this.real;
  }

  ensure(domain: string, tables: MirrorTables): Promise<EnsureReport> {
    return this.get().ensure(domain, tables);
  }

  upsert(domain: string, tables: MirrorTables, scope: MirroredScope): Promise<void> {
    return this.get().upsert(domain, tables, scope);
  }

  async remove(domain: string | null, id: string): Promise<void> {
    if (this.real === null && !this.exists()) return;
    return this.get().remove(domain, id);
  }

  query(domain: string, q: PreparedQuery, limits: QueryLimits): Promise<QueryResult> {
    return this.get().query(domain, q, limits);
  }

  watch(domain: string, listener: (tables: string[]) => void): Promise<() => Promise<void>> {
    return this.get().watch(domain, listener);
  }

  recordLag(domain: string, rec: LagRecord, windowMs: number): Promise<void> {
    return this.get().recordLag(domain, rec, windowMs);
  }

  status(domain: string, windowMs: number): Promise<MirrorStatus> {
    return this.get().status(domain, windowMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.real?.close();
  }
}
