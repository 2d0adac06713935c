/**
 * Shared by test/jupyterlab.test.ts and test/classic-notebook.test.ts: a server root for the
 * browser runs, the project's headless chromium, and what a notebook page must show once it ran (read from
 * the page's DOM, never from the kernel's own report): every code cell's prompt, error outputs, Plotly
 * figures with their data marks, typeset formulas, and console errors.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { chromiumMissing, launchChromium } from '../lib/workbook/browser';
import { projectRoot } from '../lib/workbook/runners/project';
import { FAILING_CELL, FAILING_FIXTURE, tempDir } from './fixtures/quick-workbook';
import { JupyterServer, LabVariant, classicMissing, labBuildMissing, labServerMissing, workbookServerRoot } from '../lib/workbook/jupyterlab/server';
import { jupyterMissing, JUPYTER_INSTALL_HINT } from '../lib/workbook/runners/kernel';

/** Skips (outside CI) or fails (CI=true) the suite when a tool is missing, naming it and how to install it. */
export function requireTool(ctx: Mocha.Context, missing: string | null): void {
  if (missing === null) return;
  if (process.env.CI === 'true') throw new Error(`under CI this must run, but ${missing}`);
  console.log(`    (skipped: ${missing})`);
  ctx.skip();
}

/** Skips (outside CI) or fails (CI=true) the suite unless chromium, Jupyter and the front end are there (JupyterLab: its server side and the builds named). */
export function requireFrontEnd(ctx: Mocha.Context, frontEnd: 'JupyterLab' | 'classic notebook', variants: LabVariant[] = ['plotly']): void {
  requireTool(ctx, chromiumMissing());
  const j = jupyterMissing();
  requireTool(ctx, j && `${j}: ${JUPYTER_INSTALL_HINT}`);
  if (frontEnd === 'classic notebook') return requireTool(ctx, classicMissing());
  requireTool(ctx, labServerMissing());
  for (const v of variants) requireTool(ctx, labBuildMissing(v));
}

/** The project's headless chromium (lib/workbook/browser.ts), its pages given the shared page-side readers (window.__ddpm*). */
export async function launchUiBrowser(): Promise<BrowserContext> {
  const context = await launchChromium({ initScripts: [PAGE_HELPERS_SRC] });
  context.on('close', () => console.log('      (chromium closed its context)'));
  return context;
}

/** What a suite starts in its before hook: a server (stop) or a browser context (close). */
type Started = JupyterServer | BrowserContext;

/**
 * Starts the servers and the browser side by side and returns them in order. When any fails, the
 * others are stopped or closed before its error goes on: a browser or server left running keeps
 * the mocha process, and with it `npm test`, from ever exiting.
 */
export async function startTogether<T extends readonly Started[]>(starts: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(starts as unknown as Promise<Started>[]);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (!failed) return settled.map((s) => (s as PromiseFulfilledResult<Started>).value) as unknown as T;
  const up = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  await Promise.allSettled(up.map((u) => ('stop' in u ? u.stop() : u.close())));
  throw failed.reason;
}

/**
 * The server's root for the browser runs: a temporary folder made by workbookServerRoot (copies of
 * notebooks/*.ipynb, links to dist/ and node_modules/), with a copy of the failing fixture at
 * test/fixtures/ (where it sits in the project: it imports ../../dist/lib).
 */
export function uiRoot(): string {
  const dir = workbookServerRoot(tempDir('ddpm-ui-root-'), projectRoot());
  fs.mkdirSync(path.join(dir, 'test', 'fixtures'), { recursive: true });
  fs.copyFileSync(FAILING_FIXTURE, path.join(dir, 'test', 'fixtures', path.basename(FAILING_FIXTURE)));
  return dir;
}

