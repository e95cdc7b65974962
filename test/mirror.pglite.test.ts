/**
 * The embedded mirror (PGlite, in this process) passes the Mirror conformance suite, plus what
 * only it promises: its data lives under a directory and survives closing and reopening.
 * PGlite starts slowly (seconds, tens of them on a loaded machine): one database for the file.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PGliteMirror } from '../shared/adapters/embedded/pglite-mirror.js';
import { schemaName } from '../shared/mirror/sql.js';
import { mirrorConformance } from './conformance/mirror.js';
import { tempDir } from './helpers/server.js';

const dir = tempDir('patchbay-pglite-');
let shared: PGliteMirror | undefined;
const mirror = async (): Promise<PGliteMirror> => {
  shared ??= new PGliteMirror(join(dir, 'mirror'));
  return shared;
};
afterAll(async () => {
  await shared?.close();
  rmSync(dir, { recursive: true, force: true });
});

mirrorConformance('PGliteMirror', mirror, { interruptsQueries: false });

describe('PGliteMirror (embedded only)', () => {
  it('keeps its tables and rows across close and reopen', async () => {
    const d = join(dir, 'reopen');
    const tables = { notes: { type: 'note', columns: { title: { type: 'text' as const } } } };
    const first = new PGliteMirror(d);
    await first.ensure('keep.example.com', tables);
    await first.upsert('keep.example.com', tables, {
      id: 'n',
      ii: 2,
      state: { title: 'kept' },
      meta: { owner: 'u', name: null, type: 'note', created: 0, updated: 0, size: 2 },
    });
    await first.close();
    const second = new PGliteMirror(d);
    try {
      expect(await second.ensure('keep.example.com', tables)).toEqual({ created: [], altered: [], dropped: [], backfill: [] });
      expect((await second.adminQuery(`SELECT title, _ii FROM "${schemaName('keep.example.com')}".notes`)).rows).toEqual([['kept', 2]]);
    } finally {
      await second.close();
    }
  }, 240_000); // two more PGlite starts
});
