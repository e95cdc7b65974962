/**
 * `@patchbay/client/react` (client/src/react.ts) rendered for real: react-dom's client renderer
 * into a happy-dom document (a DOM in Node; the client underneath speaks to the real embedded
 * server over real sockets). What it must do: `useScope(id)` renders `loading`, then the scope's
 * state, and re-renders on this component's patches (at once, optimistically) and on other
 * writers' (from the stream); `useScope({name})` opens an existing named scope (`error` with
 * `scope_not_found` otherwise) and `{name, create}` (or the older `{name, state}`) the caller's, created
 * when missing; a scope that cannot be read renders `error` with the server's code; components
 * using one scope share one live scope, closed after the last unmounts, and not while it is held
 * under another reference (its id and its name); a name resolved after its component unmounted
 * is closed; `useConnection()` renders the client's connection state; `useScope` without a
 * provider throws.
 */
import { Window } from 'happy-dom';
import type { ReactNode } from 'react';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createClient, type PatchbayClient } from '../client/src/index.js';
import { startServer, type TestServer } from './helpers/server.js';

// react-dom decides whether it has a DOM when it is first imported: the globals go in before (the imports below are dynamic).
const win = new Window({ url: 'http://localhost/' });
const document = win.document;
for (const [k, v] of Object.entries({ window: win, document: win.document, navigator: win.navigator, IS_REACT_ACT_ENVIRONMENT: false })) {
  Object.defineProperty(globalThis, k, { value: v, configurable: true, writable: true });
}

let srv: TestServer;
let React: typeof import('react');
let ReactDOM: typeof import('react-dom/client');
let hooks: typeof import('../client/src/react.js');
let client: PatchbayClient;
let token: string;

beforeAll(async () => {
  React = await import('react');
  ReactDOM = await import('react-dom/client');
  hooks = await import('../client/src/react.js');
  srv = await startServer({ sseRetryMs: 0 });
  token = (await srv.client()).token;
  client = createClient({ url: srv.url, token });
});
afterAll(async () => {
  client?.close();
  await srv?.close();
  await win.happyDOM.close();
});

async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; the page shows: ${document.body.textContent}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function mount(children: ReactNode) {
  const el = document.createElement('div');
  document.body.appendChild(el);
  const root = ReactDOM.createRoot(el as unknown as Element);
  root.render(React.createElement(hooks.PatchbayProvider, { client }, children));
  return { el, unmount: () => root.unmount() };
}

function Todo(props: { id: string; label: string }) {
  const { state, patch, status, error } = hooks.useScope<{ items: string[] }>(props.id);
  const h = React.createElement;
  return h(
    'div',
    null,
    h('span', { className: 'status' }, `${props.label}:${status}${error ? `:${error.code}` : ''}`),
    h('span', { className: 'items' }, state ? state.items.join(',') : ''),
    h('button', { onClick: () => void patch([{ op: 'add', path: '/items/-', value: 'milk' }]) }, 'add'),
  );
}

it('renders loading, then the state; re-renders on its own patches at once and on other writers’ from the stream', async () => {
  const created = await client.request<{ id: string }>('POST', '/v1/scopes', { state: { items: ['eggs'] } });
  const { el, unmount } = mount(React.createElement(Todo, { id: created.id, label: 'a' }));
  const text = () => el.textContent ?? '';
  expect(text()).toBe(''); // nothing rendered synchronously by a concurrent root
  await until(() => text().startsWith('a:loading'), 'loading');
  await until(() => text().includes('a:online') && text().includes('eggs'), 'the state');
  (el.querySelector('button') as unknown as { click(): void }).click();
  await until(() => text().includes('eggs,milk'), 'the optimistic patch');
  const other = createClient({ url: srv.url, token });
  await other.scope(created.id).patch([{ op: 'add', path: '/items/-', value: 'tea' }]);
  await until(() => text().includes('eggs,milk,tea'), "another writer's patch");
  other.close();
  const head = await client.request<{ ii: number; state: unknown }>('GET', `/v1/scopes/${created.id}`);
  expect(head).toMatchObject({ ii: 2, state: { items: ['eggs', 'milk', 'tea'] } });
  unmount();
});

