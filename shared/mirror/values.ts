/**
 * Values crossing into and out of the mirror's SQL, the same for every adapter: every value is
 * sent as text (or NULL) and cast by the statement (`$k::type`), and every result value comes back
 * as JSON (see `resultValue`), so Postgres and PGlite give the same answers.
 *
 * Into rows (`columnText`): a state value that does not fit its column's type is NULL rather than
 * an error, so one odd scope cannot stop the mirror (a consumer that failed would retry forever).
 * Into queries (`paramText`): a parameter that does not fit its declared type is refused with
 * `invalid_params`, naming it, before anything runs.
 */
import { PatchbayError } from '../errors.js';
import type { Json } from '../json.js';
import type { ScopeMeta } from '../protocol.js';
import type { ColumnDefinition, MetaField, SqlType } from './definitions.js';

const INT32 = 2 ** 31;

/** Postgres refuses U+0000 in text and jsonb: such a value cannot be stored. */
const hasNul = (s: string): boolean => s.includes('\u0000');

/** Escapes an array element for a Postgres array literal (`{"a","b\"c"}`). */
function arrayLiteral(items: string[]): string {
  return `{${items.map((s) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(',')}}`;
}

function isoTime(v: Json): string | null {
  if (typeof v === 'number' && Number.isFinite(v)) {
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? null : d.toISOString();
  }
  if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}/.test(v)) {
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? null : d.toISOString();
  }
  return null;
}

/** A JSON value as the text of a `type` value, or null when it does not fit (see the top of this file). */
export function toSqlText(type: SqlType, v: Json | undefined): string | null {
  if (v === undefined || v === null) return null;
  switch (type) {
    case 'text':
      if (typeof v === 'string') return hasNul(v) ? null : v;
      if (typeof v === 'number' || typeof v === 'boolean') return String(v);
      return null;
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v) && v >= -INT32 && v < INT32 ? String(v) : null;
    case 'bigint':
      return typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : null;
    case 'boolean':
      return typeof v === 'boolean' ? String(v) : null;
    case 'double precision':
      return typeof v === 'number' && Number.isFinite(v) ? String(v) : null;
    case 'timestamptz':
      return isoTime(v);
    case 'jsonb': {
      const text = JSON.stringify(v);
      return text.includes('\\u0000') ? null : text;
    }
    case 'text[]':
      return Array.isArray(v) && v.every((s) => typeof s === 'string' && !hasNul(s)) ? arrayLiteral(v as string[]) : null;
  }
}

/** The value at a JSON Pointer (RFC 6901), or undefined when there is none. */
export function atPointer(doc: Json, pointer: string): Json | undefined {
  if (pointer === '') return doc;
  let cur: Json | undefined = doc;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9][0-9]*)$/.test(key)) return undefined;
      cur = cur[Number(key)];
    } else if (cur !== null && typeof cur === 'object') {
      cur = Object.hasOwn(cur, key) ? (cur as Record<string, Json>)[key] : undefined;
    } else return undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** What a scope is to the mirror: its id, `ii`, metadata and state at that `ii`. */
export interface MirroredScope {
  id: string;
  ii: number;
  meta: Pick<ScopeMeta, 'owner' | 'name' | 'type' | 'created' | 'updated' | 'size'> & { access?: ScopeMeta['access'] };
  state: Json;
}

function metaValue(s: MirroredScope, f: MetaField): Json {
  if (f === 'id') return s.id;
  if (f === 'ii') return s.ii;
  return (s.meta[f] as Json | undefined) ?? null;
}

/** The text of one column of a scope's row (null: SQL NULL). */
export function columnText(name: string, col: ColumnDefinition, s: MirroredScope): string | null {
  let v: Json | undefined;
  if (col.meta) v = metaValue(s, col.meta);
  else {
    const source = col.source ?? name;
    if (source.startsWith('/')) v = atPointer(s.state, source);
    else if (s.state !== null && typeof s.state === 'object' && !Array.isArray(s.state) && Object.hasOwn(s.state, source)) v = s.state[source];
  }
  return toSqlText(col.type, v);
}

/** A client's parameter value as text for a `type` parameter; throws `invalid_params` when it does not fit. */
export function paramText(name: string, type: SqlType, v: unknown): string | null {
  if (v === null) return null;
  const bad = (why: string) => new PatchbayError('invalid_params', `parameter ${name} ${why}`, { param: name, type });
  switch (type) {
    case 'bigint':
      if (typeof v === 'string' && /^-?[0-9]{1,19}$/.test(v)) {
        const b = BigInt(v);
        if (b >= -(2n ** 63n) && b < 2n ** 63n) return b.toString();
      }
      if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
      throw bad('must be an integer (a number, or a string of digits past 2^53)');
    case 'timestamptz': {
      const t = typeof v === 'number' || typeof v === 'string' ? isoTime(v) : null;
      if (t === null) throw bad('must be milliseconds since 1970 or an ISO 8601 date');
      return t;
    }
    case 'text[]':
      if (Array.isArray(v) && v.length <= 10_000 && v.every((s) => typeof s === 'string' && !hasNul(s))) return arrayLiteral(v);
      throw bad('must be an array of strings (at most 10000, without U+0000)');
    case 'jsonb':
      if (v === undefined) throw bad('must be JSON');
      break;
  }
  const text = toSqlText(type, v as Json);
  if (text === null)
    throw bad(`must be a ${type === 'text' ? 'string' : type === 'boolean' ? 'boolean' : `${type} number`}${type === 'text' ? ' without U+0000' : ''}`);
  if (type === 'text' && typeof v !== 'string') throw bad('must be a string');
  return text;
}

/** Result column types by Postgres type OID, as queries report them (`other` for the rest). */
const OID_TYPES: Record<number, string> = {
  16: 'boolean',
  20: 'bigint',
  21: 'integer',
  23: 'integer',
  25: 'text',
  114: 'json',
  700: 'double precision',
  701: 'double precision',
  1009: 'text[]',
  1015: 'text[]',
  1043: 'text',
  1082: 'date',
  1114: 'timestamp',
  1184: 'timestamptz',
  1700: 'numeric',
  2950: 'uuid',
  3802: 'jsonb',
};

export function oidType(oid: number): string {
  return OID_TYPES[oid] ?? 'other';
}

/**
 * A result value as JSON, whatever the driver parsed it to: dates as ISO 8601 text, 64-bit
 * integers as numbers when exact (else as decimal text), bytes as base64, arrays element-wise.
 */
export function resultValue(v: unknown, oid: number): Json {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (oid === 20 && typeof v === 'string' && /^-?[0-9]+$/.test(v)) {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : v;
  }
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map((x) => resultValue(x, 0));
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return v as Json;
}
