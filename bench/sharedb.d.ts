/**
 * The little of ShareDB 7 and @teamwork/websocket-json-stream 2 the bench uses (neither ships
 * type declarations). Read from node_modules/sharedb/lib/{backend,client/connection,client/doc}.js.
 */
declare module 'sharedb' {
  import type { Duplex } from 'node:stream';

  class Backend {
    constructor(options?: { doNotCommitNoOps?: boolean });
    /** A client connected through `stream` (JSON objects both ways). */
    listen(stream: Duplex, req?: unknown): unknown;
    close(callback?: (err?: Error) => void): void;
  }
  export default Backend;
}

declare module 'sharedb/lib/client/index.js' {
  type Callback = (err?: Error | null) => void;

  export interface Doc {
    readonly version: number | null;
    readonly type: unknown;
    // biome-ignore lint/suspicious/noExplicitAny: json0 snapshots are arbitrary JSON
    readonly data: any;
    subscribe(callback?: Callback): void;
    fetch(callback?: Callback): void;
    create(data: unknown, callback?: Callback): void;
    submitOp(op: unknown[], callback?: Callback): void;
    /** `op` after a remote (source false) or local op is applied to `data`. */
    on(event: 'op', listener: (op: unknown[], source: unknown) => void): this;
    destroy(callback?: Callback): void;
  }

  /** A browser-like socket: ws's WebSocket qualifies (onopen, onmessage, send, readyState, close). */
  export class Connection {
    constructor(socket: unknown);
    get(collection: string, id: string): Doc;
    on(event: 'state', listener: (state: string, reason: string) => void): this;
    readonly state: string;
    close(): void;
  }
}

declare module '@teamwork/websocket-json-stream' {
  import { Duplex } from 'node:stream';
  import type { WebSocket } from 'ws';

  export default class WebSocketJSONStream extends Duplex {
    constructor(ws: WebSocket);
  }
}
