/**
 * The Firestore ledger: one object playing every role of the Ledger port (ComposedLedger), built
 * from modules with one job each, each stating the guarantee it enforces:
 *
 *   ./layout.ts              where each document lives, id escaping
 *   ./codec.ts               documents to Head / PatchRecord
 *   ./log.ts                 scopes, heads, log reads, and which way each commit takes
 *   ./names.ts               scope names: one document per held name, created or moved with the head
 *   ./plan.ts                a plan run on a head, its records as documents, size limits
 *   ./commit-direct.ts       the direct commit: one batch conditional on the head's version
 *   ./commit-transaction.ts  the transactional commit (guarantee 1); the fallback of the direct one
 *   ./outbox.ts              the published watermark and `listUnpublished`
 *   ./cold.ts                the lease, `bundled` and `trimmed` (guarantee 6)
 *   ./cursors.ts             consumer cursors
 *   ./leaders.ts             the scope write lease (fencing commits) and the inbox of handed-over requests
 *   ./delete.ts              tombstones and the purge of a deleted scope
 */
import type { Firestore } from '@google-cloud/firestore';
import { ComposedLedger } from '../../../ports/index.js';
import type { ScopeLeaders } from '../../../ports/leaders.js';
import { FirestoreColdPointers } from './cold.js';
import { DirectCommits } from './commit-direct.js';
import { TransactionCommits } from './commit-transaction.js';
import { FirestoreCursors } from './cursors.js';
import { FirestoreDeletions } from './delete.js';
import { Layout } from './layout.js';
import { FirestoreLeaders } from './leaders.js';
import { FirestoreScopeLog } from './log.js';
import { FirestoreNames } from './names.js';
import { FirestoreOutbox } from './outbox.js';

export interface FirestoreLedgerOptions {
  /** Top collection name: a namespace (one per deployment, or per test). Default `scopes`. */
  root?: string;
  /**
   * Most documents one commit may write (records + retry records + head + outbox). Default 500:
   * the limit Firestore documented until 2023 and still the figure most tooling assumes; Firestore
   * itself no longer limits the count (only the request size), so deployments may raise it.
   */
  maxWrites?: number;
  /**
   * Most bytes (estimated, from Firestore's document size rules plus per-write overhead) one commit
   * may send. Default 4,000,000: under the emulator's 4 MiB gRPC message limit and Firestore's
   * 10 MiB request limit. Past either, the commit would fail only after the client library had
   * retried it for a minute (RESOURCE_EXHAUSTED is retryable), so it is refused up front.
   */
  maxBytes?: number;
  /** Attempts per transaction under contention (the client library's default is 5). Default 10. */
  maxAttempts?: number;
  /** Whether commits try the direct way first (see ./commit-direct.ts). Default true. */
  directCommits?: boolean;
  /** For tests: runs in markPublished/listUnpublished between reading the outbox and writing it. */
  beforeOutboxWrite?: (id: string) => Promise<void>;
}

export class FirestoreLedger extends ComposedLedger {
  /** The scope leaders on this ledger's documents, for an instance named `instance` (unique per process). */
  readonly leaders: (instance: string) => ScopeLeaders;

  constructor(db: Firestore, opts: FirestoreLedgerOptions = {}) {
    const docs = new Layout(db, opts.root ?? 'scopes');
    const limits = { maxWrites: opts.maxWrites ?? 500, maxBytes: opts.maxBytes ?? 4_000_000 };
    const maxAttempts = opts.maxAttempts ?? 10;
    const direct = (opts.directCommits ?? true) ? new DirectCommits(docs, limits) : null;
    const headWriter = { maxAttempts, maxWrites: limits.maxWrites, onHeadWrite: (id: string) => direct?.forget(id) };
    super({
      log: new FirestoreScopeLog(
        docs,
        direct,
        new TransactionCommits(docs, limits, maxAttempts),
        // A rename writes the head: its next direct commit must read it first.
        new FirestoreNames(docs, maxAttempts, (id) => direct?.forget(id)),
      ),
      outbox: new FirestoreOutbox(docs, opts.beforeOutboxWrite ?? (async () => {})),
      // Taking or releasing a lease writes the head: its next direct commit must read it first.
      cold: new FirestoreColdPointers(docs, headWriter),
      cursors: new FirestoreCursors(docs),
      // Writing a tombstone writes the head, like a lease.
      deletions: new FirestoreDeletions(docs, headWriter),
      // The Firestore client belongs to whoever constructed this ledger: it is not terminated here.
      close: async () => {},
    });
    // A takeover writes the head's write epoch: its next direct commit must read it first.
    this.leaders = (instance) => new FirestoreLeaders(docs, instance, maxAttempts, (id) => direct?.forget(id));
  }
}
