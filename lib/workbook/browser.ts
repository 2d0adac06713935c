/**
 * The one way the project starts a browser: Debian's headless chromium (never a downloaded one),
 * driven by playwright-core, in a persistent context on a new, empty profile that is removed when
 * the context has closed or the process exits. Used by the browser tests and the screenshot tool.
 */
import * as fs from 'fs';
import type { BrowserContext } from 'playwright-core';

/** The chromium the project drives: Debian's, or DDPM_CHROMIUM's. */
export const CHROMIUM = process.env.DDPM_CHROMIUM ?? '/usr/bin/chromium';

/** Headless, no sandbox (root in CI containers), and nothing that reaches the network on its own. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/** How to get the browser, said whenever it is missing. */
export const CHROMIUM_INSTALL_HINT = 'sudo apt-get install chromium, or set DDPM_CHROMIUM';

/** null when the chromium is there; else what is missing and how to install it. */
export function chromiumMissing(): string | null {
  return fs.existsSync(CHROMIUM) ? null : `${CHROMIUM} is absent (${CHROMIUM_INSTALL_HINT})`;
}

export interface LaunchOptions {
  /** The pages' size (default 1280 x 900). */
  viewport?: { width: number; height: number };
  /** Scripts every page runs before its own (playwright's addInitScript). */
  initScripts?: string[];
}

/**
 * tsx (esbuild keepNames) wraps named functions inside page.evaluate callbacks in __name(...): every
 * page gets that helper, so a callback written in a .ts file run through tsx works in the page.
 */
const NAME_HELPER = 'window.__name = function (f) { return f; };';

/**
 * Starts headless chromium in a persistent context on a new, empty profile. The profile is
 * playwright's own temporary one (an empty userDataDir): playwright removes it after the browser
 * process has exited, before `context.close()` resolves, and at exit. (A folder of our own, removed
 * on the context's 'close' event, was left behind most times: chromium still writes into it then.)
 */
export async function launchChromium(options: LaunchOptions = {}): Promise<BrowserContext> {
  const missing = chromiumMissing();
  if (missing) throw new Error(`launchChromium: ${missing}`);
  const { chromium } = await import('playwright-core');
  const context = await chromium.launchPersistentContext('', { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, viewport: options.viewport ?? { width: 1280, height: 900 } });
  for (const content of [NAME_HELPER, ...(options.initScripts ?? [])]) await context.addInitScript({ content });
  return context;
}
