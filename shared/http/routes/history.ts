/**
 * Route group `history`: `GET /v1/scopes/{id}/patches?from=a&to=b`, a scope's patches as NDJSON
 * (one `{ii, patch, at, by}` per line) from the log tail and cold storage alike, written with
 * back-pressure and stopped when the client leaves. Readers only (no token for a public scope).
 */
import { type Ctx, intParam, readableHead, reader, scopeId } from '../context.js';
import type { Route } from '../router.js';
import { drained } from '../sse.js';

export const historyRoutes: Route<Ctx>[] = [
  {
    method: 'GET',
    path: '/v1/scopes/{id}/patches',
    name: 'patches.history',
    run: async (ctx) => {
      const id = scopeId(ctx);
      await readableHead(ctx, id, await reader(ctx));
      const from = intParam(ctx.url, 'from') ?? 1;
      const to = intParam(ctx.url, 'to');
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
];
