/**
 * Shared by test/jupyterlab.test.ts and test/classic-notebook.test.ts: a server root for the
 * browser runs, headless Debian chromium, and what a notebook page must show once it ran (read from
 * the page's DOM, never from the kernel's own report): every code cell's prompt, error outputs, Plotly
 * figures with their data marks, typeset formulas, and console errors.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { projectRoot } from '../lib/workbook/runners/project';
import { tempDir } from './fixtures/quick-workbook';
import type { JupyterServer } from '../lib/workbook/jupyterlab/server';

export const CHROMIUM = process.env.DDPM_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/** Skips (outside CI) or fails (CI=true) the suite when a tool is missing, naming it and how to install it. */
export function requireTool(ctx: Mocha.Context, missing: string | null): void {
  if (missing === null) return;
  if (process.env.CI === 'true') throw new Error(`under CI this must run, but ${missing}`);
  console.log(`    (skipped: ${missing})`);
  ctx.skip();
}

/** null when Debian's chromium is there. */
export const chromiumMissing = (): string | null => (fs.existsSync(CHROMIUM) ? null : `${CHROMIUM} is absent (sudo apt-get install chromium, or set DDPM_CHROMIUM)`);

/** Headless chromium with a new, empty user-data-dir (removed at exit). */
export async function launchChromium(): Promise<BrowserContext> {
  const { chromium } = await import('playwright-core');
  const profile = tempDir('ddpm-chromium-');
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1280, height: 900 } });
  // tsx (esbuild keepNames) wraps named functions inside page.evaluate callbacks in __name(...): give pages that helper
  await context.addInitScript({ content: 'window.__name = function (f) { return f; };' });
  await context.addInitScript({ content: POINTS_SRC });
  context.on('close', () => console.log('      (chromium closed its context)'));
  return context;
}

/**
 * The server's root for the browser runs: a temporary folder with a copy of notebooks/*.ipynb (a
 * run, or an autosave, never writes into the project's notebooks), and links to the project's
 * notebooks/figures, dist/ and node_modules/ (so a notebook's `../dist/lib` and the plots'
 * <base>files/node_modules/plotly.js-dist-min resolve as in a checkout).
 */
export function uiRoot(): string {
  const root = projectRoot();
  const dir = tempDir('ddpm-ui-root-');
  fs.mkdirSync(path.join(dir, 'notebooks'));
  for (const f of fs.readdirSync(path.join(root, 'notebooks'))) {
    const from = path.join(root, 'notebooks', f);
    if (f.endsWith('.ipynb')) fs.copyFileSync(from, path.join(dir, 'notebooks', f));
    else fs.symlinkSync(from, path.join(dir, 'notebooks', f));
  }
  for (const name of ['dist', 'node_modules']) fs.symlinkSync(path.join(root, name), path.join(dir, name));
  return dir;
}

/** What one code cell shows in the page after a run. */
export interface CellView {
  /** 0-based index among code cells. */
  index: number;
  /** The prompt's execution count; null for `[ ]` (never ran, or aborted) and `[*]`. */
  count: number | null;
  busy: boolean;
  firstLine: string;
  /** Text of error outputs (tracebacks) shown under the cell. */
  errors: string[];
  /** Visible size of the first error output (0 when hidden). */
  errorBox: { width: number; height: number } | null;
  stderr: string;
  stdout: string;
  /** One entry per Plotly figure the cell shows. */
  plots: PlotView[];
  /** Data points of each Plotly output in the cell's outputs (its last update), what the figures must show. */
  expectedPoints: number[];
}

/** A Plotly figure in the page. */
export interface PlotView {
  /** Data points of the traces the figure holds (plotly's gd.data). */
  points: number;
  svgs: number;
  dataMarks: number;
  traces: number;
  text: string;
}

/** Typeset formulas and MathJax's own errors in the page. */
export interface MathView {
  /** MathJax 2's source scripts (one per formula found in markdown). */
  sources: number;
  /** Formulas MathJax rendered (HTML-CSS frames). */
  rendered: number;
  errors: string[];
}

/** Collects console errors, uncaught page errors and failed or refused requests of a page. */
export function watchConsole(page: Page): { errors: string[]; http: string[] } {
  const errors: string[] = [];
  const httpErrors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('crash', () => errors.push('the page crashed'));
  page.on('requestfailed', (r) => httpErrors.push(`${r.url()} failed (${r.failure()?.errorText})`));
  page.on('response', (r) => {
    if (r.status() >= 400) httpErrors.push(`${r.url()} answered ${r.status()}`);
  });
  return { errors, http: httpErrors };
}

/**
 * Console errors that are not the notebook's: JupyterLab 3.6 asks jupyter_server 1.23 for /api/me (a
 * jupyter_server 2 API, 404 here, which it tolerates) and the browser logs the 404; MathJax 2's
 * HTML-CSS output probes font loading with `@font-face { font-family: MathJax_Blank; src:
 * url("about:blank") }`, which Chromium refuses (a CORS message and net::ERR_FAILED) whatever the
 * formula. Each is dropped only as often as its request was seen; everything else counts.
 */
