/**
 * Named queries over a domain's mirror (docs/domains.md): one run (`POST
 * /v1/domains/{domain}/queries/{name}`) and a live query (`GET …/events?params=`, SSE: a `result`
 * event first and again whenever the result changes; `failed` and the end when a later run
 * fails). A live query is not resumable: after a drop (or the server's clean end at
 * PATCHBAY_SSE_MAX_MS) the stream reconnects with the client's backoff (./stream.ts) and its
 * first event is the current result, so nothing is missed, only possibly repeated. Refusals are
 * PatchbayClientErrors with the server's code: `unknown_query`, `invalid_params`, `query_failed`
 * (with `pgCode`), `query_timeout`, `unavailable`, `rate_limited`.
 *
 * When the client is multiplexed, a live query rides its shared connection instead (./mux.ts
 * `watchQuery`, ./tabs.ts for an origin's tabs), with the same results and errors.
 */
import type { Json } from '../../shared/json.js';
import { errorOf, type PatchbayClientError, type ServerError } from './errors.js';
import type { Transport } from './http.js';
import type { QueryWatcher, Subscription } from './mux.js';
import { ScopeStream } from './stream.js';

/** A shared connection that carries live queries (./mux.ts `MuxStream`, ./tabs.ts `TabShare`). */
export interface QuerySource {
  watchQuery(domain: string, name: string, params: unknown, w: QueryWatcher): Subscription;
}

/** A query's answer: columns (name and Postgres type) and rows (one array per row, in column order). */
export interface QueryResult {
  columns: Array<{ name: string; type: string }>;
  rows: Json[][];
  /** More rows matched than the server answers (its row limit). */
  truncated: boolean;
}

/** The parameters a query declares (`$name` in its SQL); `$REQUESTER` and `$DOMAIN` are the server's. */
export type QueryParams = Record<string, Json>;

const path = (domain: string, name: string) => `/v1/domains/${encodeURIComponent(domain)}/queries/${encodeURIComponent(name)}`;

/** Runs a named query once. */
export function runQuery(transport: Transport, domain: string, name: string, params?: QueryParams): Promise<QueryResult> {
  return transport.json<QueryResult>('POST', path(domain, name), params === undefined ? {} : { params });
}

/**
 * Watches a named query: `onResult` with each new result (the first one once the stream opens,
 * again after each reconnect); `onError` once if the query is refused or a later run fails, after
 * which the watch has ended. On `shared` when given, else on a stream of its own. Returns the
 * function that ends it.
 */
export function watchQuery(
  transport: Transport,
  domain: string,
  name: string,
  params: QueryParams | undefined,
  onResult: (result: QueryResult) => void,
  onError: (err: PatchbayClientError) => void,
  shared?: QuerySource,
): () => void {
  if (shared) {
    let over = false;
    const sub = shared.watchQuery(domain, name, params, {
      onResult(data) {
        if (over) return;
        const { columns, rows, truncated } = JSON.parse(data) as QueryResult;
        onResult({ columns, rows, truncated });
      },
      onFatal(err) {
        if (over) return;
        over = true;
        onError(err);
      },
    });
    return () => {
      over = true;
      sub.close();
    };
  }
  const query = params === undefined ? '' : `?params=${encodeURIComponent(JSON.stringify(params))}`;
  let ended = false;
  const end = (err?: PatchbayClientError) => {
    if (ended) return;
    ended = true;
    stream.close();
    if (err) onError(err);
  };
  const stream: ScopeStream = new ScopeStream(transport, `${path(domain, name)}/events${query}`, {
    lastId: () => undefined, // results are not resumable: each connection starts with the current one
    onEvent(type, data) {
      if (ended) return;
      if (type === 'result') onResult(JSON.parse(data) as QueryResult);
      else if (type === 'failed') end(errorOf((JSON.parse(data) as { error: ServerError }).error, 0));
    },
    onStatus() {},
    onFatal: (err) => end(err),
  });
  return () => end();
}
