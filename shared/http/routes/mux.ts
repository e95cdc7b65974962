/**
 * Route group `mux`: many scopes on one SSE connection (browsers allow six HTTP/1.1 connections
 * per origin, so a page watching twenty scopes cannot open a stream for each).
 *
 * `GET /v1/events?scopes=a,b@5` opens a multiplexed stream: for each listed scope what its own
 * stream (`GET /v1/scopes/{id}/events`) would send, from the engine's per-scope stream
 * (shared/engine/stream.ts, so guarantee 4 holds per scope as it does there), each event naming its
 * scope: `state` `{scope, ii, state}` for a scope listed without a position, `patch`
 * `{scope, ii, patch, at, by}` with `id: <scope>@<ii>`. `scope@n` resumes that scope after `n`.
 * Positions are per scope and the client sends them all when it (re)opens; `Last-Event-ID`
 * (`<scope>@<ii>`, what an EventSource sends back) raises its scope's position, so a browser's
 * own reconnect loses nothing either (other scopes may repeat patches, which a client drops by ii).
 *
 * The first event, `stream` `{stream}`, names the stream; `POST /v1/events/{stream}` adds scopes
 * (`{add: [{scope, since?}]}`) and removes them (`{remove: [scope]}`) while it is open. That
 * request may reach another instance than the stream: it checks the caller's access to every
 * added scope (the rules of the single stream: 404 for a scope the caller may not read, 401
 * without a token for one that is not public) and then hands the change to the stream through
 * the bus (a `control` signal, shared/ports/bus.ts), answering 202. The stream applies it only
 * for the user who opened it, checks access again when it opens the scope, and answers on the
 * stream: `added` `{scope}` once the scope is live (after its catch-up), `removed` `{scope,
 * error?}` when it was removed, could not be added (the error: `scope_not_found`, `too_large`
 * past PATCHBAY_SSE_MAX_SCOPES...) or its reader lost access or it was deleted. A change sent
 * while the stream is reconnecting is lost: a client reopens with its whole current set.
 *
 * Opening checks every listed scope before anything is sent: one the caller may not read fails
 * the request as the single stream would (404 `scope_not_found`, 401), and a position past a
 * scope's head fails with 409 `out_of_sync`; each error names its `scope`. The stream takes one
 * stream slot (PATCHBAY_SSE_MAX_PER_USER, PATCHBAY_SSE_MAX_PER_INSTANCE) whatever its number
 * of scopes, sends heartbeats, and ends before PATCHBAY_SSE_MAX_MS with a `retry:` hint; if any
 * of its scope streams fails (the log could not be read), the whole stream ends, to be reopened
 * with the positions the client has.
 *
 * Presence (issue 16 item 6): `presence=a,b` names scopes among `scopes` whose presence the stream
 * also carries: what their own stream sends with `?presence=1` (./presence-feed.ts: `sync` once
 * the scope is live, then `join`, `update`, `leave`), each `presence` event naming its scope. An
 * added scope carries it with `presence: true`; adding a scope the stream already carries with
 * `presence: true` or `false` turns its presence on (a new `sync`) or off, and nothing else. Only
 * scopes the caller may read are carried, so no one sees the presence of a scope they could not
 * stream; no further limit applies (it costs a store read per change, as on the single stream).
 *
 * Live queries (issue 16 item 6, with #14's named queries): a change may also carry `watch`
 * `[{query, domain, name, params?}]` and `unwatch` `[query]`, where `query` is a key the client
 * picks to name the watch on this stream. The stream then carries what the query's own stream
 * (`GET /v1/domains/{domain}/queries/{name}/events`, ./queries.ts) sends: `result`
 * `{query, columns, rows, truncated}` first and again whenever the result changes, and `unwatched`
 * `{query, error?}` when it was unwatched or a run failed (the watch is then over). Watching is
 * for a signed-in caller (401 without a token); the change is checked where it arrives as the
 * query's own stream checks its open (404 `unknown_query`, 400 `invalid_params`, 503
 * `unavailable` without a mirror; each error names its `query`), costs one PATCHBAY_RATE_QUERY
 * token per query watched, and runs the query as the change's caller in the change's domain. A
 * stream carries at most PATCHBAY_SSE_MAX_SCOPES scopes and queries together. Results are not
 * resumable: a reopened stream carries no watch until the client sends its watches again, and
 * each starts with the current result. So a stream may open with no scope at all (`scopes`
 * empty or absent), to be filled by changes.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Caller } from '../../engine/access.js';
import { PatchbayError } from '../../errors.js';
import type { Head } from '../../ports/index.js';
import type { PatchEvent } from '../../protocol.js';
import { DOMAIN, SCOPE_ID } from '../../protocol.js';
import type { User } from '../auth.js';
import { readBody } from '../body.js';
import { type Ctx, checkedParam, parseIndex, readableHead, reader } from '../context.js';
import { PresenceFeed } from '../presence-feed.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { SseWriter, streamEnd } from '../sse.js';

/** A stream's id: 128 random bits, hex. Knowing it is not enough to change the stream: its user must match. */
const STREAM_ID = /^[0-9a-f]{32}$/;
/** The bus key of a stream's control messages: `/` is not in a scope id, so no scope shares it. */
const controlKey = (stream: string) => `mux/${stream}`;