/** JupyterLab's user settings for the tests: a new folder, autosave off (a run must never save over a notebook). */
export function labUserDir(): string {
  const userDir = tempDir('ddpm-lab-user-');
  const docmanager = path.join(userDir, 'user-settings', '@jupyterlab', 'docmanager-extension');
  fs.mkdirSync(docmanager, { recursive: true });
  fs.writeFileSync(path.join(docmanager, 'plugin.jupyterlab-settings'), JSON.stringify({ autosave: false }));
  return userDir;
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
  /** The text the first error output shows. */
  errorShown: string;
  stderr: string;
  stdout: string;
  /** One entry per Plotly figure the cell shows. */
  plots: PlotView[];
  /** Data points of each Plotly output in the cell's outputs (its last update), what the figures must show. */
  expectedPoints: number[];
  /** Whether the front end holds the cell's outputs as trusted (null where it does not say). */
  trusted: boolean | null;
  /** <script> elements in the cell's text/html outputs, and those the page kept (sanitizing drops them all). */
  htmlScripts: { inOutputs: number; inPage: number };
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
  /** Rendered markdown cells whose text (outside code and MathJax's output) still shows TeX delimiters: math left raw. */
  raw: string[];
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
  expect(math.raw, `${where}: markdown cells with raw TeX left (not typeset)`).to.deep.equal([]);
  expect(math.rendered, `${where}: formulas typeset (of ${math.sources} found)`).to.equal(math.sources);
  expect(consoleErrors, `${where}: console errors`).to.deep.equal([]);
}

/** Plotly outputs of an executed notebook (what the page must draw), counted from the file. */
export function plotOutputs(nb: { cells: { cell_type: string; outputs?: { data?: Record<string, unknown> }[] }[] }): number {
  return nb.cells.filter((c) => c.cell_type === 'code').reduce((n, c) => n + (c.outputs ?? []).filter((o) => o.data && 'application/vnd.plotly.v1+json' in o.data).length, 0);
}

/** An output as nbformat writes it (both front ends hold their outputs in this form). */
export interface OutputJson {
  output_type: string;
  name?: string;
  text?: string | string[];
  ename?: string;
  evalue?: string;
  data?: Record<string, unknown>;
}

/** Where a front end's page shows what the page helpers read. */
export interface FrontEndSelectors {
  /** A code cell's input prompt, inside the cell's node. */
  prompt: string;
  /** A cell's first error output (stderr or error), inside the cell's node. */
  error: string;
  /** Rendered markdown cells, inside the notebook's node. */
  markdown: string;
}

/** How often the waits poll the page, in ms: each poll runs in the page's renderer, beside the work it waits for. */
export const POLL_MS = 250;

/** Plotly figures as either front end shows them: plotly's mime renderer, or our text/html (lib/workbook/plot.ts). */
const PLOT_SELECTOR = '.jp-RenderedPlotly, .ddpm-plot';

/**
 * Installs the page-side readers both front ends share (window.__ddpm*): runs in the page, as an init
 * script, before JupyterLab's or the classic notebook's own code.
 */
