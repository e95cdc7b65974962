/**
 * Strict request bodies (shared/strict-json.ts): JSON that `JSON.parse` would silently alter
 * (bytes that are not UTF-8, a member name twice in one object, a lone surrogate escape) is
 * refused with `invalid_request` naming the problem and its path; everything else parses exactly
 * as `JSON.parse` parses it. The same refusals over HTTP, changing nothing, are in
 * test/contract/http.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PatchbayError } from '../shared/errors.js';
import { findAlteredText, parseJsonBody } from '../shared/strict-json.js';

const utf8 = (text: string) => Buffer.from(text, 'utf8');

function refusal(buf: Buffer): PatchbayError {
  try {
    parseJsonBody(buf);
  } catch (err) {
    expect(err).toBeInstanceOf(PatchbayError);
    return err as PatchbayError;
  }
  throw new Error(`accepted: ${buf.toString('utf8')}`);
}

describe('parseJsonBody accepts', () => {
  it.each([
    ['escaped valid surrogate pairs', '{"s":"\\ud83c\\udf89 \\uD83D\\uDE00"}', { s: '🎉 😀' }],
    ['non-ASCII UTF-8 in names and values', '{"ключ":"値 🎉","é":["ü"]}', { ключ: '値 🎉', é: ['ü'] }],
    ['a raw surrogate pair written as UTF-8 next to an escaped one', '["🎉\\ud83c\\udf89"]', ['🎉🎉']],
    [
      'the same name in different objects',
      '{"a":{"a":1},"b":[{"a":1},{"a":2}],"c":{"a":{"a":3}}}',
      { a: { a: 1 }, b: [{ a: 1 }, { a: 2 }], c: { a: { a: 3 } } },
    ],
    [
      'names that differ only in case or by an escape of another character',
      '{"a":1,"A":2,"a\\n":3,"a\\\\":4,"\\"":5}',
      { a: 1, A: 2, 'a\n': 3, 'a\\': 4, '"': 5 },
    ],
    ['a value equal to a member name', '{"a":"a","b":"a"}', { a: 'a', b: 'a' }],
    ['the empty name once', '{"":1,"x":{"":2}}', { '': 1, x: { '': 2 } }],
    ['escaped quotes and backslashes around structural characters', '{"k\\"}":"v\\\\","k2":"\\\\\\"{[,"}', { 'k"}': 'v\\', k2: '\\"{[,' }],
    ['a text that looks like a lone surrogate escape behind an escaped backslash', '["\\\\ud800"]', ['\\ud800']],
    ['U+FFFD sent as such', '"\\ufffd\uFFFD"', '\uFFFD\uFFFD'],
    ['scalars at the root, and whitespace', ' \n\t1.5e3 ', 1500],
  ])('%s', (_, text, expected) => {
    const value = parseJsonBody(utf8(text));
    expect(value).toEqual(JSON.parse(text));
    if (expected !== null) expect(value).toEqual(expected);
  });

  it('any nesting depth, without recursion', () => {
    const deep = `${'[{"a":'.repeat(50_000)}"x"${'}]'.repeat(50_000)}`;
    expect(() => parseJsonBody(utf8(deep))).not.toThrow();
    const dup = findAlteredText(`${'[{"a":'.repeat(50_000)}{"b":1,"b":2}${'}]'.repeat(50_000)}`);
    expect(dup?.path.length).toBe(100_001);
    expect(dup?.path.slice(-3)).toEqual([0, 'a', 'b']);
  });

  it('names and strings made of the characters that steer the scan (property test)', () => {
    const tricky = fc.string({ unit: fc.constantFrom('"', '\\', '{', '}', '[', ']', ',', ':', 'a', 'é', '\n', '\u0000', '🎉', 'u', 'd', '8'), maxLength: 6 });
    const value = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, tricky, fc.integer(), fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(tricky, tie('v'), { maxKeys: 5 })),
    })).v;
    fc.assert(
      fc.property(value, (v) => {
        expect(findAlteredText(JSON.stringify(v))).toBeNull();
      }),
      { numRuns: 1000 },
    );
  });

  it('whatever JSON.stringify writes (property test: no false refusals, same value as JSON.parse)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: 'grapheme' }), (v) => {
        const text = JSON.stringify(v);
        expect(parseJsonBody(utf8(text))).toEqual(JSON.parse(text));
      }),
      { numRuns: 500 },
    );
  });
});

describe('parseJsonBody refuses', () => {
  it.each([
    ['a bare continuation byte', [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0x80, 0x22, 0x7d]],
    ['a truncated sequence', [0x22, 0xe2, 0x82, 0x22]],
    ['an overlong encoding of "/"', [0x22, 0xc0, 0xaf, 0x22]],
    ['a surrogate encoded as UTF-8 (CESU-8)', [0x22, 0xed, 0xa0, 0x80, 0x22]],
    ['a code point past U+10FFFF', [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22]],
    ['Latin-1 text', [...Buffer.from('{"name":"caf', 'latin1'), 0xe9, ...Buffer.from('"}', 'latin1')]],
  ])('invalid UTF-8: %s', (_, bytes) => {
    const err = refusal(Buffer.from(bytes));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toMatch(/not valid UTF-8/);
    expect(err.details.issues).toEqual([{ path: [], message: 'invalid UTF-8' }]);
  });

  it.each([
    ['a patch op that says test and then remove', '{"patch":[{"op":"test","path":"/a","op":"remove"}]}', ['patch', 0, 'op'], 'op'],
    ['a top-level member', '{"patch":[],"patch":[{"op":"remove","path":""}]}', ['patch'], 'patch'],
    ['names that differ only by an escape', '{"a":1,"\\u0061":2}', ['a'], 'a'],
    ['escaped names on both sides', '{"\\u00e9":1,"\\u00E9":2}', ['é'], 'é'],
    ['an escaped name against a raw UTF-8 one', '{"é":1,"\\u00e9":2}', ['é'], 'é'],
    ['names with escaped quotes', '{"\\"":1,"\\u0022":2}', ['"'], '"'],
    ['the empty name', '{"":1,"":2}', [''], ''],
    ['deep inside arrays and objects, after other elements', '[0,{"x":[1,2,{"k":1,"j":{},"k":2}]}]', [1, 'x', 2, 'k'], 'k'],
    ['not next to each other', '{"a":1,"b":{"a":2},"c":[],"a":3}', ['a'], 'a'],
  ])('a duplicate member name: %s', (_, text, path, name) => {
    const err = refusal(utf8(text));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toMatch(/occurs more than once/);
    expect(err.details.issues).toEqual([{ path, message: `the member name ${JSON.stringify(name)} occurs more than once` }]);
  });

  it.each([
    ['a high surrogate alone', '{"s":"\\ud800"}', ['s']],
    ['a low surrogate alone', '["ok","x\\uDFFFy"]', [1]],
    ['a low surrogate before a high one', '{"a":{"b":["\\udc00\\ud800"]}}', ['a', 'b', 0]],
    ['a high surrogate followed by a non-surrogate escape', '"\\ud83c\\u0041"', []],
    ['an escaped high surrogate followed by a raw character', '{"s":"\\ud83cA"}', ['s']],
    ['half of a pair written raw in UTF-8 can not happen, but half escaped can', '["🎉","\\ud83c"]', [1]],
  ])('a lone surrogate in a value: %s', (_, text, path) => {
    const err = refusal(utf8(text));
    expect(err.code).toBe('invalid_request');
    expect(err.message).toMatch(/lone surrogate/);
    expect(err.details.issues).toEqual([{ path, message: 'a string has a lone surrogate escape' }]);
  });

  it('a lone surrogate in a member name', () => {
    const err = refusal(utf8('{"a":{"k\\ud800":1}}'));
    expect(err.details.issues).toEqual([{ path: ['a', 'k\ud800'], message: 'a member name has a lone surrogate escape' }]);
  });

  it('invalid JSON, as before', () => {
    for (const text of ['', '{', '{"a":1,}', "{'a':1}", '\uFEFF{}', '[1] [2]']) {
      const err = refusal(utf8(text));
      expect(err.message).toBe('the body is not valid JSON');
      expect(err.details.issues).toEqual([{ path: [], message: 'invalid JSON' }]);
    }
  });

  it('a duplicate planted anywhere in generated JSON (property test)', () => {
    const objects = fc.dictionary(fc.string(), fc.jsonValue(), { minKeys: 1 });
    fc.assert(
      fc.property(fc.jsonValue(), objects, fc.nat(), (outer, obj, pick) => {
        const names = Object.keys(obj);
        const dup = names[pick % names.length] as string;
        // The object's text with one of its names written again, as an escape-heavy equivalent.
        const escaped = `"${[...dup].map((ch) => `\\u${(ch.codePointAt(0) as number).toString(16).padStart(4, '0')}`).join('')}"`;
        const objText = `${JSON.stringify(obj).slice(0, -1)},${[...dup].length === dup.length ? escaped : JSON.stringify(dup)}:null}`;
        const text = `[${JSON.stringify(outer)},${objText}]`;
        const problem = findAlteredText(text);
        expect(problem?.message).toBe(`the member name ${JSON.stringify(dup)} occurs more than once`);
        expect(problem?.path).toEqual([1, dup]);
      }),
      { numRuns: 300 },
    );
  });
});