interface Position {
  scope: string;
  since?: number;
  /** Carry the scope's presence too (undefined in a change: leave it as it is). */
  presence?: boolean;
}

/** A live query to carry: the client's key for it, the query, and the domain it is run in (the change's). */
interface Watch {
  query: string;
  domain: string;
  name: string;
  params?: unknown;
}

/** What `POST /v1/events/{stream}` sends the stream through the bus. */
interface Control {
  by: string | null;
  add: Position[];
  remove: string[];
  /** The calling domain of the change (`$DOMAIN` of its queries). */
  in?: string;
  watch?: Watch[];
  unwatch?: string[];
}

const scopeIdSchema = z.string().regex(SCOPE_ID, 'must match [A-Za-z0-9_.:-]{1,128}');
/** A watch's key: the client's name for it on this stream. */
const watchKey = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must match [A-Za-z0-9_.:-]{1,64}');
const controlBody = z
  .strictObject({
    add: z
      .array(z.strictObject({ scope: scopeIdSchema, since: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(), presence: z.boolean().optional() }))
      .optional(),
    remove: z.array(scopeIdSchema).optional(),
    watch: z
      .array(
        z.strictObject({
          query: watchKey,
          domain: z.string().regex(DOMAIN, 'must be a lower-case host name, optionally with :port'),
          name: z.string().min(1).max(64),
          params: z.unknown().optional(),
        }),
      )
      .optional(),
    unwatch: z.array(watchKey).optional(),
  })
  .refine(
    (b) => (b.add?.length ?? 0) + (b.remove?.length ?? 0) + (b.watch?.length ?? 0) + (b.unwatch?.length ?? 0) > 0,
    'name a scope to add or remove, or a query to watch or unwatch',
  );

function invalid(path: string, message: string): PatchbayError {
  return new PatchbayError('invalid_request', `${path} ${message}`, { issues: [{ path: [path], message }] });
}

/** `scopes=a,b@5`: ids, each with an optional position; no duplicates, at most `max`; none when absent or empty. */
export function parseScopes(raw: string | null, max: number): Position[] {
  if (raw === null || raw === '') return [];
  const items = raw.split(',');
  if (items.length > max) {
    throw new PatchbayError('too_large', `a stream carries at most ${max} scopes`, { limit: 'sseMaxScopes', max, actual: items.length });
  }
  const seen = new Set<string>();
  return items.map((item) => {
    const at = item.lastIndexOf('@');
    const scope = at < 0 ? item : item.slice(0, at);
    if (!SCOPE_ID.test(scope)) throw invalid('scopes', `names an invalid scope id: ${JSON.stringify(scope.slice(0, 140))}`);
    if (seen.has(scope)) throw invalid('scopes', `names ${scope} twice`);
    seen.add(scope);
    return at < 0 ? { scope } : { scope, since: parseIndex(item.slice(at + 1), 'scopes') };
  });
}

/** `presence=a,b`: scopes among those listed whose presence the stream carries; marks them. */
export function parsePresence(raw: string | null, positions: Position[]): void {
  if (raw === null) return;
  if (raw === '') throw invalid('presence', 'must list scopes of `scopes` (presence=a,b)');
  const seen = new Set<string>();
  for (const scope of raw.split(',')) {
    const p = positions.find((q) => q.scope === scope);
    if (p === undefined) throw invalid('presence', `names a scope that is not in scopes: ${JSON.stringify(scope.slice(0, 140))}`);
    if (seen.has(scope)) throw invalid('presence', `names ${scope} twice`);
    seen.add(scope);
    p.presence = true;
  }
}

