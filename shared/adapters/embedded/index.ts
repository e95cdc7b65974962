/** The embedded adapter set: everything in one process, durable under one data directory. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { EmbeddedConfig, ServerConfig } from '../../config.js';
import type { Adapters } from '../../ports/index.js';
import { FsBlobStore } from './fs-blobs.js';
import { LocalBus } from './local-bus.js';
import { MemoryCache } from './memory-cache.js';
import { SqliteLedger } from './sqlite/ledger.js';

export { SqliteRecords } from './sqlite/records.js';
export { FsBlobStore, LocalBus, MemoryCache, SqliteLedger };

export function embeddedAdapters(config: EmbeddedConfig & Pick<ServerConfig, 'dataDir'>): Adapters {
  mkdirSync(config.dataDir, { recursive: true });
  const ledger = new SqliteLedger(join(config.dataDir, 'patchbay.sqlite'), { sync: config.sqliteSync });
  return {
    ledger,
    records: ledger.records,
    cache: new MemoryCache(config.cacheBytes),
    bus: new LocalBus(),
    blobs: new FsBlobStore(join(config.dataDir, 'blobs')),
  };
}