function installPageHelpers(plotSelector: string): void {
  const w = window as any;
  const text = (o: OutputJson) => (Array.isArray(o.text) ? o.text.join('') : (o.text ?? ''));
  // tfjs-backend-cpu's once-per-process advice to install tfjs-node (a warning, on stderr) is not an error
  const TFJS_BANNER = /\n?=+\nHi, looks like you are running TensorFlow\.js in Node\.js\.[^\n]*\n=+\n/;
  const PLOTLY_MIME = 'application/vnd.plotly.v1+json';
  /** Data points of Plotly traces (longest of x, y, z, values; a z matrix counts its cells). */
  const points = (traces: any[]) =>
    (traces || []).reduce((n, t) => {
      let m = 0;
      for (const k of ['x', 'y', 'z', 'values']) {
        const v = t && t[k];
        if (Array.isArray(v) || ArrayBuffer.isView(v)) m = Math.max(m, k === 'z' && Array.isArray((v as any)[0]) ? (v as any[]).reduce((s, r) => s + r.length, 0) : (v as any).length);
      }
      return n + m;
    }, 0);
  w.__ddpmPoints = points;
  /** One code cell as the page shows it, from its node and its outputs (nbformat JSON). */
  w.__ddpmCellView = (index: number, node: HTMLElement, outputs: OutputJson[], firstLine: string, sel: FrontEndSelectors, trusted: boolean | null) => {
    const prompt = node.querySelector(sel.prompt)?.textContent ?? '';
    const m = /\[(\d+)\]/.exec(prompt);
    // tslab reports a failing cell on stderr only (no error message; see run_nbclient.py), which the
    // front ends show as a stderr output: both count as the cell's error output
    const errorEl = node.querySelector(sel.error) as HTMLElement | null;
    if (errorEl) errorEl.scrollIntoView();
    const box = errorEl?.getBoundingClientRect();
    return {
      index,
      count: m ? Number(m[1]) : null,
      busy: /\[\*\]/.test(prompt),
      firstLine,
      trusted,
      errors: [
        ...outputs.filter((o) => o.output_type === 'error').map((o) => `${o.ename}: ${o.evalue}`),
        ...outputs
          .filter((o) => o.output_type === 'stream' && o.name === 'stderr')
          .map((o) => text(o).replace(TFJS_BANNER, ''))
          .filter((t) => t.trim() !== '')
          .map((t) => `stderr: ${t.slice(0, 2000)}`),
      ],
      errorShown: errorEl ? (errorEl.innerText ?? '') : '',
      errorBox: box ? { width: box.width, height: box.height } : null,
      stderr: outputs.filter((o) => o.output_type === 'stream' && o.name === 'stderr').map(text).join(''),
      stdout: outputs.filter((o) => o.output_type === 'stream' && o.name === 'stdout').map(text).join(''),
      expectedPoints: outputs.filter((o) => o.data && PLOTLY_MIME in o.data).map((o) => points((o.data as any)[PLOTLY_MIME].data)),
      htmlScripts: {
        // what the cell's text/html outputs hold, and what the page kept of it (an untrusted output is sanitized: no scripts)
        inOutputs: outputs.reduce((n, o) => n + ((String((o.data && o.data['text/html']) ?? '').match(/<script\b/g) ?? []).length), 0),
        inPage: Array.from(node.querySelectorAll('.jp-RenderedHTML, .output_html')).reduce((n, el) => n + el.querySelectorAll('script').length, 0),
      },
      plots: Array.from(node.querySelectorAll(plotSelector)).map((p: any) => ({
        svgs: p.querySelectorAll('svg.main-svg').length,
        dataMarks: p.querySelectorAll('svg.main-svg g.trace, svg.main-svg g.hm, svg.main-svg .heatmaplayer image, svg.main-svg .imagelayer image, svg.main-svg .pielayer .slice').length,
        traces: (p._fullData ?? []).length,
        points: points(p.data),
        text: (p.textContent ?? '').slice(0, 200),
      })),
    };
  };
  /** Rendered markdown cells whose visible text still holds TeX delimiters ($...$, $$): math MathJax has not typeset. */
  const rawTex = (root: Element, markdown: string) =>
    Array.from(root.querySelectorAll(markdown))
      .map((c) => {
        const copy = c.cloneNode(true) as HTMLElement;
        copy.querySelectorAll('code, pre, script, .MathJax, .MathJax_Display, .MathJax_Preview, .MathJax_CHTML, .MathJax_SVG').forEach((e) => e.remove());
        return copy.textContent ?? '';
      })
      .filter((t) => /\$\$|\$[^$\s][^$]*\$/.test(t))
      .map((t) => t.slice(0, 160));
  /** The formulas of a notebook's node: MathJax's sources, what it rendered, its errors, and markdown left raw. */
  w.__ddpmMathView = (root: Element, markdown: string) => ({
    sources: root.querySelectorAll('script[type^="math/tex"]').length,
    rendered: root.querySelectorAll('span.MathJax, span.MathJax_CHTML, span.MathJax_SVG').length,
    errors: Array.from(root.querySelectorAll('.MathJax_Error, [data-mathml*="<merror"], .MathJax .merror')).map((e) => e.textContent ?? ''),
    raw: rawTex(root, markdown),
  });
  /**
   * Whether what draws after the outputs arrive has drawn: MathJax (loaded lazily by JupyterLab, and
   * typesetting one cell after another) has an empty queue and no markdown shows raw TeX, and every
   * Plotly output has its figure element with an SVG (or its "could not" message); plotOutputs null:
   * the math alone.
   */
  w.__ddpmSettled = (root: Element, markdown: string, plotOutputs: number | null) => {
    const MJ = w.MathJax;
    const q = MJ?.Hub?.queue;
    const mathIdle = !root.querySelector(markdown) || (MJ?.isReady === true && q && q.pending === 0 && q.running === 0 && q.queue.length === 0);
    if (!mathIdle) return false;
    const figures = Array.from(root.querySelectorAll(plotSelector));
    const plotsDone = plotOutputs === null || (figures.length >= plotOutputs && figures.every((el) => el.querySelector('svg.main-svg') || /could not/.test(el.textContent ?? '')));
    if (!plotsDone) return false;
    // last, as it copies every markdown cell: the math view (polled 4 times a second)
    const math = w.__ddpmMathView(root, markdown);
    return math.raw.length === 0 && math.rendered >= math.sources;
  };
  /** True once cond has held for ms without a break (the caller polls); key names the condition. */
  w.__ddpmSteady = (key: string, cond: boolean, ms: number) => {
    const since = (w.__ddpmSteadySince ??= {});
    if (!cond) {
      delete since[key];
      return false;
    }
    since[key] ??= Date.now();
    return Date.now() - since[key] >= ms;
  };
}