/** Rethrows `err` with the scope (or the watch: `{query: key}`) it is about among its details. */
function naming(scope: string, err: unknown, field: 'scope' | 'query' = 'scope'): never {
  if (err instanceof PatchbayError) throw new PatchbayError(err.code, err.message, { ...err.details, [field]: scope });
  throw err;
}

/** The caller may read `p.scope` and `p.since` is not past its head (the checks of a single stream's open). */
async function checkPosition(ctx: Ctx, p: Position, caller: Caller | null): Promise<Head> {
  try {
    const head = await readableHead(ctx, p.scope, caller);
    if (p.since !== undefined && p.since > head.ii) {
      throw new PatchbayError('out_of_sync', `position ${p.since} is past head ${head.ii}`, { head: head.ii });
    }
    return head;
  } catch (err) {
    naming(p.scope, err);
  }
}

function frame(type: string, data: unknown, id?: string): string {
  return `event: ${type}\n${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`;
}

function errorData(err: unknown): { code: string; message: string } {
  return err instanceof PatchbayError ? { code: err.code, message: err.message } : { code: 'internal', message: 'the scope could not be streamed' };
}

async function open(ctx: Ctx): Promise<void> {
  const { config, limits } = ctx.deps;
  const caller = await reader(ctx);
  const positions = parseScopes(ctx.url.searchParams.get('scopes'), config.sseMaxScopes);
  const lastEventId = ctx.req.headers['last-event-id'];
  if (typeof lastEventId === 'string' && lastEventId !== '') {
    const at = lastEventId.lastIndexOf('@');
    const p = at < 0 ? undefined : positions.find((q) => q.scope === lastEventId.slice(0, at));
    if (p === undefined) throw invalid('Last-Event-ID', 'must be <scope>@<ii> of a listed scope');
    const ii = parseIndex(lastEventId.slice(at + 1), 'Last-Event-ID');
    if (p.since === undefined || ii > p.since) p.since = ii;
  }
  parsePresence(ctx.url.searchParams.get('presence'), positions);
  await Promise.all(positions.map((p) => checkPosition(ctx, p, caller)));
  const release = await limits.openStream(caller?.id ?? `addr:${limits.clientAddress(ctx.req)}`);
  try {
    await serve(ctx, positions, caller);
  } finally {
    release();
  }
}

