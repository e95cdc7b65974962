/**
 * Ledger conformance: what every Ledger adapter must do (shared/ports/ledger.ts is the contract),
 * one file per role of the port: the scope log (./log.ts, guarantee 1), retries (./retries.ts),
 * a scope's access and its order with commits (./access.ts), a user's listing (./listing.ts), scope
 * names, unique per (domain, owner) (./names.ts), the outbox (./outbox.ts), cold pointers and leases (./cold.ts, guarantee 6's ledger half),
 * consumer cursors (./cursors.ts) and deleting a scope (./deletions.ts). `ledgerConformance` runs them all.
 *
 * Usage: `ledgerConformance('SqliteLedger', async () => new SqliteLedger(file))`. Each `make()`
 * must return a fresh, empty instance; the suite closes every instance it made. Scope ids are
 * unique per test anyway, so a slow backend shared across tests stays isolated.
 */
import { describe } from 'vitest';
import type { Ledger } from '../../../shared/ports/index.js';
import { accessConformance } from './access.js';
import { coldPointersConformance } from './cold.js';
import { consumerCursorsConformance } from './cursors.js';
import { deletionsConformance } from './deletions.js';
import { harness } from './fixtures.js';
import { listingConformance } from './listing.js';
import { scopeLogConformance } from './log.js';
import { namesConformance } from './names.js';
import { outboxConformance } from './outbox.js';
import { retriesConformance } from './retries.js';

export function ledgerConformance(name: string, make: () => Promise<Ledger>): void {
  describe(`${name} (Ledger conformance)`, () => {
    const h = harness(make);
    scopeLogConformance(h);
    retriesConformance(h);
    accessConformance(h);
    listingConformance(h);
    namesConformance(h);
    coldPointersConformance(h);
    consumerCursorsConformance(h);
    outboxConformance(h);
    deletionsConformance(h);
  });
}