const PAGE_HELPERS_SRC = `(${installPageHelpers.toString()})(${JSON.stringify(PLOT_SELECTOR)});`;

/**
 * Waits until the page's notebook (root: a selector) has drawn its plots and typeset its math
 * (window.__ddpmSettled), or timeoutMs passed: the assertions then say what is missing.
 */
export async function waitSettled(page: Page, root: string, markdown: string, plotOutputs: number | null, timeoutMs = 90_000): Promise<void> {
  await page
    .waitForFunction(([r, md, n]) => (window as any).__ddpmSettled(document.querySelector(r as string), md, n), [root, markdown, plotOutputs] as const, { timeout: timeoutMs, polling: POLL_MS })
    .catch(() => undefined);
}

/** Asserts the failing fixture's run: the cells before the failing one ran cleanly, its error shows, the cells after it never ran. */
export function expectFailingFixtureRun(cells: CellView[]): void {
  const bad = cells[FAILING_CELL.codeCell - 1];
  expect(bad.firstLine).to.equal(FAILING_CELL.firstLine);
  expect(cells.slice(0, FAILING_CELL.codeCell - 1).map((c) => [c.count, c.errors])).to.deep.equal(cells.slice(0, FAILING_CELL.codeCell - 1).map((_, i) => [i + 1, []]));
  expect(bad.errors.length, 'an error output on the failing cell').to.equal(1);
  expect(bad.errorShown, 'the error text in the output area').to.include('one plus one is three');
  expect(bad.errorBox!.height, 'the error output is visible (has a height)').to.be.above(10);
  for (const after of cells.slice(FAILING_CELL.codeCell)) {
    expect(after.count, `code cell ${after.index + 1} after the failure ran`).to.equal(null);
    expect(after.stdout + after.errors.join(''), `code cell ${after.index + 1} after the failure has output`).to.equal('');
  }
}

/** Seconds since t0, one decimal. */
export const since = (t0: number) => Math.round((Date.now() - t0) / 100) / 10;

/** Shuts down every kernel the server runs (between notebooks, so each run starts from a fresh kernel). */
export async function shutdownKernels(server: JupyterServer): Promise<void> {
  const res = await fetch(`${server.baseUrl}api/kernels?token=${server.token}`);
  for (const k of (await res.json()) as { id: string }[]) await fetch(`${server.baseUrl}api/kernels/${k.id}?token=${server.token}`, { method: 'DELETE' });
}

/** A notebook as JupyterLab holds it (the model's JSON): what the page's figures and prompts are checked against. */
export type NotebookJson = { cells: { cell_type: string; source: string | string[]; outputs?: OutputJson[] }[]; metadata: Record<string, unknown> };

/** JupyterLab's markdown cells, once rendered. */
const LAB_SELECTORS: FrontEndSelectors = {
  prompt: '.jp-InputPrompt',
  error: '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
  markdown: '.jp-MarkdownCell .jp-RenderedMarkdown',
};

/** A page of the project's JupyterLab in which notebooks are opened one after another (the app loads once), and its console. */
export interface LabPage {
  page: Page;
  /** Console errors and failed requests since the last take(). */
  take(): { errors: string[]; http: string[] };
}

/** Loads JupyterLab (a fresh workspace: ?reset) in a new page of the context and waits until it is restored. */
export async function openLabPage(context: BrowserContext, server: JupyterServer): Promise<LabPage> {
  const page = await context.newPage();
  const watched = watchConsole(page);
  await page.goto(`${server.baseUrl}lab?reset&token=${server.token}`);
  await page.waitForFunction(() => document.body.dataset.ddpmLab === 'restored', null, { timeout: 120_000 });
  return { page, take: () => ({ errors: watched.errors.splice(0), http: watched.http.splice(0) }) };
}

/**
 * Closes what the page's main area shows and opens rel (a path under the server's root) there;
 * waits for its model, and for its tslab kernel when waitKernel (a server started with
 * startsKernel: false opens it with none).
 */
