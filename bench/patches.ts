/**
 * The patches of the long scopes `rebuild` and `catchup` read: patch i sets a counter and writes
 * one of 1,000 map entries, so the state stays small (about 15 KB) however long the log, and the
 * fold does real pointer work (two ops, one two levels deep).
 */
import type { Json } from '../shared/json.js';
import type { Patch } from '../shared/protocol.js';

export const LONG_INITIAL: Json = { n: 0, m: {} };

export function longPatch(i: number): Patch {
  return [
    { op: 'replace', path: '/n', value: i },
    { op: 'add', path: `/m/k${i % 1000}`, value: { i, at: 1_700_000_000_000 + i } },
  ];
}
