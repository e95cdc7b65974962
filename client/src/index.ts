/**
 * `@patchbay/client`: live scopes over patchbay's v1 HTTP API, with optimistic JSON Patch,
 * SSE with resume, retries by `(session, si)` and rebase on conflict. Runs in browsers and Node 20+
 * (fetch, ReadableStream, TextDecoderStream only). See client/README.md.
 *
 * @example
 * const client = createClient({ url: 'http://localhost:8080' });
 * const todo = await client.create({ state: { items: [] } });
 * todo.watch((state) => console.log(state));
 * await todo.patch([{ op: 'add', path: '/items/-', value: 'milk' }]);
 */
export type { ErrorCode } from '../../shared/errors.js';
export type { Json } from '../../shared/json.js';
export type { Operation, Patch, PatchEvent } from '../../shared/wire.js';
export { applyPatch } from './apply.js';
export {
  type AccessOptions,
  type ClientEvents,
  type ClientOptions,
  type CreateOptions,
  createClient,
  type OfflineOptions,
  openClient,
  PatchbayClient,
  type ScopeRef,
} from './client.js';
export type { ConnectionChange, ConnectionStatus } from './connection.js';
export { type ClientErrorCode, PatchbayClientError } from './errors.js';
export { invert } from './history.js';
export type { TokenProvider } from './http.js';
export type { MuxMode, MuxOptions } from './mux.js';
export type { PresenceEntry } from './presence.js';
export type { QueryParams, QueryResult } from './queries.js';
export { type Ack, type ComposeLimits, type ConflictEvent, LiveScope, type Ordering, type PatchEventData, type ScopeEvents, type Watcher } from './scope.js';
export { Session, type SessionEvents, type SessionView } from './sessions.js';
export { type ClientStorage, indexedDbStorage, memoryStorage } from './storage.js';
export type { StreamStatus } from './stream.js';
export type { TabMode } from './tabs.js';
export type { UploadOptions, UploadState } from './uploads.js';
