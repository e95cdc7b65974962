/**
 * Compiles a domain configuration once (per configuration, never per commit) into what the
 * commit path checks synchronously: a validator per scope type (Ajv, JSON Schema draft 2020-12),
 * a name rule per type, and the domain's limits. A schema or pattern that does not compile is a
 * configuration error (`invalid_config`) naming its path and, when the text is known, its line.
 *
 * Ajv runs in strict mode (an unknown keyword, an unknown format, a keyword without the type it
 * applies to is an error rather than silently ignored), with two of its checks off because they
 * refuse valid, common schemas: `strictRequired` (a `required` in a branch naming properties the
 * parent defines) and union types (`type: [string, "null"]` is allowed). It stops at the first
 * error (allErrors off: a refusal names one error, and validating a valid state costs the same
 * either way), and never fetches anything: a
 * `$ref` must resolve inside the configuration's schemas (a URL that is not one of their `$id`s
 * fails to compile). Each configuration gets its own Ajv instance, so schemas of one domain never
 * see another's `$id`s. The text's size (PATCHBAY_MAX_CONFIG_BYTES) bounds the schemas' size.
 *
 * Known limit: `pattern` keywords and name patterns are JavaScript regular expressions, run on
 * the commit path; one that backtracks badly can slow the domain's commits (names are at most 256
 * characters; strings in states are bounded only by the state's size).
 */
import Ajv2020Module, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { PatchbayError } from '../errors.js';
import { type Json, jsonBytes } from '../json.js';
import type { Patch } from '../protocol.js';
import { type ConfigIssue, type ConfigPath, configError, type Locate } from './config-parse.js';
import type { DomainConfig } from './config-schema.js';

// ajv and ajv-formats are CommonJS: depending on interop, each export is the module itself or its `default`.
type AjvClass = typeof Ajv2020Module extends { default: infer C } ? C : typeof Ajv2020Module;
const Ajv2020 = ((Ajv2020Module as unknown as { default?: AjvClass }).default ?? Ajv2020Module) as AjvClass;
type AddFormats = typeof addFormatsModule extends { default: infer F } ? F : typeof addFormatsModule;
const addFormats = ((addFormatsModule as unknown as { default?: AddFormats }).default ?? addFormatsModule) as AddFormats;

/** The domain's own limits; the deployment's are checked anyway, so a larger value here has no effect (`undefined`: the deployment's only). */
export interface DomainLimits {
  maxStateBytes?: number;
  maxPatchBytes?: number;
}

interface NameCheck {
  pattern?: RegExp;
  required: boolean;
}

/** A configuration ready for the commit path: every lookup synchronous, nothing compiled on use. */
export interface CompiledConfig {
  readonly config: DomainConfig;
  /** Throws `validation_failed` if `state` does not satisfy the schema of `type` (no schema: passes). */
  checkState(type: string | null, state: Json): void;
  /** Throws `invalid_request` if a scope of `type` may not have this name (no rule: any name). */
  checkName(type: string | null, name: string | null): void;
  /** Throws `too_large` past the domain's own limits (shared/domains/rules.ts calls it per patch). */
  checkLimits(state: Json, patch: Patch | null): void;
  /** Whether anything here needs to see each patch (a schema for some type, or a limit). */
  readonly hasStateRules: boolean;
}

/** Compiles `config`; `locate` (from parseDomainConfig) adds line numbers to the errors. Throws `invalid_config`. */
export function compileDomainConfig(config: DomainConfig, locate?: Locate): CompiledConfig {
  const issues: ConfigIssue[] = [];
  const at = (path: ConfigPath) => locate?.(path) ?? { line: 0, column: 0 };
  const ajv = new Ajv2020({ strict: true, strictRequired: false, allowUnionTypes: true, allErrors: false });
  addFormats(ajv);
  const validators = new Map<string, ValidateFunction>();
  for (const [type, { schema }] of Object.entries(config.types ?? {})) {
    const path = ['types', type, 'schema'];
    if (!ajv.validateSchema(schema)) {
      const first = ajv.errors?.[0];
      const sub = pointerPath(first?.instancePath ?? '');
      issues.push({ path: [...path, ...sub], ...at([...path, ...sub]), message: `not a valid JSON Schema: ${first?.message ?? 'invalid'}` });
      continue;
    }
    try {
      validators.set(type, ajv.compile(schema));
    } catch (err) {
      issues.push({ path, ...at(path), message: `the schema does not compile: ${err instanceof Error ? err.message : String(err)}` });
    }
  }
  const names = new Map<string, NameCheck>();
  for (const [type, rule] of Object.entries(config.names ?? {})) {
    const path = ['names', type, 'pattern'];
    try {
      names.set(type, { pattern: rule.pattern === undefined ? undefined : new RegExp(`^(?:${rule.pattern})$`, 'u'), required: rule.required === true });
    } catch (err) {
      issues.push({ path, ...at(path), message: `not a regular expression: ${err instanceof Error ? err.message : String(err)}` });
    }
  }
  if (issues.length > 0) throw configError(issues);
  const limits: DomainLimits = { ...config.limits };
  const hasLimits = limits.maxStateBytes !== undefined || limits.maxPatchBytes !== undefined;
  return {
    config,
    hasStateRules: validators.size > 0 || hasLimits,
    checkState(type, state) {
      if (type === null) return;
      const validate = validators.get(type);
      if (validate && !validate(state)) throw validationFailed(type, validate.errors?.[0]);
    },
    checkName(type, name) {
      const rule = type === null ? undefined : names.get(type);
      if (!rule) return;
      if (name === null) {
        if (rule.required) throw nameError(`a scope of type ${type} needs a name`);
        return;
      }
      if (rule.pattern && !rule.pattern.test(name)) throw nameError(`the name of a scope of type ${type} must match ${rule.pattern.source}`);
    },
    checkLimits(state, patch) {
      if (!hasLimits) return;
      if (patch !== null && limits.maxPatchBytes !== undefined)
        overLimit('maxPatchBytes', limits.maxPatchBytes, jsonBytes(patch as unknown as Json), 'a patch');
      if (limits.maxStateBytes !== undefined) overLimit('maxStateBytes', limits.maxStateBytes, jsonBytes(state), "a scope's state");
    },
  };
}

/** `/a/b~1c/0` as `['a', 'b/c', 0]`. */
function pointerPath(pointer: string): ConfigPath {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

function validationFailed(type: string, e: ErrorObject | undefined): PatchbayError {
  const instancePath = e?.instancePath ?? '';
  const message = e?.message ?? 'does not match';
  return new PatchbayError('validation_failed', `the state does not satisfy the schema of type ${type}: ${instancePath || '(the state)'} ${message}`, {
    type,
    instancePath,
    schemaPath: e?.schemaPath ?? '#',
    keyword: e?.keyword ?? 'schema',
  });
}

function nameError(message: string): PatchbayError {
  return new PatchbayError('invalid_request', message, { issues: [{ path: ['name'], message }] });
}

function overLimit(limit: 'maxStateBytes' | 'maxPatchBytes', max: number, actual: number, what: string): void {
  if (actual > max) throw new PatchbayError('too_large', `${what} may be at most ${max} bytes in this domain`, { limit, max, actual });
}
