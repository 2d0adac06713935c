/**
 * The workbook in the classic notebook (Debian's jupyter-notebook 6.4), driven in headless Debian
 * chromium: every notebook opened, run with Cell > Run All (quick mode), and read back from the page:
 * every code cell ran in order with no error output, every Plotly figure drew data marks from its
 * text/html (the classic notebook has no Plotly renderer; plotly.js loads through require.js), every
 * formula typeset by MathJax, no console error; the failing fixture shows its error and stops there.
 */
import * as path from 'path';
import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { JupyterServer, startJupyter } from '../lib/workbook/jupyterlab/server';
import { ensureBuilt, projectRoot, workbookNotebooks } from '../lib/workbook/runners/project';
import { BUILD_TIMEOUT_MS, FAILING_FIXTURE } from './fixtures/quick-workbook';
import { CellView, FrontEndSelectors, MathView, OutputJson, POLL_MS, expectCleanRun, expectFailingFixtureRun, launchUiBrowser, startTogether, projectErrors, requireFrontEnd, since, uiRoot, shutdownKernels, waitSettled, watchConsole } from './notebook-ui';

const root = projectRoot();
/** Per notebook: quick mode takes 10-60 s through a kernel on the 2-core machine (README); this bounds a stuck one. */
const RUN_TIMEOUT_MS = 6 * 60 * 1000;

/** Opens a notebook in the classic notebook, turns autosave off, and waits for its tslab kernel to be idle. */
async function openClassic(context: BrowserContext, server: JupyterServer, rel: string): Promise<{ page: Page; errors: string[]; http: string[] }> {
  const page = await context.newPage();
  const watched = watchConsole(page);
  await page.goto(server.notebookUrl(rel));
  await page.waitForFunction(() => {
    const J = (window as unknown as { Jupyter?: any }).Jupyter;
    // info_reply is the kernel_info reply's content, there once the kernel answered
    return J?.notebook?._fully_loaded && J.notebook.kernel?.info_reply?.protocol_version && document.querySelector('#kernel_indicator_icon')?.classList.contains('kernel_idle_icon');
  }, null, { timeout: 120_000, polling: POLL_MS });
  const kernel = await page.evaluate(() => {
    const J = (window as unknown as { Jupyter: any }).Jupyter;
    // the copy is temporary, but a save would still rewrite it under the run: none
    J.notebook.set_autosave_interval(0);
    return J.notebook.kernel.name as string;
  });
  expect(kernel, `${rel}: kernel`).to.equal('tslab');
  return { page, ...watched };
}

/** Waits until no cell shows In [*] and the kernel indicator is idle (for 0.5 s without a break: a reply between two cells is not the end). */
async function waitIdle(page: Page, timeoutMs: number): Promise<void> {
  await page.waitForFunction(
    () => {
      const busy = Array.from(document.querySelectorAll('.code_cell .input_prompt')).some((p) => /\[\*\]/.test(p.textContent ?? ''));
      const idle = !busy && document.querySelector('#kernel_indicator_icon')?.classList.contains('kernel_idle_icon') === true;
      return (window as unknown as { __ddpmSteady: (k: string, c: boolean, ms: number) => boolean }).__ddpmSteady('classic idle', idle, 500);
    },
    null,
    { timeout: timeoutMs, polling: POLL_MS },
  );
}

/** Where the classic notebook's page shows prompts, error outputs and rendered markdown. */
const CLASSIC_SELECTORS: FrontEndSelectors = { prompt: '.input_prompt', error: '.output_stderr, .output_error', markdown: '.text_cell_render' };

/** The notebook as the page shows it, once its plots drew and its math is typeset (or 90 s passed): code cells (prompt, outputs, figures) and math. */
async function readClassic(page: Page): Promise<{ cells: CellView[]; math: MathView; plotOutputs: number }> {
  const plotOutputs = await page.evaluate(() =>
    ((window as unknown as { Jupyter: any }).Jupyter.notebook.get_cells() as any[])
      .filter((c) => c.cell_type === 'code')
      .reduce((n, c) => n + (c.output_area.outputs as OutputJson[]).filter((o) => o.data && 'application/vnd.plotly.v1+json' in o.data).length, 0),
  );
  await waitSettled(page, '#notebook', CLASSIC_SELECTORS.markdown, plotOutputs);
  return page.evaluate(
    ([sel, n]) => {
      const w = window as any;
      const cells = (w.Jupyter.notebook.get_cells() as any[])
        .filter((c) => c.cell_type === 'code')
        .map((c, index) => w.__ddpmCellView(index, c.element[0], c.output_area.outputs, (c.get_text() as string).split('\n')[0], sel, null));
      return { cells, math: w.__ddpmMathView(document.querySelector('#notebook'), sel.markdown), plotOutputs: n };
    },
    [CLASSIC_SELECTORS, plotOutputs] as const,
  );
}

/** Clicks Cell > Run All in the classic notebook's menu bar. */
async function runAll(page: Page): Promise<void> {
  await page.click('#celllink');
  await page.click('#run_all_cells > a');
}

describe('the workbook in the classic notebook (headless Chromium)', function () {
  this.timeout(BUILD_TIMEOUT_MS);
  let context: BrowserContext;
  let server: JupyterServer;
  let dir: string;
  const timings: string[] = [];

  before(async function () {
    requireFrontEnd(this, 'classic notebook');
    ensureBuilt(root);
    dir = uiRoot();
    const t0 = Date.now();
    [server, context] = await startTogether<[JupyterServer, BrowserContext]>([startJupyter('classic notebook', 'plotly', { rootDir: dir, env: { DDPM_WORKBOOK_MODE: 'quick' } }), launchUiBrowser()]);
    timings.push(`server and browser up in ${since(t0)} s`);
  });

  after(async function () {
    await context?.close();
    await server?.stop();
    if (timings.length) console.log(`      classic notebook timings: ${timings.join('; ')}`);
  });

  let plotsSeen = 0;
  for (const file of workbookNotebooks(root)) {
    const rel = `notebooks/${path.basename(file)}`;
    it(`${path.basename(file)}: Cell > Run All in the classic notebook runs every code cell without an error, plots drawn from their HTML, formulas typeset, no console error`, async function () {
      this.timeout(RUN_TIMEOUT_MS + 120_000);
      const t0 = Date.now();
      const { page, errors, http } = await openClassic(context, server, rel);
      try {
        await runAll(page);
        await waitIdle(page, RUN_TIMEOUT_MS);
        const { cells, math, plotOutputs } = await readClassic(page);
        expectCleanRun(rel, cells, math, projectErrors(errors, http), plotOutputs);
        plotsSeen += plotOutputs;
        timings.push(`${path.basename(file, '.ipynb')} ${since(t0)} s`);
      } finally {
        await page.close();
        await shutdownKernels(server);
      }
    });
  }

  it('the notebooks drew Plotly figures at all (a run with none would prove nothing about them)', function () {
    if (workbookNotebooks(root).length === 0) this.skip();
    expect(plotsSeen).to.be.above(0);
  });

  it('the failing fixture: Run All stops at the failing cell, whose error shows in its output area; the cell after it never runs', async function () {
    this.timeout(RUN_TIMEOUT_MS);
    const rel = `test/fixtures/${path.basename(FAILING_FIXTURE)}`;
    const { page } = await openClassic(context, server, rel);
    try {
      await runAll(page);
      await waitIdle(page, RUN_TIMEOUT_MS);
      expectFailingFixtureRun((await readClassic(page)).cells);
    } finally {
      await page.close();
      await shutdownKernels(server);
    }
  });
});
