/**
 * RFC 6902 conformance from shared fixtures (test/fixtures/rfc6902.json), run twice: against
 * the core's applyPatch, and end to end over HTTP, where a failing patch must change nothing
 * (guarantee 3) and a refused one must be refused before anything is applied.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PatchbayError } from '../shared/errors.js';
import type { Json } from '../shared/json.js';
import { cloneJson, findProtoKey } from '../shared/json.js';
import { applyPatch, checkPatch } from '../shared/patch.js';
import type { Patch } from '../shared/protocol.js';
import { OPS, patchSchema } from '../shared/protocol.js';
import { type Client, startServer, type TestServer } from './helpers/server.js';

interface Case {
  name: string;
  doc: Json;
  patch: unknown[];
  /** The patch as the log keeps it, when it differs from `patch` (ignored members dropped). */
  stored?: unknown[];
  expected?: Json;
  error?: number;
  reject?: number;
}

const { cases } = JSON.parse(readFileSync(new URL('./fixtures/rfc6902.json', import.meta.url), 'utf8')) as { cases: Case[] };
const limits = { maxOps: 1000, maxPatchBytes: 1 << 20, maxPathDepth: 32, maxValueDepth: 64 };

describe('applyPatch (core)', () => {
  for (const c of cases) {
    it(c.name, () => {
      // As the service does: a "__proto__" member anywhere is refused before the schema runs.
      const parsed = findProtoKey(c.patch) === null ? patchSchema.safeParse(c.patch) : null;
      if (c.reject !== undefined) {
        const refused =
          !parsed?.success ||
          (() => {
            try {
              checkPatch(parsed.data as Patch, limits);
              return false;
            } catch (e) {
              return e instanceof PatchbayError && e.status === c.reject;
            }
          })();
        expect(refused).toBe(true);
        return;
      }
      expect(parsed?.success).toBe(true);
      const patch = parsed?.data as Patch;
      // Members an op does not define are dropped: this is the patch that is hashed and stored.
      expect(patch).toEqual(c.stored ?? c.patch);
      checkPatch(patch, limits);
      if (c.error !== undefined) {
        let err: unknown;
        try {
          applyPatch(cloneJson(c.doc), patch);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(PatchbayError);
        expect((err as PatchbayError).code).toBe('patch_failed');
        expect((err as PatchbayError).details.op).toBe(c.error);
      } else {
        expect(applyPatch(cloneJson(c.doc), patch)).toEqual(c.expected);
      }
    });
  }

  it('does not pollute Object.prototype through any op', () => {
    for (const path of ['/__proto__', '/a/__proto__/x', '/constructor/prototype/x']) {
      expect(() => checkPatch([{ op: 'add', path, value: { polluted: true } }], limits)).toThrow(PatchbayError);
    }
    // Even applied directly (skipping checkPatch), no op reaches a prototype.
    for (const op of OPS) {
      for (const path of ['/__proto__/polluted', '/constructor/prototype/polluted', '/toString/polluted']) {
        const patch = [{ op, path, from: '/a', value: true }] as unknown as Patch;
        try {
          applyPatch({ a: {} }, patch);
        } catch {}
      }
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('refuses, at the op that crosses it, a patch that would grow the state past the size budget', () => {
    const doc = { a: 'x'.repeat(1000) };
    const patch = Array.from({ length: 40 }, (_, i) => ({ op: 'copy' as const, from: '', path: `/z${i}` }));
    const budget = { maxBytes: 64 * 1024, maxDepth: 64, bytes: JSON.stringify(doc).length };
    let err: PatchbayError | undefined;
    try {
      applyPatch(cloneJson(doc), patch, budget);
    } catch (e) {
      err = e as PatchbayError;
    }
    expect(err?.code).toBe('too_large');
    expect(err?.details).toMatchObject({ limit: 'maxStateBytes', op: 6 }); // 1 KB doubles past 64 KB at the 7th copy
  });

  it('tracks the budget exactly enough not to refuse what fits', () => {
    const doc = { big: 'x'.repeat(900) };
    const budget = { maxBytes: 1000, maxDepth: 64, bytes: JSON.stringify(doc).length };
    // Replacing the big value with a smaller one, many times over, never crosses the limit.
    const patch = Array.from({ length: 50 }, (_, i) => ({ op: 'replace' as const, path: '/big', value: 'y'.repeat(800 + (i % 5)) }));
    expect(applyPatch(cloneJson(doc), patch, budget)).toEqual({ big: 'y'.repeat(804) });
    expect(() => applyPatch({ a: {} }, [{ op: 'add', path: '/a/b', value: { c: { d: 1 } } }], { maxBytes: 1000, maxDepth: 3, bytes: 8 })).toThrow(/nest/);
  });
});

describe('RFC 6902 over HTTP', () => {
  let srv: TestServer;
  let alice: Client;
  beforeAll(async () => {
    srv = await startServer();
    alice = await srv.client();
  });
  afterAll(() => srv.close());

  for (const c of cases) {
    it(c.name, async () => {
      const created = await alice.request('POST', '/v1/scopes', { body: { state: c.doc } });
      expect(created.status).toBe(201);
      const id = created.json.id;
      const res = await alice.request('POST', `/v1/scopes/${id}/patches`, { body: { ii: 1, patch: c.patch } });
      const after = await alice.request('GET', `/v1/scopes/${id}`);
      if (c.expected !== undefined) {
        expect(res.json).toEqual({ id, ii: 1 });
        expect(after.json).toMatchObject({ ii: 1, state: c.expected });
        // The log holds exactly the patch that was sent, less the members its ops do not define
        // (RFC 6902 §4), and folding it (a cold cache) gives the same state.
        const history = await alice.request('GET', `/v1/scopes/${id}/patches`);
        expect(JSON.parse(history.text.trim()).patch).toEqual(c.stored ?? c.patch);
        await srv.app.adapters.cache.delete(id);
        expect((await alice.request('GET', `/v1/scopes/${id}`)).json.state).toEqual(c.expected);
        return;
      }
      if (c.error !== undefined) {
        expect(res.status).toBe(422);
        expect(res.json.error).toMatchObject({ code: 'patch_failed', op: c.error });
      } else {
        expect(res.status).toBe(c.reject);
      }
      expect(after.json).toMatchObject({ ii: 0, state: c.doc });
    });
  }
});
