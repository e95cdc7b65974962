/**
 * Cold storage: bundles and snapshots in the blob store, the bundler that writes them and trims
 * the hot log, and the readers that put the whole log back together. Talks only to the Ledger
 * and BlobStore ports. docs/cold-storage.md describes the format and the protocol.
 */
export { Bundler, type BundlerConfig, type BundlerOptions, type RunReport, type ScopeReport, type ScopeRunOptions } from './bundler.js';
export { foldAccepted } from './fold.js';
export { decodeBundle, decodeBundlePatches, decodeSnapshot, encodeBundle, encodeSnapshot, recordLine } from './format.js';
export { LOG_PAGE, PATCH_PAGE, readLog, readPatchPages } from './log.js';
export { type BundleRef, bundleKey, bundlePrefix, parseBundleKey, parseSnapshotKey, scopeSegment, snapshotKey, snapshotPrefix } from './names.js';
export { type CacheCheck, checkCache, foldForward, rebuildState, type StartPoint } from './rebuild.js';
export { ColdStore, type WriteOutcome } from './store.js';
