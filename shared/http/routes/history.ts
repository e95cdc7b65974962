/**
/**
 * Route group `history`, readers only (no token for a public scope; a caller who may not read the
 * scope learns `scope_not_found`, as for a missing one: shared/engine/access.ts):
 * - `GET /v1/scopes/{id}/patches?from=a&to=b`, a scope's patches as NDJSON (one `{ii, patch, at,
 *   by}` per line) from the log tail and cold storage alike, written with back-pressure and
 *   stopped when the client leaves;
 * - `GET /v1/scopes/{id}/at/{ii}`, the scope's state at any index 0..head (`{id, ii, state}`),
 *   rebuilt from the latest snapshot at or below it, bundles and the log (shared/engine/read.ts,
 *   guarantee 2), rate-limited per user (or client address) by PATCHBAY_RATE_STATE_AT. A past
 *   state is not put in the hot cache (it holds the head's). An index past head is a 400
 *   `invalid_request` with `head`; nothing is read or written for a refused request.
 *
 * Long polling: with `wait=ms`, a history request that finds no patch at or after `from` is held
 * until one is committed (then answered as if it had just arrived), the client leaves, or `wait`
 * (cut to PATCHBAY_HISTORY_WAIT_MAX_MS) passes (then an empty answer). It waits on the engine's
 * stream of the scope (shared/engine/stream.ts: subscribed before it reads the head, so a patch
 * committed meanwhile is not missed), and takes a stream slot while it waits, as a stream does.
 * A client behind a proxy that buffers SSE (no heartbeat ever arrives) follows a scope this way.
 */
import type { Caller } from '../../engine/access.js';
import { PatchbayError } from '../../errors.js';
import { type Ctx, intParam, parseIndex, pathParam, readableHead, reader, scopeId } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { drained } from '../sse.js';

export const historyRoutes: Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/v1/scopes/{id}/patches',
    name: 'patches.history',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const caller = await reader(ctx);
      const head = await readableHead(ctx, id, caller);
      const from = intParam(ctx.url, 'from') ?? 1;
      const to = intParam(ctx.url, 'to');
      const wait = Math.min(intParam(ctx.url, 'wait') ?? 0, ctx.deps.config.historyWaitMaxMs);
      if (wait > 0 && head.ii < from && (to === undefined || to >= from) && ctx.req.method !== 'HEAD') {
        await waitForPatch(ctx, id, head.ii, from, wait, caller);
        if (ctx.res.destroyed) return;
      }
      const records = await ctx.deps.engine.history(id, from, to);
      ctx.res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
      if (ctx.req.method === 'HEAD') return void ctx.res.end();
      for await (const r of records) {
        const line = `${JSON.stringify({ ii: r.ii, patch: r.patch, at: r.at, by: r.by })}\n`;
        if (!ctx.res.write(line)) await drained(ctx.res);
        if (ctx.res.destroyed) return;
      }
      ctx.res.end();
    },
  },
  {
    method: 'GET',
    path: '/v1/scopes/{id}/at/{ii}',
    name: 'scopes.at',
    run: async (ctx) => {
      const id = scopeId(ctx);
      const ii = parseIndex(pathParam(ctx, 1), 'ii');
      const caller = await reader(ctx);
      const head = await readableHead(ctx, id, caller);
      if (ii > head.ii) {
        throw new PatchbayError('invalid_request', `ii ${ii} is past the scope's head ${head.ii}`, {
          head: head.ii,
          issues: [{ path: ['ii'], message: `at most ${head.ii}` }],
        });
      }
      await ctx.deps.limits.stateAt(caller?.id ?? null, ctx.req);
      ctx.log.ii = ii;
      const state = await ctx.deps.engine.stateAt(id, ii, { cache: ii === head.ii, trimmed: head.trimmed });
      // A past state never changes: the ETag names it for good.
      sendJson(ctx.res, 200, { id, ii, state }, { etag: `"${ii}"`, 'cache-control': 'private, no-cache' });
    },
  },
];

/**
 * Resolves when a patch at or after `from` has been committed, the client has left, the scope's
 * stream ended (its reader lost access, it was deleted: the answer is then whatever history
 * says), or `wait` ms passed.
 */
async function waitForPatch(ctx: Ctx, id: string, head: number, from: number, wait: number, caller: Caller | null): Promise<void> {
  const { engine, limits } = ctx.deps;
  const release = await limits.openStream(caller?.id ?? `addr:${limits.clientAddress(ctx.req)}`);
  let done: () => void = () => {};
  const arrived = new Promise<void>((resolve) => {
    done = resolve;
  });
  const timer = setTimeout(done, wait);
  ctx.res.once('close', done);
  let stop: (() => Promise<void>) | undefined;
  try {
    stop = await engine.openStream(
      id,
      head,
      {
        state: () => {},
        patch: (e) => {
          if (e.ii >= from) done();
        },
        failed: done,
        revoked: done,
      },
      { reader: caller },
    );
    await arrived;
  } finally {
    clearTimeout(timer);
    ctx.res.off('close', done);
    await stop?.();
    release();
  }
}
