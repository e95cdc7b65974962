/**
 * A domain's configuration (issue 13, parts 2 and 4; shared/domains/): its text (YAML or JSON)
 * is parsed and checked against the zod schema with every problem named by path, line and column
 * (syntax errors, unknown keys, wrong values, schemas and patterns that do not compile); the size
 * limit; the published JSON Schema is what the zod schema generates; the documented example
 * parses and compiles; and a compiled configuration checks states, names and limits as the commit
 * rules use it (the commit path itself, over HTTP on both stacks: test/contract/validation.ts).
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020Module from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { configsFromDir, loadDomainConfig } from '../shared/domains/active.js';
import { type ConfigIssue, parseDomainConfig } from '../shared/domains/config-parse.js';
import { DOMAIN_SCHEMA_FILE, domainConfigJsonSchemaText } from '../shared/domains/json-schema.js';
import { PatchbayError } from '../shared/errors.js';
import { tempDir } from './helpers/server.js';

// ajv is CommonJS: depending on interop, the class is the module itself or its `default`.
type AjvClass = typeof Ajv2020Module extends { default: infer C } ? C : typeof Ajv2020Module;
const Ajv2020 = ((Ajv2020Module as unknown as { default?: AjvClass }).default ?? Ajv2020Module) as AjvClass;

const LIMITS = { maxConfigBytes: 256 * 1024 };

/** The PatchbayError `fn` throws (fails if it throws nothing). */
function thrown(fn: () => unknown): PatchbayError {
  try {
    fn();
  } catch (err) {
    if (err instanceof PatchbayError) return err;
    throw err;
  }
  throw new Error('expected a PatchbayError');
}

/** The issues of the `invalid_config` error loading `text` throws. */
function issuesOf(text: string): ConfigIssue[] {
  const err = thrown(() => loadDomainConfig(text, LIMITS));
  expect(err.code).toBe('invalid_config');
  expect(err.status).toBe(400);
  return err.details.issues as ConfigIssue[];
}

