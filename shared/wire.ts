/**
 * The plain wire types that the server and the client (`client/`) share: JSON Patch operations
 * and the events streams and history carry. Types only, no validation and no dependency, so the
 * client's package can import them in browsers; the zod schemas that check them on the way in are
 * in ./protocol.ts, which re-exports these.
 */
import type { Json } from './json.js';

/** A scope id: `[A-Za-z0-9_.:-]{1,128}`, except `.` and `..`, which no URL can carry. */
export const SCOPE_ID = /^(?!\.\.?$)[A-Za-z0-9_.:-]{1,128}$/;

export const OPS = ['add', 'remove', 'replace', 'move', 'copy', 'test'] as const;
export type OpName = (typeof OPS)[number];

export interface Operation {
  op: OpName;
  path: string;
  from?: string;
  value?: Json;
}
export type Patch = Operation[];

/** What subscribers receive for each committed patch (also the SSE `patch` event data, minus `scope`). */
export interface PatchEvent {
  scope: string;
  ii: number;
  patch: Patch;
  at: number;
  by: string;
}
