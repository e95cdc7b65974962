/**
 * The generic reconciler. For each resource of the model, in dependency order: observe the live
 * resource (each kind is read once, lazily, when its first resource comes up, so an API enabled a
 * step earlier is usable), compare it with the model, then create it, update what differs, or
 * leave it alone. Idempotence follows from that shape: every action is decided from what is live
 * now, so a second run finds nothing to do, and a run that stopped halfway (any failed command
 * stops the run) is finished by the next one.
 *
 * Modes: `apply` acts; `plan` prints what apply would do and changes nothing; `check` prints each
 * difference (drift) and changes nothing. Nothing is deleted unless `prune` is asked for: then
 * the resources patchbay created (kind.ours) that the model no longer wants are deleted, after the
 * rest, in reverse kind order, and only once `confirm` agrees. A property gcloud cannot change in
 * place (a database's location, a subscription's ordering) is reported as blocked, never forced.
 */
import { type Context, compareProps, type Diff, idOf, type Kind, type Resource } from './model.js';

export type Mode = 'apply' | 'plan' | 'check';
export type Action = 'create' | 'update' | 'ok' | 'blocked' | 'delete';

export interface Step {
  kind: string;
  name: string;
  action: Action;
  diffs: Diff[];
}

export interface Outcome {
  steps: Step[];
  /** Steps that change something (create, update, delete). */
  changes: number;
  /** Steps that cannot be done (blocked). */
  blocked: number;
}

export interface ReconcileOptions {
  mode: Mode;
  prune?: boolean;
  /** Asked before deleting anything (apply with prune); false stops the deletions. */
  confirm?: (doomed: Step[]) => Promise<boolean>;
  out: (line: string) => void;
}

/** Resources in an order where each comes after its dependencies (the model's order otherwise). */
export function dependencyOrder(resources: Resource[]): Resource[] {
  const byId = new Map(resources.map((r) => [idOf(r), r]));
  const done = new Set<string>();
  const visiting = new Set<string>();
  const out: Resource[] = [];
  const visit = (r: Resource) => {
    const id = idOf(r);
    if (done.has(id)) return;
    if (visiting.has(id)) throw new Error(`dependency cycle at ${id}`);
    visiting.add(id);
    for (const d of r.deps) {
      const dep = byId.get(d);
      if (!dep) throw new Error(`${id} depends on ${d}, which the model does not have`);
      visit(dep);
    }
    visiting.delete(id);
    done.add(id);
    out.push(r);
  };
  for (const r of resources) visit(r);
  return out;
}

const show = (v: unknown): string => (v === undefined ? 'absent' : JSON.stringify(v));

export function describeStep(s: Step): string {
  const head = `${s.action.padEnd(7)} ${s.kind} ${s.name}`;
  if (s.diffs.length === 0) return head;
  return `${head}: ${s.diffs.map((d) => `${d.field} ${show(d.live)} -> ${show(d.want)}${d.immutable ? ' (cannot change in place)' : ''}`).join('; ')}`;
}

export async function reconcile(ctx: Context, kinds: Kind[], resources: Resource[], opts: ReconcileOptions): Promise<Outcome> {
  const kindOf = new Map(kinds.map((k) => [k.kind, k]));
  const seen = new Map<string, Promise<Map<string, unknown>>>();
  const observed = (kind: Kind): Promise<Map<string, unknown>> => {
    let p = seen.get(kind.kind);
    if (!p) {
      p = kind.observe(
        ctx,
        resources.filter((r) => r.kind === kind.kind),
      );
      seen.set(kind.kind, p);
    }
    return p;
  };
  const steps: Step[] = [];
  const actionOf = new Map<string, Action>();
  const record = (s: Step) => {
    steps.push(s);
    actionOf.set(`${s.kind}:${s.name}`, s.action);
    opts.out(describeStep(s));
  };

  for (const r of dependencyOrder(resources)) {
    const kind = kindOf.get(r.kind);
    if (!kind) throw new Error(`no kind module for ${r.kind}`);
    // Dry modes: what depends on something not there yet cannot exist (and often cannot even be
    // read, e.g. before its API is enabled), so it is planned for creation without a read.
    if (opts.mode !== 'apply' && r.deps.some((d) => actionOf.get(d) === 'create')) {
      record({ kind: r.kind, name: r.name, action: 'create', diffs: [] });
      continue;
    }
    const live = (await observed(kind)).get(r.name);
    if (live === undefined) {
      if (opts.mode === 'apply') for (const c of await kind.create(ctx, r)) await ctx.gcloud.mutate(c);
      record({ kind: r.kind, name: r.name, action: 'create', diffs: [] });
      continue;
    }
    const diffs = kind.diff ? kind.diff(r.props, live) : compareProps(r.props as object, live as object);
    if (diffs.length === 0) {
      record({ kind: r.kind, name: r.name, action: 'ok', diffs });
      continue;
    }
    if (diffs.some((d) => d.immutable) || !kind.update) {
      record({ kind: r.kind, name: r.name, action: 'blocked', diffs });
      continue;
    }
    if (opts.mode === 'apply') for (const c of kind.update(ctx, r, live, diffs)) await ctx.gcloud.mutate(c);
    record({ kind: r.kind, name: r.name, action: 'update', diffs });
  }

  // What patchbay created and the model no longer wants. Listed in every mode (check reports it
  // as drift); deleted only with prune, in reverse kind order (subscriptions before topics...).
  const wanted = new Set(resources.map(idOf));
  const doomed: Step[] = [];
  for (const kind of [...kinds].reverse()) {
    if (!kind.ours || !kind.remove) continue;
    if (!opts.prune && opts.mode !== 'check') continue;
    let live: Map<string, unknown>;
    try {
      live = await observed(kind);
    } catch (err) {
      // In a dry run on a fresh project a kind may not be readable yet (its API is off): then
      // nothing of it exists. An apply has enabled every API by now, so its errors stand.
      if (opts.mode !== 'apply' && steps.some((s) => s.kind === 'api' && s.action === 'create')) continue;
      throw err;
    }
    for (const [name, props] of live)
      if (!wanted.has(`${kind.kind}:${name}`) && kind.ours(ctx, name, props)) doomed.push({ kind: kind.kind, name, action: 'delete', diffs: [] });
  }
  if (doomed.length > 0) {
    const agreed = opts.mode === 'apply' && opts.prune ? await (opts.confirm ?? (async () => false))(doomed) : true;
    if (!agreed) opts.out(`prune: not confirmed; deleted nothing (${doomed.length} resources left)`);
    for (const s of doomed) {
      if (opts.mode === 'apply') {
        if (!agreed) break;
        const kind = kindOf.get(s.kind) as Kind;
        const live = (await observed(kind)).get(s.name);
        for (const c of kind.remove?.(ctx, s.name, live) ?? []) await ctx.gcloud.mutate(c);
      }
      record(s);
    }
  }
  const changes = steps.filter((s) => s.action === 'create' || s.action === 'update' || s.action === 'delete').length;
  return { steps, changes, blocked: steps.filter((s) => s.action === 'blocked').length };
}
