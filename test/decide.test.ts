/**
 * The commit decision (shared/engine/decide.ts) and its `CommitRules` seam. A request a rule
 * refuses changes nothing and does not disturb the other requests of its group (guarantee 3);
 * the records of a group run consecutively from head + 1 (guarantee 1); the decision is a pure
 * function of its input, so a retried transaction decides the same way. The default rules are
 * today's: only a scope's owner may patch it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FsBlobStore, LocalBus, MemoryCache, SqliteLedger } from '../shared/adapters/embedded/index.js';
import { canRead, canWrite } from '../shared/engine/access.js';
import { type Chain, type CommitRules, DEFAULT_RULES, decide, type GroupInput, ownerOnly, type Pending } from '../shared/engine/decide.js';
import { Engine } from '../shared/engine/engine.js';
import { PatchbayError } from '../shared/errors.js';
import type { Json } from '../shared/json.js';
import { type Head, retryKey } from '../shared/ports/index.js';
import type { PatchRequest } from '../shared/protocol.js';
import { tempDir, testConfig } from './helpers/server.js';

const head = (ii: number, owner = 'u', state: Json = { n: 0 }): Head => ({
  id: 's',
  ii,
  epoch: 1,
  lease: null,
  published: ii,
  bundled: 0,
  trimmed: 0,
  meta: { owner, domain: 'default', name: null, type: null, created: 0, updated: 0, size: JSON.stringify(state).length },
});

const pending = (req: PatchRequest, user = 'u', domain = 'default'): Pending => ({ req, user, domain, hash: JSON.stringify(req.patch) });
const set = (n: number, user = 'u') => pending({ patch: [{ op: 'replace', path: '/n', value: n }] }, user);

function input(group: Pending[], rules: CommitRules = DEFAULT_RULES, base: Json = { n: 0 }): GroupInput {
  return { id: 's', head: head(4, 'u', base), base, group, retries: new Map(), limits: { maxStateBytes: 1024, maxValueDepth: 16 }, now: 7, rules };
}

/** A domain rule: `n` never goes negative. */
const nonNegative: CommitRules = {
  authorize: ownerOnly,
  validate: ({ state }) => {
    if ((state as { n: number }).n < 0)
      throw new PatchbayError('invalid_request', 'n must not be negative', { issues: [{ path: ['n'], message: 'negative' }] });
  },
};

const codes = (d: ReturnType<typeof decide>) => d.outcomes.map((o) => ('ack' in o ? o.ack.ii : o.error.code));

describe('decide', () => {
  it('refuses the rest of a batch sequence after one of its items is refused, even when a later ii would match the head', () => {
    // Head 4; a batch's items predicted 3, 4, 5 (another writer took 3 and 4): 3 and 4 are out of
    // sync, and 5 equals head + 1, but it counted on them, so it must not commit before them.
    const chain: Chain = { refused: false };
    const item = (ii: number, n: number): Pending => ({ ...pending({ ii, patch: [{ op: 'replace', path: '/n', value: n }] }), chain });
    const other = pending({ ii: 5, patch: [{ op: 'replace', path: '/n', value: 50 }] }); // not of the sequence
    const group = [item(3, 1), item(4, 2), item(5, 3), other];
    const d = decide(input(group));
    expect(codes(d)).toEqual(['out_of_sync', 'out_of_sync', 'out_of_sync', 5]);
    expect((d.outcomes[2] as { error: PatchbayError }).error.details).toEqual({ head: 4 });
    expect(d.state).toEqual({ n: 50 });
    expect(chain.refused).toBe(false); // the decision is pure: the Writer marks it once committed
    expect(decide(input(group))).toEqual(d);
    // A sequence refused in an earlier group stops in this one; a recognised retry still gets its ack.
    const stopped: Chain = { refused: true };
    const late = { ...pending({ ii: 5, session: 's1', si: 9, patch: [{ op: 'replace', path: '/n', value: 9 }] }), chain: stopped };
    expect(codes(decide(input([late])))).toEqual(['out_of_sync']);
    const retried = decide({ ...input([late]), retries: new Map([[retryKey('s1', 9), { ii: 3, hash: late.hash } as never]]) });
    expect(codes(retried)).toEqual([3]);
    // Without ii an item of a refused sequence is appended as before (ordering is asked for with ii).
    expect(codes(decide(input([{ ...set(7), chain: stopped }])))).toEqual([5]);
  });

  it('with the default rules, refuses every writer but the owner and commits the owner’s patches around them', () => {
    const d = decide(input([set(1), set(2, 'intruder'), set(3)]));
    expect(codes(d)).toEqual([5, 'forbidden', 6]);
    expect(d.records.map((r) => [r.ii, r.by])).toEqual([
      [5, 'u'],
      [6, 'u'],
    ]);
    expect(d.state).toEqual({ n: 3 });
  });

  it('with the default rules, refuses the owner writing from another domain than the scope’s', () => {
    const elsewhere = pending({ patch: [{ op: 'replace', path: '/n', value: 9 }] }, 'u', 'other.example');
    const d = decide(input([set(1), elsewhere, set(2)]));
    expect(codes(d)).toEqual([5, 'forbidden', 6]);
    const refused = d.outcomes[1] as { error: PatchbayError };
    expect(refused.error.details).toMatchObject({ domain: 'default', requested: 'other.example' });
    expect(d.state).toEqual({ n: 2 });
  });

  it('a validate rule refuses exactly the request it throws for; its neighbours commit as if it had not been sent', () => {
    const base = { n: 0 };
    const group = [set(1), set(-1), set(2), pending({ patch: [{ op: 'replace', path: '/n', value: -5 }] }), set(3)];
    const d = decide(input(group, nonNegative, base));
    expect(codes(d)).toEqual([5, 'invalid_request', 6, 'invalid_request', 7]);
    expect(d.records.map((r) => r.patch)).toEqual([group[0], group[2], group[4]].map((p) => p?.req.patch));
    expect(d.state).toEqual({ n: 3 });
    expect(d.size).toBe(JSON.stringify({ n: 3 }).length);
    expect(base).toEqual({ n: 0 }); // the state at head is never changed
    // Pure: the same input decides the same way (a retried ledger transaction re-decides).
    expect(decide(input(group, nonNegative, base))).toEqual(d);
  });

  it('a custom authorize rule replaces owner-only writes', () => {
    const editors: CommitRules = {
      authorize: (ctx) => {
        if (ctx.user !== ctx.head.meta.owner && ctx.user !== 'editor') throw new PatchbayError('forbidden', 'not an editor');
      },
    };
    expect(codes(decide(input([set(1, 'editor'), set(2, 'intruder'), set(3)], editors)))).toEqual([5, 'forbidden', 6]);
  });

  it('refuses a request whose rule returns a promise (rules are synchronous), and only that one', () => {
    let calls = 0;
    const lazy: CommitRules = {
      authorize: ownerOnly,
      validate: async () => {
        calls++;
      },
    };
    const d = decide(input([set(1)], lazy));
    expect(calls).toBe(1);
    expect(codes(d)).toEqual(['internal']);
    expect(d.records).toEqual([]);
  });
});