it('shares one live scope among components, and closes it after the last unmounts', async () => {
  const created = await client.request<{ id: string }>('POST', '/v1/scopes', { state: { items: [] } });
  const { el, unmount } = mount([
    React.createElement(Todo, { key: 1, id: created.id, label: 'x' }),
    React.createElement(Todo, { key: 2, id: created.id, label: 'y' }),
  ]);
  await until(() => (el.textContent ?? '').includes('x:online') && (el.textContent ?? '').includes('y:online'), 'both');
  const live = client.scope(created.id); // the same LiveScope the hooks use (one per id while open)
  (el.querySelectorAll('button')[0] as unknown as { click(): void }).click();
  await until(() => (el.textContent ?? '').split('milk').length === 3, 'both components show the patch');
  await live.synced();
  unmount();
  await until(() => live.status === 'closed', 'the scope closed after the last unmount');
});

it('opens a named scope, and renders error with the code for a scope it cannot read', async () => {
  function Prefs() {
    const { state, status } = hooks.useScope<{ theme: string }>({ name: 'prefs', state: { theme: 'dark' } });
    return React.createElement('p', null, `prefs:${status}:${state?.theme ?? ''}`);
  }
  const { el, unmount } = mount([React.createElement(Prefs, { key: 'p' }), React.createElement(Todo, { key: 't', id: 'no-such-scope', label: 'm' })]);
  await until(() => (el.textContent ?? '').includes('prefs:online:dark'), 'the named scope');
  await until(() => (el.textContent ?? '').includes('m:error:scope_not_found'), 'the error');
  unmount();
});

it('opens by { name } (existing only) and { name, create }; keeps a scope held under its id and its name; closes one resolved after unmount', async () => {
  function Named(props: { name: string; create?: boolean }) {
    const { state, status, error, scope } = hooks.useScope<{ v: number }>(
      props.create ? { name: props.name, create: { state: { v: 1 } } } : { name: props.name },
    );
    const connection = hooks.useConnection();
    return React.createElement('p', null, `${props.name}:${status}:${error?.code ?? ''}:${state?.v ?? ''}:${scope?.id ?? ''}:${connection}`);
  }
  const { el, unmount } = mount([
    React.createElement(Named, { key: 'a', name: 'absent' }),
    React.createElement(Named, { key: 'c', name: 'made', create: true }),
  ]);
  const text = () => el.textContent ?? '';
  await until(() => text().includes('absent:error:scope_not_found'), 'a name that names nothing');
  await until(() => /made:online::1:[^:]+:online/.test(text()), 'the created named scope, and the client online');
  const id = /made:online::1:([^:]+):/.exec(text())?.[1] as string;
  const live = client.scope(id);
  // The same scope by id in another component: unmounting the named one must not close it.
  function ById(props: { id: string }) {
    const { status } = hooks.useScope(props.id);
    return React.createElement('p', null, `i:${status}`);
  }
  const byId = mount(React.createElement(ById, { id }));
  await until(() => (byId.el.textContent ?? '').includes('i:online'), 'the scope by id');
  unmount();
  await new Promise((r) => setTimeout(r, 1300)); // past the close delay
  expect(live.status).not.toBe('closed');
  byId.unmount();
  await until(() => live.status === 'closed', 'closed after the last holder');

  // Unmounted while the name resolves (slower than the close delay): the scope it resolves to is
  // closed, not left open with no component holding it.
  const slow = createClient({
    url: srv.url,
    token,
    fetch: async (input, init) => {
      if (String(input).includes('/v1/names/')) await new Promise((r) => setTimeout(r, 1500));
      return fetch(input, init);
    },
  });
  const gone = document.createElement('div');
  const root = ReactDOM.createRoot(gone as unknown as Element);
  root.render(React.createElement(hooks.PatchbayProvider, { client: slow }, React.createElement(Named, { name: 'made' })));
  await new Promise((r) => setTimeout(r, 50));
  root.unmount();
  await new Promise((r) => setTimeout(r, 2500)); // the close delay passed, then the name resolved
  const after = slow.scope(id);
  expect(after.status).toBe('connecting'); // a new live scope: the late one was closed (an open one would be online)
  slow.close();
});

it('throws without a provider', () => {
  function Bare() {
    hooks.useScope('x');
    return null;
  }
  const el = document.createElement('div');
  const errors: unknown[] = [];
  const root = ReactDOM.createRoot(el as unknown as Element, { onUncaughtError: (e) => errors.push(e) });
  return new Promise<void>((resolve) => {
    root.render(React.createElement(Bare));
    setTimeout(() => {
      expect(String(errors[0])).toMatch(/no <PatchbayProvider/);
      root.unmount();
      resolve();
    }, 100);
  });
});