async function serve(ctx: Ctx, positions: Position[], caller: Caller | null): Promise<void> {
  const { engine, config, logger, sessions, liveQueries } = ctx.deps;
  const sse = new SseWriter(ctx.res);
  if (ctx.req.method === 'HEAD') {
    sse.start(config.sseRetryMs);
    ctx.res.end();
    return;
  }
  const end = streamEnd(ctx.res);
  if (end.goneAlready) return;
  const { finished, finish } = end;
  /** The client left, or the stream is ending: nothing more is sent or opened. */
  let ending = false;
  const gone = () => ending || end.gone();

  const streamId = randomBytes(16).toString('hex');
  /** The scopes carried, by id: the stop of each one's engine stream once open (undefined while opening). */
  const scopes = new Map<string, (() => Promise<void>) | undefined>();
  const write = (text: string): Promise<void> | undefined => (gone() ? undefined : sse.frame(text));
  /** The scopes whose presence the client wants, and the feed of each one that is open. */
  const wantPresence = new Set<string>();
  const feeds = new Map<string, PresenceFeed>();
  /** Starts or stops the scope's presence feed as the client wants it; only for an open scope. */
  const presence = async (scope: string): Promise<void> => {
    const feed = feeds.get(scope);
    if (wantPresence.has(scope) && scopes.get(scope) !== undefined && feed === undefined) {
      const f = new PresenceFeed(
        sessions.presence,
        scope,
        (e) => write(frame('presence', { scope, ...e })),
        gone,
        (e) => logger.error(e),
      );
      feeds.set(scope, f);
      f.start();
    } else if (!(wantPresence.has(scope) && scopes.has(scope)) && feed !== undefined) {
      feeds.delete(scope);
      await feed.stop();
    }
  };

  /** Opens one scope's engine stream; on failure tells the client (`removed` with the error) and forgets it. */
  const add = async (p: Position): Promise<void> => {
    scopes.set(p.scope, undefined);
    if (p.presence) wantPresence.add(p.scope);
    let stopped = false;
    try {
      const stop = await engine.openStream(
        p.scope,
        p.since,
        {
          state: (ii, state) => write(frame('state', { scope: p.scope, ii, state }, `${p.scope}@${ii}`)),
          patch: (e: PatchEvent) => write(frame('patch', { scope: p.scope, ii: e.ii, patch: e.patch, at: e.at, by: e.by }, `${p.scope}@${e.ii}`)),
          failed: () => finish(), // the client reopens with the positions it has
          presence: () => feeds.get(p.scope)?.changed(),
          revoked: () => {
            stopped = true;
            void drop(p.scope, { code: 'scope_not_found', message: `scope ${p.scope} not found` });
          },
        },
        { reader: caller },
      );
      if (stopped || gone() || !scopes.has(p.scope)) {
        await stop(); // removed, or the stream ended, while it opened
        return;
      }
      scopes.set(p.scope, stop);
      await presence(p.scope);
    } catch (err) {
      scopes.delete(p.scope);
      wantPresence.delete(p.scope);
      if (!(err instanceof PatchbayError)) logger.error({ message: 'mux: a scope stream did not open', scope: p.scope, err: String(err) });
      await write(frame('removed', { scope: p.scope, error: errorData(err) }));
    }
  };
  /** The live queries carried, by the client's key: each one's stop once open (undefined while opening). */
  const queries = new Map<string, { stop?: () => Promise<void> }>();
  /** Starts carrying a live query under `w.query` (one carried under that key already is replaced). */
  const watch = async (w: Watch, domain: string): Promise<void> => {
    await unwatch(w.query, false);
    if (scopes.size + queries.size >= config.sseMaxScopes) {
      const error = { code: 'too_large', message: `a stream carries at most ${config.sseMaxScopes} scopes and queries` };
      await write(frame('unwatched', { query: w.query, error }));
      return;
    }
    const entry: { stop?: () => Promise<void> } = {};
    const current = () => queries.get(w.query) === entry;
    queries.set(w.query, entry);
    try {
      const stop = await liveQueries.open(
        w.domain,
        w.name,
        w.params,
        { requester: caller?.id as string, domain },
        {
          result: async (r) => {
            if (current()) await write(frame('result', { query: w.query, ...r }));
          },
          failed: (err) => {
            if (!current()) return;
            queries.delete(w.query);
            logger.error({ message: 'live query failed', domain: w.domain, query: w.name, code: err.code });
            void write(frame('unwatched', { query: w.query, error: err.toBody().error }));
          },
        },
      );
      if (!current() || gone()) {
        await stop(); // it failed, or the stream ended, while it opened
        return;
      }
      entry.stop = stop;
    } catch (err) {
      if (current()) queries.delete(w.query);
      if (!(err instanceof PatchbayError)) logger.error({ message: 'mux: a live query did not open', query: w.name, err: String(err) });
      // A query's refusal carries its details (`pgCode` of query_failed), as on the query's own stream.
      await write(frame('unwatched', { query: w.query, error: err instanceof PatchbayError ? err.toBody().error : errorData(err) }));
    }
  };
  /** Stops carrying the live query under `key`; tells the client (`unwatched`) when it asked. */
  const unwatch = async (key: string, tell = true): Promise<void> => {
    const entry = queries.get(key);
    if (entry === undefined) return;
    queries.delete(key);
    await entry.stop?.();
    if (tell) await write(frame('unwatched', { query: key }));
  };
  const drop = async (scope: string, error?: { code: string; message: string }): Promise<void> => {
    if (!scopes.has(scope)) return;
    const stop = scopes.get(scope);
    scopes.delete(scope);
    wantPresence.delete(scope);
    await presence(scope);
    await stop?.();
    await write(frame('removed', error ? { scope, error } : { scope }));
  };
  /** Control messages, one at a time, in the order the bus brings them (ordered per key). */
  let controls: Promise<void> = Promise.resolve();
  const onControl = (data: string) => {
    controls = controls.then(async () => {
      let c: Control;
      try {
        c = JSON.parse(data) as Control;
      } catch {
        return;
      }
      if (gone() || c.by !== (caller?.id ?? null)) return; // another user's message for this id: ignored
      for (const key of c.unwatch ?? []) await unwatch(key);
      for (const scope of c.remove ?? []) await drop(scope);
      for (const p of c.add ?? []) {
        if (gone()) return;
        if (scopes.has(p.scope)) {
          // Already carried: only its presence changes, if asked.
          if (p.presence === true) wantPresence.add(p.scope);
          if (p.presence === false) wantPresence.delete(p.scope);
          await presence(p.scope);
          continue;
        }
        // Scopes and live queries share the cap, as a watch counts both (below).
        if (scopes.size + queries.size >= config.sseMaxScopes) {
          const message = `a stream carries at most ${config.sseMaxScopes} scopes and queries`;
          await write(frame('removed', { scope: p.scope, error: { code: 'too_large', message } }));
          continue;
        }
        await add(p);
        if (scopes.get(p.scope) !== undefined) await write(frame('added', { scope: p.scope }));
      }
      for (const w of c.watch ?? []) {
        if (gone() || caller === null || c.in === undefined) return;
        await watch(w, c.in);
      }
    });
  };
  const stopControl = await engine.onControl(controlKey(streamId), onControl);
  try {
    sse.start(config.sseRetryMs);
    await write(frame('stream', { stream: streamId }));
    await Promise.all(positions.map((p) => add(p)));
    await sse.hold(finished, config.sseHeartbeatMs, config.sseMaxMs);
  } finally {
    ending = true;
    await stopControl();
    await controls;
    await Promise.all([...feeds.values()].map((f) => f.stop()));
    await Promise.all([...scopes.values()].map((stop) => stop?.()));
    await Promise.all([...queries.values()].map((q) => q.stop?.()));
    sse.end(config.sseRetryMs);
  }
}