describe('the engine with commit rules', () => {
  const engines: Engine[] = [];
  afterEach(async () => {
    for (const e of engines.splice(0)) await e.close();
  });

  function engine(rules?: CommitRules): Engine {
    const ports = { ledger: new SqliteLedger(':memory:'), cache: new MemoryCache(), bus: new LocalBus(), blobs: new FsBlobStore(tempDir()) };
    const e = new Engine(ports, testConfig(), { logError: () => {}, rules });
    engines.push(e);
    return e;
  }

  const settle = (p: Promise<{ ii: number }>) =>
    p.then(
      (a) => a.ii,
      (e: PatchbayError) => e.code,
    );

  it('refuses exactly one request of a group for a custom rule; the rest commit at consecutive indices', async () => {
    const e = engine(nonNegative);
    await e.createScope('u', { id: 's', state: { n: 0 } });
    const sent = [1, -1, 2, 3];
    const results = await Promise.all(sent.map((n) => settle(e.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: n }] }))));
    expect(results).toEqual([1, 'invalid_request', 2, 3]);
    const log = [];
    for await (const r of await e.history('s', 1, undefined)) log.push([r.ii, r.patch]);
    expect(log).toEqual([1, 2, 3].map((n, i) => [i + 1, [{ op: 'replace', path: '/n', value: n }]]));
    expect((await e.getScope('s')).state).toEqual({ n: 3 });
  });

  it('by default, lets only the owner and listed writers write: a reader is forbidden, a stranger told the scope does not exist', async () => {
    const e = engine();
    await e.createScope('u', { id: 's', state: { n: 0 }, access: { visibility: 'private', readers: ['r'], writers: ['w'] } });
    const results = await Promise.all([
      settle(e.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: 1 }] })),
      settle(e.submit('s', 'other', { patch: [{ op: 'replace', path: '/n', value: 2 }] })),
      settle(e.submit('s', 'r', { patch: [{ op: 'replace', path: '/n', value: 3 }] })),
      settle(e.submit('s', 'w', { patch: [{ op: 'replace', path: '/n', value: 4 }] })),
      settle(e.submit('s', 'u', { patch: [{ op: 'replace', path: '/n', value: -3 }] })),
    ]);
    expect(results).toEqual([1, 'scope_not_found', 'forbidden', 2, 3]);
    expect(await e.getScope('s')).toMatchObject({ ii: 3, state: { n: -3 } });
  });

  it('authorizes each write against the access it commits on: a revoked writer is refused from the revoke on', async () => {
    const e = engine();
    await e.createScope('u', { id: 's', state: { n: 0 }, access: { visibility: 'authenticated', readers: [], writers: ['w'] } });
    expect(await settle(e.submit('s', 'w', { patch: [{ op: 'replace', path: '/n', value: 1 }] }))).toBe(1);
    await e.setAccess('s', { id: 'u' }, { visibility: 'authenticated', readers: [], writers: [] });
    expect(await settle(e.submit('s', 'w', { patch: [{ op: 'replace', path: '/n', value: 2 }] }))).toBe('forbidden');
    expect(await e.getScope('s')).toMatchObject({ ii: 1, state: { n: 1 } });
  });

  it('scopes stored without access behave as before access existed: anyone reads, the owner writes', async () => {
    const e = engine();
    await e.createScope('u', { id: 's' });
    const head = await e.head('s');
    const legacy = { ...head.meta, access: undefined };
    expect(canRead(legacy, { id: 'someone' })).toBe(true);
    expect(canRead(legacy, null)).toBe(false);
    expect(canWrite(legacy, 'someone')).toBe(false);
    expect(canWrite(legacy, 'u')).toBe(true);
  });

  it('creates scopes in the caller’s domain, `default` unless told', async () => {
    const e = engine();
    expect((await e.createScope('u', { id: 'a' })).meta.domain).toBe('default');
    expect((await e.createScope('u', { id: 'b' }, { domain: 'chess' })).meta.domain).toBe('chess');
    expect((await e.head('b')).meta.domain).toBe('chess');
  });
});
