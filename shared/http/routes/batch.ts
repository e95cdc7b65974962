/**
 * Route group `batch`: `POST /v1/batch` submits many patches, to one or several scopes, in one
 * request, so a client that writes faster than one round trip per patch (issue #16: the client's
 * batching) is not bound by one request per commit. Each item is exactly a
 * `POST /v1/scopes/{scope}/patches` of its own: its limits are checked, it spends its write
 * token, and it is submitted to the engine with its `ii` and `(session, si)`; its answer is its
 * own result (an ack, or the error that request would have got), in the items' order.
 *
 * Ordering: the items are handed to the engine in one synchronous pass, in the order they are
 * listed, so the items of one scope join its queue in that order and are decided in it by the
 * group commit (shared/engine/commit.ts), several in one ledger transaction when they arrive
 * together. A malformed item (schema) or too many items refuse the whole request before anything
 * is submitted; any other refusal is per item. The items of one scope form a sequence
 * (shared/engine/decide.ts `Chain`): after one is refused (here by a limit, or by the engine),
 * every later one of that scope with an `ii` is refused with `out_of_sync` and not applied, so a
 * client's pipelined patches never commit out of their order (a later item's predicted `ii` can
 * match the head that another writer's patches moved; separate requests would commit it).
 */

import type { Ack, Chain } from '../../engine/decide.js';
import { asPatchbayError, PatchbayError } from '../../errors.js';
import { type CheckedPatch, cannotGrow } from '../../patch.js';
import { type BatchRequest, batchRequestSchema } from '../../protocol.js';
import { readBody } from '../body.js';
import { type Ctx, user } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

type Result = Ack | { id: string; error: Record<string, unknown> };

export const batchRoutes: Route<Ctx>[] = [
  {
    method: 'POST',
    path: '/v1/batch',
    name: 'patches.batch',
    run: async (ctx) => {
      const u = await user(ctx);
      const { config, engine, limits } = ctx.deps;
      const req: BatchRequest = await readBody(ctx.req, batchRequestSchema, config);
      if (req.patches.length > config.maxBatch) {
        throw new PatchbayError('too_large', `a batch may have at most ${config.maxBatch} patches`, {
          limit: 'maxBatch',
          max: config.maxBatch,
          actual: req.patches.length,
        });
      }
      const failed = (id: string, err: unknown): Result => ({ id, error: asPatchbayError(err).toBody().error });
      // Limits first, each item as its own request would spend them.
      const passed: Array<CheckedPatch | Result> = [];
      for (const item of req.patches) {
        try {
          const c = engine.check(item.patch);
          await limits.write(u.id, c.bytes, cannotGrow(item.patch));
          passed.push(c);
        } catch (err) {
          passed.push(failed(item.scope, err));
        }
      }
      // Then every item that passed, into the engine in one synchronous pass (their order per scope),
      // each scope's items one sequence.
      const chains = new Map<string, Chain>();
      const answers = req.patches.map((item, i): Promise<Result> => {
        const c = passed[i] as CheckedPatch | Result;
        const { scope, ...patchRequest } = item;
        const chain = chains.get(scope) ?? { refused: false };
        chains.set(scope, chain);
        if (!('bytes' in c)) {
          chain.refused = true;
          return Promise.resolve(c);
        }
        try {
          return engine.submit(scope, u.id, patchRequest, { domain: u.domain, checked: c, chain }).catch((err: unknown) => failed(scope, err));
        } catch (err) {
          chain.refused = true;
          return Promise.resolve(failed(scope, err));
        }
      });
      const results = await Promise.all(answers);
      sendJson(ctx.res, 200, { results });
    },
  },
];
