/**
 * The desired-state model's vocabulary: a resource (kind, name, desired properties, the resources
 * it depends on, and why it exists) and a kind (how to observe, compare, create, update and delete
 * resources of one sort with gcloud). The reconciler (reconcile.ts) knows nothing else about
 * Google Cloud; each kind is one module under kinds/, and desired.ts builds the list.
 */
import type { Command, Gcloud } from './gcloud.js';
import type { DeployConfig } from './settings.js';

export interface Resource<P = unknown> {
  kind: string;
  /** Unique within its kind. */
  name: string;
  props: P;
  /** Ids (`kind:name`) of the resources that must exist first. */
  deps: string[];
  /** One line: what the deployment needs it for. */
  why: string;
}

export const idOf = (r: { kind: string; name: string }): string => `${r.kind}:${r.name}`;

/** One property that differs between the model and the live resource. */
export interface Diff {
  field: string;
  want: unknown;
  live: unknown;
  /** gcloud cannot change it in place. */
  immutable?: boolean;
}

/** What every kind may read besides its resources. */
export interface Context {
  gcloud: Gcloud;
  cfg: DeployConfig;
  /** The project number (the Google-managed service agents are named by it). */
  projectNumber: string;
}

export interface Kind<P = unknown> {
  kind: string;
  /**
   * The live resources of this kind, by name: at least those of `wanted` that exist, and every
   * one patchbay created (for `--prune`) where the kind can be listed.
   */
  observe(ctx: Context, wanted: Resource<P>[]): Promise<Map<string, P>>;
  /** Differences that matter; an empty list means up to date. Default: compareProps. */
  diff?(want: P, live: P): Diff[];
  create(ctx: Context, r: Resource<P>): Command[] | Promise<Command[]>;
  /** Commands that bring `live` to `r.props`; absent for kinds whose resources are only created. */
  update?(ctx: Context, r: Resource<P>, live: P, diffs: Diff[]): Command[];
  /** Whether patchbay created this live resource (a label or a description says so). */
  ours?(ctx: Context, name: string, live: P): boolean;
  /** Commands that delete a live resource; absent: never deleted by `--prune` (data, APIs). */
  remove?(ctx: Context, name: string, live: P): Command[];
}

/** The label every labelable resource patchbay creates carries, and the description marker of the rest. */
export const LABEL = { key: 'managed-by', value: 'patchbay' } as const;
export const MARK = '(managed by patchbay deploy)';

/** Compares the fields of `want` with `live` (JSON equality); `immutable` fields are flagged. */
export function compareProps<P extends object>(want: P, live: P, immutable: string[] = []): Diff[] {
  const out: Diff[] = [];
  for (const [field, w] of Object.entries(want)) {
    if (w === undefined) continue;
    const l = (live as Record<string, unknown>)[field];
    if (stable(w) !== stable(l)) out.push({ field, want: w, live: l, ...(immutable.includes(field) ? { immutable: true } : {}) });
  }
  return out;
}

/** JSON with object keys sorted, so key order never counts as a difference. */
export function stable(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

/** The last segment of a resource path (`projects/p/topics/t` → `t`). */
export const last = (path: string | undefined): string => (path ?? '').split('/').pop() ?? '';
