/**
 * Headless Chromium for the client's browser tests: Debian's `chromium` driven by playwright-core
 * (playwright's own browser downloads cannot reach their CDN here, so the system binary is used).
 * `skipWithout('chromium')` decides whether a file runs; `launchBrowser` starts one browser per file.
 */
import { type Browser, chromium } from 'playwright-core';

/** Where Debian installs the browser; PATCHBAY_CHROMIUM overrides it. */
export const CHROMIUM_PATH = process.env.PATCHBAY_CHROMIUM ?? '/usr/bin/chromium';

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Starts headless Chromium; close it in afterAll. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ARGS });
}
