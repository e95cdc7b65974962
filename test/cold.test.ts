/**
 * Cold storage in embedded mode (guarantee 6: cold storage plus the log tail reproduce every
 * acknowledged patch; bundling and trimming never lose one): the shared cold-storage contract
 * on SQLite and a local directory, and a SQLite file made before cold storage existed keeping
 * its log when it gains the new column.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FsBlobStore, SqliteLedger } from '../shared/adapters/embedded/index.js';
import { Bundler } from '../shared/cold/bundler.js';
import { readLog } from '../shared/cold/log.js';
import { ColdStore } from '../shared/cold/store.js';
import { coldContract } from './contract/cold.js';
import { startServer, tempDir, testConfig } from './helpers/server.js';

coldContract('embedded', (overrides) => startServer(overrides));

describe('SqliteLedger files from before cold storage', () => {
  it('gain the trimmed column on open, keep their data, and can be bundled and trimmed', async () => {
    const dir = tempDir('patchbay-migrate-');
    const file = join(dir, 'patchbay.sqlite');
    // the schema as it was: no `trimmed` column
    const old = new Database(file);
    old.exec(`CREATE TABLE scopes (id TEXT PRIMARY KEY, ii INTEGER NOT NULL, epoch INTEGER NOT NULL, lease_holder TEXT, lease_expires INTEGER,
      published INTEGER NOT NULL, bundled INTEGER NOT NULL, owner TEXT NOT NULL, domain TEXT NOT NULL, name TEXT, type TEXT,
      created INTEGER NOT NULL, updated INTEGER NOT NULL, size INTEGER NOT NULL, initial TEXT NOT NULL);
      CREATE TABLE patches (scope TEXT NOT NULL, ii INTEGER NOT NULL, patch TEXT NOT NULL, at INTEGER NOT NULL, by TEXT NOT NULL,
      session TEXT, si INTEGER, hash TEXT NOT NULL, epoch INTEGER NOT NULL, PRIMARY KEY (scope, ii)) WITHOUT ROWID;`);
    old.prepare(`INSERT INTO scopes VALUES ('legacy', 2, 0, NULL, NULL, 2, 0, 'o', 'default', NULL, NULL, 1, 1, 10, '{"n":0}')`).run();
    const insert = old.prepare(`INSERT INTO patches VALUES ('legacy', ?, ?, 1, 'o', NULL, NULL, 'h', 0)`);
    insert.run(1, '[{"op":"replace","path":"/n","value":1}]');
    insert.run(2, '[{"op":"replace","path":"/n","value":2}]');
    old.close();

    const ledger = new SqliteLedger(file, { sync: 'normal' });
    try {
      expect(await ledger.getHead('legacy')).toMatchObject({ ii: 2, bundled: 0, trimmed: 0 });
      const blobs = new FsBlobStore(join(dir, 'blobs'));
      const bundler = new Bundler(ledger, blobs, { ...testConfig(), retainPatches: 0, retainMinutes: 0 }, { logError: () => {} });
      expect(await bundler.bundleScope('legacy', { all: true })).toMatchObject({ bundledTo: 2, trimmedTo: 2 });
      const records = [];
      for await (const r of readLog(ledger, new ColdStore(blobs), 'legacy', 1, 2)) records.push(r.patch);
      expect(records).toEqual([[{ op: 'replace', path: '/n', value: 1 }], [{ op: 'replace', path: '/n', value: 2 }]]);
    } finally {
      await ledger.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