export async function openInLab(lab: LabPage, rel: string, waitKernel = true): Promise<void> {
  const kernel = await lab.page.evaluate(
    async ([file, wait]) => {
      const w = window as unknown as { ddpmLab: any; __ddpmPanel?: any };
      const open = w.ddpmLab.shell.widgets('main');
      const shown: any[] = [];
      for (let x = open.next(); x !== undefined; x = open.next()) shown.push(x);
      // dispose, not close: a run leaves the notebook dirty, and close() would ask whether to save it
      for (const x of shown) x.dispose();
      const panel = await w.ddpmLab.commands.execute('docmanager:open', { path: file });
      w.__ddpmPanel = panel;
      await panel.context.ready;
      await panel.revealed;
      if (panel.context.path !== file) return `the open tab is ${panel.context.path}, not ${file}`;
      // context.ready resolves before the context's initialize() is done: that still waits for the
      // server's checkpoint, then initializes the model. Disposing the panel in between (the next
      // openInLab) makes JupyterLab 3.6 log "Failed to initialize the context" (a disposed model).
      for (const t0 = Date.now(); !panel.context.model.isInitialized; await new Promise((r) => setTimeout(r, 50))) {
        if (Date.now() - t0 > 60_000) return `${file}: the notebook model was not initialized 60 s after the context was ready`;
      }
      if (!wait) return 'tslab';
      await panel.sessionContext.ready;
      return panel.sessionContext.session?.kernel?.name ?? 'no kernel';
    },
    [rel, waitKernel] as const,
  );
  expect(kernel, `${rel}: kernel`).to.equal('tslab');
}

/** Closes the notebook the page shows (its kernel keeps running: shutdownKernels ends it). */
export async function closeInLab(lab: LabPage): Promise<void> {
  await lab.page.evaluate(() => (window as unknown as { __ddpmPanel?: any }).__ddpmPanel?.dispose());
}

/** Clicks Run > Run All Cells in JupyterLab's menu bar. */
export async function runAllInLab(lab: LabPage): Promise<void> {
  await lab.page.click('.lm-MenuBar-item:has-text("Run")');
  await lab.page.click('.lm-Menu-item:has-text("Run All Cells")');
  // the pointer off the menu bar: left there, every layout change under it (each output drawn) is a
  // mousemove the menu bar answers with a focus and a forced layout (0.6 s of the page's CPU in 3 notebooks)
  await lab.page.mouse.move(1, (lab.page.viewportSize()?.height ?? 600) - 1);
}

/** Waits until no cell shows [*] and the kernel is idle (for 0.5 s without a break: a reply between two cells is not the end). */
export async function waitIdleInLab(lab: LabPage, timeoutMs: number): Promise<void> {
  await lab.page.waitForFunction(
    () => {
      const w = window as unknown as { __ddpmPanel: any; __ddpmSteady: (k: string, c: boolean, ms: number) => boolean };
      const panel = w.__ddpmPanel;
      const busy = Array.from(panel.node.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).some((p) => /\[\*\]/.test((p as HTMLElement).textContent ?? ''));
      return w.__ddpmSteady('lab idle', !busy && panel.sessionContext.session?.kernel?.status === 'idle', 500);
    },
    null,
    { timeout: timeoutMs, polling: POLL_MS },
  );
}

/**
 * The notebook the page shows, once its plots drew and its math is typeset (or 90 s passed): code
 * cells, math, and the model's JSON. waitPlots false: once the math is typeset, plots drawn or not.
 */
export async function readLab(lab: LabPage, waitPlots = true): Promise<{ cells: CellView[]; math: MathView; nb: NotebookJson }> {
  const { id, model } = await lab.page.evaluate(() => {
    const panel = (window as unknown as { __ddpmPanel: any }).__ddpmPanel;
    return { id: panel.id as string, model: panel.context.model.toJSON() as NotebookJson };
  });
  await waitSettled(lab.page, `[id="${id}"]`, LAB_SELECTORS.markdown, waitPlots ? plotOutputs(model) : null);
  return lab.page.evaluate((sel) => {
    const w = window as any;
    const panel = w.__ddpmPanel;
    const cells = (panel.content.widgets as any[])
      .filter((c) => c.model.type === 'code')
      .map((c, index) => w.__ddpmCellView(index, c.node, c.model.outputs.toJSON(), (c.model.value.text as string).split('\n')[0], sel, c.model.trusted));
    return { cells, math: w.__ddpmMathView(panel.node, sel.markdown), nb: panel.context.model.toJSON() };
  }, LAB_SELECTORS);
}