describe('parsing a domain configuration', () => {
  it('names the line and column of a YAML syntax error', () => {
    const issues = issuesOf('types:\n  note:\n    schema: {type: object\nlimits: {}\n');
    expect(issues).toHaveLength(1);
    expect(issues[0]?.line).toBeGreaterThanOrEqual(3);
    expect(issues[0]?.message).toMatch(/flow map/i);
  });

  it('names the line and column of a JSON syntax error (a trailing comma, an unclosed object)', () => {
    const issues = issuesOf('{\n  "types": {\n    "note": {"schema": {"type": "object"}}\n  },\n  "limits": {"maxStateBytes": 1000\n');
    expect(issues[0]?.line).toBeGreaterThanOrEqual(5);
  });

  it('refuses duplicate keys where the second one is', () => {
    expect(issuesOf('access: {}\naccess: {}\n')).toEqual([{ path: [], line: 2, column: 1, message: expect.stringMatching(/unique/) }]);
  });

  it('reports each unknown key at the key itself, with its path, in YAML', () => {
    const text = ['access:', '  visibility: public', '  orgins: []', 'types:', '  note:', '    schema: {type: object}', '    extra: 1', 'mirror: {}', ''].join(
      '\n',
    );
    expect(issuesOf(text)).toEqual([
      { path: ['access', 'orgins'], line: 3, column: 3, message: 'unknown key "orgins"' },
      { path: ['types', 'note', 'extra'], line: 7, column: 5, message: 'unknown key "extra"' },
      { path: ['mirror'], line: 8, column: 1, message: 'unknown key "mirror"' },
    ]);
  });

  it('reports unknown keys and wrong values in JSON text by line and column too', () => {
    const text = '{\n  "types": {\n    "note": {"schema": {"type": "object"}, "x": 2}\n  },\n  "access": {"visibility": "everyone"}\n}\n';
    const issues = issuesOf(text);
    expect(issues.map((i) => [i.path.join('.'), i.line, i.column])).toEqual([
      ['types.note.x', 3, 44],
      ['access.visibility', 5, 28],
    ]);
  });

  it('reports wrong values where they are, and a missing required key at the map that lacks it', () => {
    const text = [
      'webhooks:',
      '  - name: indexer',
      '    url: http://hooks.example.com/x', // http to a non-local host
      '  - name: indexer', // used twice
      '    url: https://hooks.example.com/y',
      'types:',
      '  note:',
      '    schemas: {}', // the typo, and `schema` is missing
      'limits:',
      '  maxStateBytes: 10', // below the minimum
      '',
    ].join('\n');
    const issues = issuesOf(text);
    const at = (path: string) => issues.filter((i) => i.path.join('.') === path).map((i) => [i.line, i.column]);
    expect(at('webhooks.0.url')).toEqual([[3, 10]]);
    expect(at('webhooks.1.name')).toEqual([[4, 11]]);
    expect(at('types.note.schemas')).toEqual([[8, 5]]);
    expect(at('types.note.schema')).toEqual([[8, 5]]); // missing: reported at the map of `note`
    expect(issues.filter((i) => i.line === 8).map((i) => i.message)).toEqual(['unknown key "schemas"', 'missing key "schema"']);
    expect(at('limits.maxStateBytes')).toEqual([[10, 18]]);
    expect(issues.map((i) => i.line)).toEqual([...issues.map((i) => i.line)].sort((a, b) => a - b));
  });

  it('accepts http webhooks to local hosts only, and origins only in their serialized form', () => {
    expect(() =>
      loadDomainConfig('webhooks:\n  - {name: dev, url: "http://localhost:8787/hook"}\n  - {name: dev2, url: "http://app.localhost/x"}\n', LIMITS),
    ).not.toThrow();
    expect(issuesOf('webhooks:\n  - {name: dev, url: "https://user:pw@hooks.example.com/"}\n')[0]?.path).toEqual(['webhooks', 0, 'url']);
    expect(issuesOf('access:\n  origins: ["https://app.example.com/"]\n')[0]?.path).toEqual(['access', 'origins', 0]);
  });

  it('checks the mirror sections with the mirror’s own schema, naming lines: a reserved table, an undeclared $parameter, a declared $REQUESTER', () => {
    expect(issuesOf('tables:\n  scopes:\n    type: note\n    columns: {}\n')[0]).toMatchObject({ path: ['tables', 'scopes'], line: 3 }); // the table's map;
    expect(issuesOf('queries:\n  q:\n    sql: SELECT $x\n')[0]).toMatchObject({ path: ['queries', 'q', 'sql'], line: 3 });
    expect(issuesOf('queries:\n  q:\n    sql: SELECT $REQUESTER\n    params: {REQUESTER: {type: text}}\n')[0]?.path).toEqual([
      'queries',
      'q',
      'params',
      'REQUESTER',
    ]);
    expect(issuesOf('tables:\n  t:\n    type: note\n    columns: {a: {type: money}}\n')[0]?.path).toEqual(['tables', 't', 'columns', 'a', 'type']);
  });

  it('reads an empty text as an empty configuration, and refuses a text that is not a map', () => {
    expect(loadDomainConfig('', LIMITS).config).toEqual({});
    expect(loadDomainConfig('# nothing yet\n', LIMITS).config).toEqual({});
    expect(issuesOf('- a\n- b\n')[0]).toMatchObject({ path: [], line: 1, column: 1 });
  });

  it('refuses a text over PATCHBAY_MAX_CONFIG_BYTES before parsing it', () => {
    const err = thrown(() => parseDomainConfig(`# ${'x'.repeat(2000)}\n`, { maxConfigBytes: 1024 }));
    expect(err.code).toBe('too_large');
    expect(err.details).toMatchObject({ limit: 'maxConfigBytes', max: 1024 });
  });

  it('refuses an alias bomb instead of expanding it', () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 10; i++)
      lines.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(', ')}]`,
      );
    expect(issuesOf(`${lines.join('\n')}\n`)[0]?.message).toMatch(/alias/i);
  });
});

describe('compiling the scope types’ schemas and name patterns', () => {
  it('reports a schema that is not a valid JSON Schema at the offending keyword’s line', () => {
    const text = ['types:', '  note:', '    schema:', '      type: object', '      properties:', '        title: {type: strin}', ''].join('\n');
    const [issue] = issuesOf(text);
    expect(issue?.path.slice(0, 3)).toEqual(['types', 'note', 'schema']);
    expect(issue?.line).toBe(6);
    expect(issue?.message).toMatch(/not a valid JSON Schema/);
  });

  it('refuses unknown keywords and formats (strict mode), with the type’s path and line', () => {
    const unknown = issuesOf('types:\n  note:\n    schema: {type: object, maxProps: 3}\n');
    expect(unknown[0]).toMatchObject({ path: ['types', 'note', 'schema'], line: 3, message: expect.stringMatching(/maxProps/) });
    const format = issuesOf('types:\n  a:\n    schema: {type: object}\n  b:\n    schema: {type: string, format: shoe-size}\n');
    expect(format[0]).toMatchObject({ path: ['types', 'b', 'schema'], line: 5, message: expect.stringMatching(/shoe-size/) });
  });

  it('refuses a $ref it cannot resolve without fetching (a URL, a missing definition)', () => {
    expect(issuesOf('types:\n  a:\n    schema: {$ref: "https://example.com/schema.json"}\n')[0]).toMatchObject({ path: ['types', 'a', 'schema'], line: 3 });
    expect(issuesOf('types:\n  a:\n    schema: {$ref: "#/$defs/none"}\n')[0]?.message).toMatch(/resolve|reference/i);
  });

  it('reports a name pattern that is not a regular expression', () => {
    expect(issuesOf('names:\n  note:\n    pattern: "[a-z"\n')).toEqual([
      { path: ['names', 'note', 'pattern'], line: 3, column: 14, message: expect.stringMatching(/regular expression/) },
    ]);
  });
});

describe('a compiled configuration', () => {
  const compiled = loadDomainConfig(readFileSync(new URL('../docs/examples/domain.yaml', import.meta.url), 'utf8'), LIMITS);

  it('is the documented example (docs/examples/domain.yaml), which parses and compiles', () => {
    expect(Object.keys(compiled.config)).toEqual(['access', 'types', 'names', 'webhooks', 'limits', 'tables', 'queries']);
    expect(Object.keys(compiled.config.tables?.notes?.columns ?? {})).toEqual(['title', 'pinned', 'tags', 'first_tag', 'owner', 'updated']);
    expect(compiled.config.queries?.notes_tagged?.domains).toEqual(['*.notes.example.com']);
    expect(compiled.config.access).toEqual({ visibility: 'private', origins: ['https://notes.example.com', 'http://localhost:5173'] });
    expect(compiled.config.webhooks?.map((w) => w.name)).toEqual(['search-indexer', 'local-dev']);
    expect(compiled.hasStateRules).toBe(true);
  });

  it('checks a state against its type’s schema, naming the instance and schema paths of the first error', () => {
    expect(() => compiled.checkState('note', { title: 'a', body: '', tags: ['x'], updated: '2026-12-03T10:00:00Z' })).not.toThrow();
    expect(() => compiled.checkState('untyped', { anything: true })).not.toThrow();
    expect(() => compiled.checkState(null, 42)).not.toThrow();
    const long = thrown(() => compiled.checkState('note', { title: 'x'.repeat(201), body: '' }));
    expect(long.code).toBe('validation_failed');
    expect(long.status).toBe(422);
    expect(long.details).toEqual({ type: 'note', instancePath: '/title', schemaPath: '#/properties/title/maxLength', keyword: 'maxLength' });
    expect(thrown(() => compiled.checkState('note', { title: 'a' })).details).toMatchObject({ instancePath: '', keyword: 'required' });
    expect(thrown(() => compiled.checkState('note', { title: 'a', body: '', updated: 'yesterday' })).details).toMatchObject({ keyword: 'format' });
    expect(thrown(() => compiled.checkState('board', { columns: [{ name: 'todo' }] })).details).toMatchObject({
      instancePath: '/columns/0',
      schemaPath: '#/$defs/column/required',
    });
  });

  it('checks names against their type’s rule', () => {
    expect(() => compiled.checkName('note', 'shopping-list')).not.toThrow();
    expect(() => compiled.checkName('note', null)).not.toThrow();
    expect(thrown(() => compiled.checkName('note', 'Shopping List')).code).toBe('invalid_request');
    expect(thrown(() => compiled.checkName('note', 'x-shopping-list\n')).code).toBe('invalid_request'); // the whole name must match
    expect(thrown(() => compiled.checkName('board', null)).code).toBe('invalid_request');
    expect(() => compiled.checkName('board', 'Anything At All')).not.toThrow();
  });

  it('checks the domain’s own limits on patches and states', () => {
    expect(() => compiled.checkLimits({ s: 'x'.repeat(1000) }, [{ op: 'add', path: '/s', value: 'x' }])).not.toThrow();
    expect(thrown(() => compiled.checkLimits({ s: 'x'.repeat(300_000) }, null)).details).toMatchObject({ limit: 'maxStateBytes', max: 262144 });
    expect(thrown(() => compiled.checkLimits({}, [{ op: 'add', path: '/s', value: 'x'.repeat(70_000) }])).details).toMatchObject({
      limit: 'maxPatchBytes',
      max: 65536,
    });
  });
});

describe('the published JSON Schema of the configuration', () => {
  it(`is what the zod schema generates (run npm run schema after changing it): ${DOMAIN_SCHEMA_FILE}`, () => {
    expect(readFileSync(new URL(`../${DOMAIN_SCHEMA_FILE}`, import.meta.url), 'utf8')).toBe(domainConfigJsonSchemaText());
  });

  it('validates the documented example, and refuses an unknown key', async () => {
    const ajv = new Ajv2020({ strict: true });
    const validate = ajv.compile(JSON.parse(domainConfigJsonSchemaText()));
    expect(validate(parse(readFileSync(new URL('../docs/examples/domain.yaml', import.meta.url), 'utf8'))), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ acess: {} })).toBe(false);
  });
});

describe('static configurations (PATCHBAY_DOMAIN_CONFIG_DIR)', () => {
  /** A directory holding these files. */
  function dirWith(files: Record<string, string>): string {
    const dir = tempDir('patchbay-domains-');
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return dir;
  }

  it('loads one configuration per <domain>.yaml|.yml|.json file, ignoring other files; none when the setting is empty', () => {
    const dir = dirWith({
      'notes.example.com.yaml': 'types:\n  note:\n    schema: {type: object, required: [title]}\n',
      'localhost.json': '{"limits": {"maxStateBytes": 1000}}',
      'README.md': '# not a configuration',
    });
    mkdirSync(join(dir, 'old.yaml')); // a directory with a configuration's name is not read as one
    try {
      const configs = configsFromDir({ ...LIMITS, domainConfigDir: dir });
      expect(configs?.domains().sort()).toEqual(['localhost', 'notes.example.com']);
      expect(thrown(() => configs?.get('notes.example.com')?.checkState('note', {})).code).toBe('validation_failed');
      expect(configs?.get('localhost')?.config).toEqual({ limits: { maxStateBytes: 1000 } });
      expect(configs?.get('README')).toBeUndefined();
      expect(configs?.get('old')).toBeUndefined();
      expect(configsFromDir({ ...LIMITS, domainConfigDir: '' })).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stops at a file that does not parse, naming the file and the line; and at two files for one domain', () => {
    const bad = dirWith({ 'a.test.yaml': 'types:\n  note:\n    shema: {}\n' });
    const twice = dirWith({ 'a.test.yaml': '{}', 'a.test.json': '{}' });
    try {
      expect(() => configsFromDir({ ...LIMITS, domainConfigDir: bad })).toThrow(/a\.test\.yaml: .*line 3, column 5 \(types\.note\.shema\)/);
      expect(() => configsFromDir({ ...LIMITS, domainConfigDir: twice })).toThrow(/more than one configuration file/);
    } finally {
      rmSync(bad, { recursive: true, force: true });
      rmSync(twice, { recursive: true, force: true });
    }
  });
});
