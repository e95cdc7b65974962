/**
 * Reading gcloud's help text: which flags a command accepts, and whether each takes a value. The
 * SYNOPSIS section lists every flag of the command (`--name=VALUE`, `--flag`, `--[no-]flag`,
 * aliases separated by commas); the GCLOUD WIDE FLAGS section lists the flags every command
 * takes (`--project`, `--format`, `--quiet`...). Used by the simulated gcloud to refuse a
 * command the real one would refuse, and by test/deploy.test.ts.
 */

/** gcloud's help with its bold and underline escapes (printed even into a pipe) removed. */
export function plain(text) {
  return text.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '');
}

/** The parts of a help text the flag check needs (the fixtures keep only these). */
export function keptSections(text) {
  const out = [];
  let keep = false;
  for (const line of text.split('\n')) {
    if (/^[A-Z][A-Z ]+$/.test(line)) keep = ['NAME', 'SYNOPSIS', 'GCLOUD WIDE FLAGS'].includes(line.trim());
    if (keep) out.push(line);
  }
  return `${out.join('\n').trimEnd()}\n`;
}

function section(text, name) {
  const m = new RegExp(`^${name}\\n([\\s\\S]*?)(?=^[A-Z][A-Z ]+$|(?![\\s\\S]))`, 'm').exec(text);
  return m ? m[1] : '';
}

/**
 * The flags of a command: name (without `--`) → true when it takes a value (`--x=V`), false for a
 * switch. `--[no-]x` yields both `x` and `no-x` as switches.
 */
export function flagsOf(text) {
  const flags = new Map();
  const synopsis = section(text, 'SYNOPSIS');
  for (const m of synopsis.matchAll(/--(\[no-\])?([a-z][a-z0-9-]*)(=)?/g)) {
    const takesValue = m[3] === '=';
    flags.set(m[2], flags.get(m[2]) === true || takesValue);
    if (m[1]) flags.set(`no-${m[2]}`, false);
  }
  // Every command's wide flags: `--project`, `--format`, `--quiet` and the rest (listed by name).
  for (const m of section(text, 'GCLOUD WIDE FLAGS').matchAll(/--([a-z][a-z0-9-]*)/g)) {
    if (!flags.has(m[1])) flags.set(m[1], !['quiet', 'help', 'log-http', 'user-output-enabled', 'no-user-output-enabled'].includes(m[1]));
  }
  return flags;
}

/**
 * What is wrong with `args` (the words after the command path) for this help text, or null.
 * Checks each `--flag` exists, and that a value is given exactly when the flag takes one.
 */
export function checkFlags(text, args) {
  const flags = flagsOf(text);
  for (const a of args) {
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (!flags.has(name)) return `unrecognized arguments: --${name}`;
    const takesValue = flags.get(name);
    if (takesValue && eq < 0) return `argument --${name}: expected one argument (write --${name}=VALUE)`;
    if (!takesValue && eq >= 0) return `argument --${name}: ignored explicit argument '${a.slice(eq + 1)}'`;
  }
  return null;
}
