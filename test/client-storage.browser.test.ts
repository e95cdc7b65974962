/**
 * The offline queue's browser store, `indexedDbStorage` (client/src/storage.ts), in headless
 * Chromium: the storage contract (a value `set` is what `get` answers, `keys(prefix)` lists the
 * keys under a prefix, `delete` removes one) on a real IndexedDB, and what it is for: the values
 * survive a reload of the page. The module is bundled for the page with rolldown (which vite
 * already brings) and served from a real origin (IndexedDB refuses opaque ones).
 */
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser } from './helpers/browser.js';
import { skipWithout } from './helpers/proc.js';
import { serveHandler } from './helpers/server.js';

describe.skipIf(skipWithout('chromium', 'headless Chromium'))('indexedDbStorage in Chromium', () => {
  let browser: Browser;
  let site: { url: string; close: () => void };
  let bundle: string;
  beforeAll(async () => {
    const { rolldown } = await import('rolldown');
    const build = await rolldown({ input: new URL('../client/src/storage.ts', import.meta.url).pathname });
    bundle = (await build.generate({ format: 'iife', name: 'PB' })).output[0].code;
    site = await serveHandler(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>storage</title>');
    });
    browser = await launchBrowser();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    site?.close();
  });

  it('keeps what is set across a reload; lists keys by prefix; deletes', async () => {
    const page = await browser.newPage();
    await page.goto(site.url);
    await page.addScriptTag({ content: bundle });
    const first = await page.evaluate(async () => {
      // biome-ignore lint/suspicious/noExplicitAny: the bundle's global, in the page
      const s = (globalThis as any).PB.indexedDbStorage('patchbay-test');
      await s.set('patchbay:client', '{"session":"abc","si":3}');
      await s.set('patchbay:scope:a', '{"ii":1}');
      await s.set('patchbay:scope:b', '{"ii":2}');
      await s.set('other:x', '1');
      await s.set('patchbay:scope:b', '{"ii":5}');
      await s.delete('patchbay:scope:a');
      return { b: await s.get('patchbay:scope:b'), a: await s.get('patchbay:scope:a'), keys: (await s.keys('patchbay:')).sort() };
    });
    expect(first).toEqual({ b: '{"ii":5}', a: undefined, keys: ['patchbay:client', 'patchbay:scope:b'] });
    await page.reload();
    await page.addScriptTag({ content: bundle });
    const after = await page.evaluate(async () => {
      // biome-ignore lint/suspicious/noExplicitAny: the bundle's global, in the page
      const s = (globalThis as any).PB.indexedDbStorage('patchbay-test');
      return { client: await s.get('patchbay:client'), keys: (await s.keys('')).sort() };
    });
    expect(after).toEqual({ client: '{"session":"abc","si":3}', keys: ['other:x', 'patchbay:client', 'patchbay:scope:b'] });
    await page.close();
  });
});
