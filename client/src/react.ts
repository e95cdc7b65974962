/**
 * `@patchbay/client/react`: live scopes in React components (issue 16 item 8). React is a peer
 * dependency: this entry imports it, the main entry does not.
 *
 * - `<PatchbayProvider client={client}>` makes a client available below it.
 * - `useScope(idOrName)` opens the scope (what `client.scope()` takes: an id, `{ name }` for a
 *   named scope that must exist, `{ name, create }` for the caller's own, created when missing; the
 *   older `{ name, state?, type? }` still creates), re-renders on every change of its optimistic
 *   state and of its connection, and answers `{ state, patch, draft, status, error, ii, scope }`.
 *   Components using the same scope share one live scope (one stream); it is closed a moment after
 *   the last of them unmounts (so React's StrictMode remounts and quick navigations do not reopen
 *   it), and not while another component holds it under another reference (an id and a name).
 * - `useConnection()`: the client's connection state (`client.status`: `connecting`, `online`,
 *   `reconnecting`, `offline`), re-rendering when it changes.
 *
 * @example
 * function Todo({ id }: { id: string }) {
 *   const { state, patch, status } = useScope<{ items: string[] }>(id);
 *   if (!state) return status === 'error' ? 'cannot open' : 'loading…';
 *   return <button onClick={() => patch([{ op: 'add', path: '/items/-', value: 'milk' }])}>{state.items.length}</button>;
 * }
 */
import { createContext, createElement, type ReactNode, useCallback, useContext, useEffect, useMemo, useRef, useSyncExternalStore } from 'react';
import type { Json } from '../../shared/json.js';
import type { Patch } from '../../shared/wire.js';
import type { ScopeRef as ClientScopeRef, PatchbayClient } from './client.js';
import type { ConnectionStatus } from './connection.js';
import { PatchbayClientError } from './errors.js';
import type { Ack, LiveScope } from './scope.js';
import type { StreamStatus } from './stream.js';

const Context = createContext<PatchbayClient | null>(null);

/** Makes `client` the one `useScope` and `usePatchbay` use below it. */
export function PatchbayProvider(props: { client: PatchbayClient; children?: ReactNode }): ReactNode {
  return createElement(Context.Provider, { value: props.client }, props.children);
}

/** The client of the nearest `PatchbayProvider` (throws without one). */
export function usePatchbay(): PatchbayClient {
  const client = useContext(Context);
  if (!client) throw new Error('usePatchbay/useScope: no <PatchbayProvider client={...}> above this component');
  return client;
}

/** `loading` until the first state; then the stream's status; `error` when the scope cannot be opened. */
export type ScopeStatus = 'loading' | StreamStatus | 'error';

export interface ScopeView<T> {
  /** The optimistic state; undefined until the scope is ready. */
  state: T | undefined;
  /** The index of the last server state folded in. */
  ii: number;
  status: ScopeStatus;
  /** Why the scope could not be opened, or the last refusal of a patch of it. */
  error: PatchbayClientError | undefined;
  /** `scope.patch`: applied at once (this component re-renders), resolves with the ack. Rejects before the scope is open. */
  patch(ops: Patch): Promise<Ack>;
  /** `scope.draft`: mutate a draft, the difference is sent as one patch. */
  draft(fn: (draft: T) => unknown): Promise<Ack | null>;
  /** The live scope itself, once open (undo, redo, history, synced...). */
  scope: LiveScope | undefined;
}

/** What `client.scope()` takes, or the older `{ name, state?, type? }` (the caller's named scope, created from them when missing). */
export type ScopeRef = ClientScopeRef | { name: string; state?: Json; type?: string };

interface Snapshot {
  state: Json | undefined;
  ii: number;
  status: ScopeStatus;
  error: PatchbayClientError | undefined;
}

/** One opened scope shared by the components that use it, with the snapshot React reads. */
class Shared {
  snapshot: Snapshot = { state: undefined, ii: 0, status: 'loading', error: undefined };
  scope: LiveScope | undefined;
  users = 0;
  /** Released before its scope opened: the scope is closed when it does (no half-open scope). */
  released = false;
  private readonly listeners = new Set<() => void>();

