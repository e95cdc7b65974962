/**
 * The size of `@patchbay/client` as a browser app ships it (issue 16: "small; report its
 * minified+gzipped size"): the built package's entry (`npm run build:client`, client/dist)
 * bundled for the browser and minified with rolldown, then gzipped (level 9): with its two
 * dependencies, and its own code alone (the dependencies left external).
 * Run: `npm run size:client` (prints JSON); client/README.md states the result.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { rolldown } from 'rolldown';

export interface Size {
  /** Minified bytes. */
  minified: number;
  /** Minified, then gzipped at level 9. */
  gzipped: number;
}

export interface ClientSize {
  /** The package and its dependencies (fast-json-patch, eventsource-parser). */
  total: Size;
  /** The package's own code (its dependencies external). */
  own: Size;
}

/** The built package's entry, as client/package.json exports it. */
export const CLIENT_ENTRY = 'client/dist/client/src/index.js';

async function bundle(entry: string, external: string[]): Promise<Size> {
  // The dependencies resolve from this repository's node_modules wherever the package was built.
  const build = await rolldown({
    input: entry,
    platform: 'browser',
    external,
    logLevel: 'silent',
    resolve: { modules: [resolve('node_modules'), 'node_modules'] },
  });
  try {
    const { output } = await build.generate({ format: 'esm', minify: true });
    const left = output.flatMap((o) => ('imports' in o ? o.imports : [])).filter((i) => !external.includes(i));
    if (left.length > 0) throw new Error(`${entry}: imports not bundled (not found?): ${left.join(', ')}`);
    const code = output.map((o) => ('code' in o ? o.code : '')).join('');
    return { minified: Buffer.byteLength(code), gzipped: gzipSync(code, { level: 9 }).length };
  } finally {
    await build.close();
  }
}

/** Measures the package built at `entry`. */
export async function clientSize(entry = CLIENT_ENTRY): Promise<ClientSize> {
  if (!existsSync(entry)) throw new Error(`${entry} not found: run npm run build:client first`);
  return { total: await bundle(entry, []), own: await bundle(entry, ['fast-json-patch', 'eventsource-parser']) };
}

if (process.argv[1]?.endsWith('client-size.js')) {
  const s = await clientSize();
  const kb = (n: number) => `${(n / 1000).toFixed(1)} KB`;
  console.log(JSON.stringify(s));
  console.log(
    `@patchbay/client: ${kb(s.total.gzipped)} minified and gzipped with its dependencies (${kb(s.total.minified)} minified); its own code ${kb(s.own.gzipped)} gzipped`,
  );
}
