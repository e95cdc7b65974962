/**
 * Reads a domain configuration's text (YAML, or JSON, which is YAML) into a DomainConfig, or
 * refuses it with `invalid_config` and every problem found, each naming where it is: its path
 * in the configuration and the line and column (1-based) of that place in the text. Syntax
 * errors come from the `yaml` parser; schema errors (shared/domains/config-schema.ts) are zod
 * issues whose paths are mapped back to the YAML nodes they came from. Text longer than
 * PATCHBAY_MAX_CONFIG_BYTES is refused (`too_large`) before it is parsed.
 */
import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { Config } from '../config.js';
import { PatchbayError } from '../errors.js';
import { type DomainConfig, domainConfigSchema } from './config-schema.js';

export type ConfigPath = Array<string | number>;

/** One problem of a configuration; `line` and `column` are 1-based, in the text as uploaded. */
export interface ConfigIssue {
  path: ConfigPath;
  line: number;
  column: number;
  message: string;
}

/** Where a path of the configuration is in its text; the nearest enclosing place for a missing key. */
export type Locate = (path: ConfigPath, opts?: { key?: boolean }) => { line: number; column: number };

export interface ParsedConfig {
  config: DomainConfig;
  /** For later checks of the same text (compiling its schemas) to name their lines too. */
  locate: Locate;
}

/** Aliases a configuration may expand (`yaml`'s guard against "billion laughs" documents). */
const MAX_ALIASES = 100;

/** The error for these problems: `invalid_config` with every issue, the first one in its message. */
export function configError(issues: ConfigIssue[]): PatchbayError {
  const [first] = issues;
  const where = first ? `line ${first.line}, column ${first.column}${first.path.length > 0 ? ` (${first.path.join('.')})` : ''}: ${first.message}` : '';
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  return new PatchbayError('invalid_config', `the configuration is invalid: ${where}${more}`, { issues });
}

/** Parses and checks a configuration; throws `too_large` or `invalid_config` (with `issues`). */
export function parseDomainConfig(text: string, limits: Pick<Config, 'maxConfigBytes'>): ParsedConfig {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > limits.maxConfigBytes) {
    throw new PatchbayError('too_large', `a domain configuration may be at most ${limits.maxConfigBytes} bytes`, {
      limit: 'maxConfigBytes',
      max: limits.maxConfigBytes,
      actual: bytes,
    });
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, version: '1.2', schema: 'core', strict: true });
  const pos = (offset: number) => {
    const { line, col } = lines.linePos(offset);
    return { line, column: col };
  };
  const syntax = [...doc.errors, ...doc.warnings].map((e) => ({ path: [], ...pos(e.pos[0]), message: e.message.split('\n')[0] as string }));
  if (syntax.length > 0) throw configError(syntax);
  const locate: Locate = (path, opts = {}) => pos(offsetOf(doc, path, opts.key === true));
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    throw configError([{ path: [], ...pos(0), message: err instanceof Error ? err.message : String(err) }]);
  }
  if (value === null || value === undefined) value = {}; // an empty file: a configuration with nothing in it
  const parsed = domainConfigSchema.safeParse(value);
  if (parsed.success) return { config: parsed.data, locate };
  // At one place, an unknown key (likely a typo) comes before what its absence caused.
  const issues: Array<ConfigIssue & { rank: number }> = [];
  for (const issue of parsed.error.issues) {
    const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    if (issue.code === 'unrecognized_keys') {
      // One issue per key, at the key itself: that is where the typo is.
      for (const key of issue.keys) issues.push({ path: [...path, key], ...locate([...path, key], { key: true }), message: `unknown key "${key}"`, rank: 0 });
    } else if (issue.code === 'invalid_key') {
      issues.push({ path, ...locate(path, { key: true }), message: `invalid name: ${issue.issues.map((i) => i.message).join('; ')}`, rank: 1 });
    } else if (issue.code === 'invalid_type' && isMissing(value, path)) {
      issues.push({ path, ...locate(path), message: `missing key "${String(path[path.length - 1])}"`, rank: 2 });
    } else {
      issues.push({ path, ...locate(path), message: issue.message, rank: 1 });
    }
  }
  issues.sort((a, b) => a.line - b.line || a.column - b.column || a.rank - b.rank);
  throw configError(issues.map(({ rank: _, ...i }) => i));
}

/**
 * The text offset of the node at `path` (of its key, with `key`), or of the nearest ancestor
 * that exists (a required key that is missing is reported at the map that lacks it).
 */
function offsetOf(doc: Document, path: ConfigPath, key: boolean): number {
  let node: unknown = doc.contents;
  let at = rangeStart(node) ?? 0;
  for (const [i, seg] of path.entries()) {
    let next: unknown;
    let keyNode: unknown;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && (isScalar(p.key) ? String(p.key.value) === String(seg) : p.key === seg));
      keyNode = pair?.key;
      next = pair?.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      next = node.items[seg];
      keyNode = next;
    }
    if (keyNode === undefined && next === undefined) return at;
    const keyAt = rangeStart(keyNode);
    const valueAt = rangeStart(next);
    at = (key && i === path.length - 1 ? keyAt : valueAt) ?? keyAt ?? at;
    node = next;
  }
  return at;
}

/** Whether `path` names a key its (existing) parent object does not have. */
function isMissing(root: unknown, path: ConfigPath): boolean {
  let node = root;
  for (const seg of path.slice(0, -1)) {
    if (node === null || typeof node !== 'object') return false;
    node = (node as Record<string | number, unknown>)[seg];
  }
  const last = path[path.length - 1];
  return last !== undefined && node !== null && typeof node === 'object' && !Array.isArray(node) && !Object.hasOwn(node, last);
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | undefined)?.range;
  return Array.isArray(range) ? range[0] : undefined;
}