export function projectErrors(errors: string[], http: string[]): string[] {
  let api404 = http.filter((h) => /\/api\/(me|events)\b.* answered 404$/.test(h)).length;
  let blank = http.filter((h) => /^about:blank failed/.test(h)).length;
  let blankCors = blank;
  return errors.filter((e) => {
    if (api404 > 0 && /^console: Failed to load resource: the server responded with a status of 404/.test(e)) return api404-- <= 0;
    if (blankCors > 0 && /^console: Access to font at 'about:blank' .* blocked by CORS policy/.test(e)) return blankCors-- <= 0;
    if (blank > 0 && /^console: Failed to load resource: net::ERR_FAILED$/.test(e)) return blank-- <= 0;
    return true;
  });
}

/** Asserts a notebook's run: every code cell ran in order, no error output, no ✗ check, every figure drew data, formulas typeset. */
export function expectCleanRun(where: string, cells: CellView[], math: MathView, consoleErrors: string[], plotsExpected: number): void {
  expect(cells.length, `${where}: code cells shown`).to.be.above(0);
  for (const c of cells) {
    const at = `${where}, code cell ${c.index + 1} (${c.firstLine})`;
    expect(c.busy, `${at}: still [*]`).to.equal(false);
    expect(c.errors, `${at}: error output`).to.deep.equal([]);
    expect(c.count, `${at}: did not run (prompt [ ])`).to.be.a('number');
    expect(c.stdout, `${at}: a failed check`).not.to.include('✗');
  }
  // a fresh kernel numbers the cells 1, 2, ... in the order Run All sent them
  expect(cells.map((c) => c.count), `${where}: execution counts`).to.deep.equal(cells.map((_, i) => i + 1));
  for (const c of cells) {
    // the figure shows its output's last state: an in-place update (update_display_data) that did not redraw leaves fewer points
    expect(c.plots.map((p) => p.points), `${where}, code cell ${c.index + 1}: data points drawn per figure, against its output's`).to.deep.equal(c.expectedPoints);
  }
  const plots = cells.flatMap((c) => c.plots.map((p) => ({ ...p, cell: c.index + 1 })));
  expect(plots.length, `${where}: Plotly figures drawn in the page`).to.equal(plotsExpected);
  for (const p of plots) {
    expect(p.svgs, `${where}, cell ${p.cell}: figure has no SVG (${p.text})`).to.be.above(0);
    expect(p.traces, `${where}, cell ${p.cell}: figure has no traces (${p.text})`).to.be.above(0);
    expect(p.dataMarks, `${where}, cell ${p.cell}: figure drew no data marks (${p.text})`).to.be.above(0);
  }
  expect(math.errors, `${where}: formulas MathJax could not typeset`).to.deep.equal([]);
  expect(math.rendered, `${where}: formulas typeset (of ${math.sources} found)`).to.equal(math.sources);
  expect(consoleErrors, `${where}: console errors`).to.deep.equal([]);
}

/** Plotly outputs of an executed notebook (what the page must draw), counted from the file. */
export function plotOutputs(nb: { cells: { cell_type: string; outputs?: { data?: Record<string, unknown> }[] }[] }): number {
  return nb.cells.filter((c) => c.cell_type === 'code').reduce((n, c) => n + (c.outputs ?? []).filter((o) => o.data && 'application/vnd.plotly.v1+json' in o.data).length, 0);
}

/**
 * Page-side source of `points(traces)`: the data points of Plotly traces (longest of x, y, z, values;
 * a z matrix counts its cells). Given to pages as window.__ddpmPoints by launchChromium.
 */
const POINTS_SRC = `window.__ddpmPoints = function (traces) {
  return (traces || []).reduce(function (n, t) {
    var m = 0;
    ['x', 'y', 'z', 'values'].forEach(function (k) {
      var v = t && t[k];
      if (Array.isArray(v) || ArrayBuffer.isView(v)) m = Math.max(m, k === 'z' && Array.isArray(v[0]) ? v.reduce(function (s, r) { return s + r.length; }, 0) : v.length);
    });
    return n + m;
  }, 0);
};`;

/** Seconds since t0, one decimal. */
export const since = (t0: number) => Math.round((Date.now() - t0) / 100) / 10;

/** Shuts down every kernel the server runs (between notebooks, so each run starts from a fresh kernel). */
export async function shutdownKernels(server: JupyterServer): Promise<void> {
  const res = await fetch(`${server.baseUrl}api/kernels?token=${server.token}`);
  for (const k of (await res.json()) as { id: string }[]) await fetch(`${server.baseUrl}api/kernels/${k.id}?token=${server.token}`, { method: 'DELETE' });
}
