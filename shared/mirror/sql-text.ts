/**
 * A named query's SQL text, read once: where its `$name` parameters are, so they can be replaced
 * by positional placeholders (`$1`, `$2`, ...) and their values sent apart from the text, bound
 * by the database. The text itself is the domain admin's and never changes at run time: a
 * client's parameters cannot alter it (they are values, never spliced in).
 *
 * The reader knows what of Postgres's lexical syntax can hide a `$`: string constants ('...' with
 * '' and E'...' with backslash escapes), quoted identifiers ("..."), comments (-- and nested
 * block comments), dollar-quoted strings ($$...$$, $tag$...$tag$) and identifiers that contain `$`
 * (`a$b`). A `$` followed by digits is refused (use names), and so is more than one statement:
 * a `;` may only end the text.
 */

export interface ParsedQuery {
  /** The text cut at each parameter: strings, and `{ param }` where a `$name` stood. */
  parts: Array<string | { param: string }>;
  /** Distinct parameter names in order of first use. */
  names: string[];
  /**
   * Every identifier outside strings and comments, unquoted ones lower-cased as Postgres folds
   * them: a superset of the tables the query reads (live queries re-run when one of them changes).
   */
  words: string[];
}

const IDENT_START = /[A-Za-z_]/;
const IDENT_CHAR = /[A-Za-z0-9_$]/;

/** Splits `sql` at its `$name` parameters; throws an Error saying what is wrong with the text. */
export function parseQueryText(sql: string): ParsedQuery {
  const parts: Array<string | { param: string }> = [];
  const names: string[] = [];
  const words = new Set<string>();
  let buf = '';
  let i = 0;
  const n = sql.length;
  const take = (to: number) => {
    buf += sql.slice(i, to);
    i = to;
  };
  while (i < n) {
    const ch = sql[i] as string;
    const next = sql[i + 1];
    if (ch === "'") {
      const escapes = i > 0 && /[eE]/.test(sql[i - 1] as string) && (i < 2 || !IDENT_CHAR.test(sql[i - 2] as string));
      let j = i + 1;
      for (;;) {
        if (j >= n) throw new Error('unterminated string constant');
        if (escapes && sql[j] === '\\') j += 2;
        else if (sql[j] === "'" && sql[j + 1] === "'") j += 2;
        else if (sql[j] === "'") break;
        else j += 1;
      }
      take(j + 1);
    } else if (ch === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= n) throw new Error('unterminated quoted identifier');
        if (sql[j] === '"' && sql[j + 1] === '"') j += 2;
        else if (sql[j] === '"') break;
        else j += 1;
      }
      words.add(sql.slice(i + 1, j).replace(/""/g, '"'));
      take(j + 1);
    } else if (ch === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      take(end === -1 ? n : end + 1);
    } else if (ch === '/' && next === '*') {
      let depth = 1;
      let j = i + 2;
      while (depth > 0) {
        if (j >= n) throw new Error('unterminated comment');
        if (sql[j] === '/' && sql[j + 1] === '*') {
          depth += 1;
          j += 2;
        } else if (sql[j] === '*' && sql[j + 1] === '/') {
          depth -= 1;
          j += 2;
        } else j += 1;
      }
      take(j);
    } else if (IDENT_START.test(ch)) {
      let j = i + 1;
      while (j < n && IDENT_CHAR.test(sql[j] as string)) j += 1;
      words.add(sql.slice(i, j).toLowerCase());
      take(j); // an identifier or keyword, `$` inside it included
    } else if (ch === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      if (tag) {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        if (close === -1) throw new Error(`unterminated dollar-quoted string ${tag[0]}`);
        take(close + tag[0].length);
      } else if (next !== undefined && /[0-9]/.test(next)) {
        throw new Error('positional parameters ($1) are not allowed: use $name');
      } else {
        const m = /^\$([A-Za-z_][A-Za-z0-9_]*)/.exec(sql.slice(i));
        if (!m) throw new Error(`a lone $ at ${i}`);
        if (buf) parts.push(buf);
        buf = '';
        const param = m[1] as string;
        parts.push({ param });
        if (!names.includes(param)) names.push(param);
        i += m[0].length;
      }
    } else if (ch === ';') {
      const rest = sql.slice(i + 1);
      if (!/^(\s|--[^\n]*(\n|$)|\/\*[\s\S]*?\*\/)*$/.test(rest)) throw new Error('one statement only: a ; may only end the text');
      i = n; // the trailing ; (and what follows: blanks, comments) is dropped
    } else {
      take(i + 1);
    }
  }
  if (buf) parts.push(buf);
  return { parts, names, words: [...words] };
}

/**
 * The text with each `$name` replaced by `($k::type)`, k its position in `order` (1-based), and
 * the type the parameter is declared with (`types`): values are sent as text and cast by the
 * database, so both adapters bind them alike.
 */
export function positionalText(parsed: ParsedQuery, order: string[], types: Record<string, string>): string {
  return parsed.parts
    .map((p) => {
      if (typeof p === 'string') return p;
      const k = order.indexOf(p.param);
      const type = types[p.param];
      if (k === -1 || type === undefined) throw new Error(`no binding for $${p.param}`);
      return `($${k + 1}::${type})`;
    })
    .join('');
}