async function control(ctx: Ctx): Promise<void> {
  const { config, limits, engine } = ctx.deps;
  const stream = checkedParam(ctx, 0, 'stream', STREAM_ID, 'a stream id is 32 hex digits');
  const caller = await reader(ctx);
  await limits.streamControl(caller?.id ?? `addr:${limits.clientAddress(ctx.req)}`);
  const body = await readBody(ctx.req, controlBody, config);
  const add = body.add ?? [];
  const remove = body.remove ?? [];
  if (add.length > config.sseMaxScopes || remove.length > config.sseMaxScopes) {
    throw new PatchbayError('too_large', `a stream carries at most ${config.sseMaxScopes} scopes`, {
      limit: 'sseMaxScopes',
      max: config.sseMaxScopes,
      actual: Math.max(add.length, remove.length),
    });
  }
  await Promise.all(add.map((p) => checkPosition(ctx, p, caller)));
  const watch = body.watch ?? [];
  const unwatch = body.unwatch ?? [];
  if (watch.length + unwatch.length > 0) await checkWatches(ctx, caller, watch);
  const message: Control = { by: caller?.id ?? null, add, remove, ...(caller ? { in: caller.domain } : {}), watch, unwatch };
  await engine.control(controlKey(stream), JSON.stringify(message));
  sendJson(ctx.res, 202, { stream, add: add.map((p) => p.scope), remove, watch: watch.map((w) => w.query), unwatch });
}

/**
 * The checks of a live query's own open, for each query a change watches: a signed-in caller (401
 * without a token), one PATCHBAY_RATE_QUERY token each, at most PATCHBAY_SSE_MAX_SCOPES of them,
 * no key twice, and a query the caller may call with valid parameters (`unknown_query`,
 * `invalid_params`; `unavailable` without a mirror), each error naming the watch's key.
 */
async function checkWatches(ctx: Ctx, caller: User | null, watch: Watch[]): Promise<void> {
  const { config, limits, liveQueries } = ctx.deps;
  if (caller === null) throw new PatchbayError('unauthorized', 'watching a query needs a signed-in caller');
  if (watch.length > config.sseMaxScopes) {
    throw new PatchbayError('too_large', `a stream carries at most ${config.sseMaxScopes} scopes and queries`, {
      limit: 'sseMaxScopes',
      max: config.sseMaxScopes,
      actual: watch.length,
    });
  }
  const keys = new Set<string>();
  for (const w of watch) {
    if (keys.has(w.query)) throw invalid('watch', `names ${w.query} twice`);
    keys.add(w.query);
  }
  for (const _ of watch) await limits.query(caller.id);
  await Promise.all(
    watch.map(async (w) => {
      try {
        await liveQueries.check(w.domain, w.name, w.params, { requester: caller.id, domain: caller.domain });
      } catch (err) {
        naming(w.query, err, 'query');
      }
    }),
  );
}

export const muxRoutes: Route<Ctx>[] = [
  { method: 'GET', path: '/v1/events', name: 'events.mux', run: open },
  { method: 'POST', path: '/v1/events/{stream}', name: 'events.mux.control', run: control },
];