  constructor(open: Promise<LiveScope>, others: () => Iterable<Shared>) {
    open.then(
      (scope) => {
        if (this.released) {
          if (![...others()].some((o) => o.scope === scope)) scope.close();
          return;
        }
        this.scope = scope;
        scope.watch((state) => this.set({ state, ii: scope.ii, status: scope.state === undefined ? 'loading' : scope.status }));
        scope.on('status', (status) => this.set({ status: this.snapshot.state === undefined ? 'loading' : status }));
        scope.on('error', (error) => this.set({ error }));
        scope.ready.then(
          (state) => this.set({ state: scope.state ?? state, ii: scope.ii, status: scope.status === 'connecting' ? 'online' : scope.status }),
          (error) => this.set({ status: 'error', error }),
        );
      },
      (error) => this.set({ status: 'error', error: toClientError(error) }),
    );
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private set(change: Partial<Snapshot>): void {
    this.snapshot = { ...this.snapshot, ...change };
    for (const l of this.listeners) l();
  }
}

const CLOSE_DELAY_MS = 1000;
const shared = new WeakMap<PatchbayClient, Map<string, Shared>>();

function keyOf(ref: ScopeRef): string {
  if (typeof ref === 'string') return `id:${ref}`;
  if ('id' in ref) return `id:${ref.id}`;
  const { owner, domain } = ref as { owner?: string; domain?: string };
  return `name:${JSON.stringify([ref.name, owner ?? null, domain ?? null])}`;
}

/** The client's reference: the older `{ name, state?, type? }` is `{ name, create: { state, type } }`. */
function clientRef(ref: ScopeRef): ClientScopeRef {
  if (typeof ref === 'string' || !('name' in ref) || 'create' in ref || !('state' in ref || 'type' in ref)) return ref as ClientScopeRef;
  const { state, type } = ref as { state?: Json; type?: string };
  return { name: ref.name, create: { state, type } };
}

function acquire(client: PatchbayClient, ref: ScopeRef): Shared {
  let byKey = shared.get(client);
  if (!byKey) {
    byKey = new Map();
    shared.set(client, byKey);
  }
  const key = keyOf(ref);
  let s = byKey.get(key);
  if (!s) {
    const m = byKey;
    let open: Promise<LiveScope>;
    try {
      open = Promise.resolve(client.scope(clientRef(ref)));
    } catch (err) {
      open = Promise.reject(err); // an id the server could not accept: shown as the hook's error
    }
    s = new Shared(open, () => m.values());
    byKey.set(key, s);
  }
  return s;
}

function release(client: PatchbayClient, ref: ScopeRef, s: Shared): void {
  s.users--;
  setTimeout(() => {
    const byKey = shared.get(client);
    if (s.users > 0 || byKey?.get(keyOf(ref)) !== s) return;
    byKey.delete(keyOf(ref));
    s.released = true;
    // Another component may hold the same live scope under another reference (its id, its name).
    if (s.scope && ![...byKey.values()].some((o) => o.scope === s.scope)) s.scope.close();
  }, CLOSE_DELAY_MS);
}

/** A live scope for this component: see the module comment. */
// biome-ignore lint/suspicious/noExplicitAny: the state's shape is the app's; a caller names it with T (`useScope<Todo>(id)`)
export function useScope<T = any>(ref: ScopeRef): ScopeView<T> {
  const client = usePatchbay();
  const key = keyOf(ref);
  const refRef = useRef(ref);
  refRef.current = ref;
  // biome-ignore lint/correctness/useExhaustiveDependencies: the scope is named by its key; a new object literal each render is the same scope
  const s = useMemo(() => acquire(client, refRef.current), [client, key]);
  useEffect(() => {
    s.users++;
    return () => release(client, refRef.current, s);
  }, [client, s]);
  const snap = useSyncExternalStore(s.subscribe, () => s.snapshot);
  const patch = useCallback(
    (ops: Patch) => (s.scope ? s.scope.patch(ops) : Promise.reject(new PatchbayClientError('closed', 'the scope is not open yet'))),
    [s],
  );
  const draft = useCallback(
    (fn: (draft: T) => unknown) => (s.scope ? s.scope.draft<T>(fn) : Promise.reject(new PatchbayClientError('closed', 'the scope is not open yet'))),
    [s],
  );
  return { state: snap.state as T | undefined, ii: snap.ii, status: snap.status, error: snap.error, patch, draft, scope: s.scope };
}

/** The client's connection state (`client.status`), re-rendering when it changes (./connection.ts). */
export function useConnection(): ConnectionStatus {
  const client = usePatchbay();
  const subscribe = useCallback(
    (listener: () => void) => {
      const offs = (['online', 'reconnecting', 'offline'] as const).map((e) => client.on(e, listener));
      return () => {
        for (const off of offs) off();
      };
    },
    [client],
  );
  return useSyncExternalStore(subscribe, () => client.status);
}

function toClientError(err: unknown): PatchbayClientError {
  return err instanceof PatchbayClientError ? err : new PatchbayClientError('network_error', err instanceof Error ? err.message : String(err));
}
