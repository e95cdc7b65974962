/**
 * Validation before commit (issue 13, part 4): the commit rules (shared/engine/decide.ts,
 * `CommitRules`) that hold every state of a scope to its domain's active configuration:
 * - `validate`, for each patch inside the commit plan: the state that patch results in must
 *   satisfy the JSON Schema of the scope's type (`422 validation_failed`), and the patch and state
 *   the domain's own limits (`413 too_large`);
 * - `create`: a new scope's initial state the same, and its name the type's name rule
 *   (`400 invalid_request`).
 *
 * Guarantee 3 (a rejected request changes nothing), exactly, under group commit: `validate` runs
 * in the decision on the candidate state of each patch in turn (the state after the accepted
 * patches before it in the group); a refused patch contributes no record, and the next patch
 * applies to the state without it (decide.ts rebuilds its working copy). The configuration used
 * is the one `ActiveConfigs.get` answers for the scope's domain when the decision runs: a
 * configuration that changes while a group commits applies to the run that commits.
 */
import type { CommitRules } from '../engine/decide.js';
import { DEFAULT_RULES } from '../engine/decide.js';
import type { ActiveConfigs } from './active.js';

/** `base` (default: the default rules), plus each domain's configured validation. */
export function domainRules(configs: ActiveConfigs, base: CommitRules = DEFAULT_RULES): CommitRules {
  return {
    authorize: (ctx) => base.authorize(ctx),
    async prepare(domain) {
      await base.prepare?.(domain);
      await configs.prepare?.(domain);
    },
    validate(ctx) {
      base.validate?.(ctx);
      const active = configs.get(ctx.head.meta.domain);
      if (!active?.hasStateRules) return;
      active.checkLimits(ctx.state, ctx.req.patch);
      active.checkState(ctx.head.meta.type, ctx.state);
    },
    create(ctx) {
      base.create?.(ctx);
      const active = configs.get(ctx.meta.domain);
      if (!active) return;
      active.checkName(ctx.meta.type, ctx.meta.name);
      active.checkLimits(ctx.state, null);
      active.checkState(ctx.meta.type, ctx.state);
    },
  };
}
