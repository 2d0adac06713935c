/**
 * The workbook in the classic notebook (Debian's jupyter-notebook 6.4), driven in headless Debian
 * chromium: every notebook opened, run with Cell > Run All (quick mode), and read back from the page:
 * every code cell ran in order with no error output, every Plotly figure drew data marks from its
 * text/html (the classic notebook has no Plotly renderer; plotly.js loads through require.js), every
 * formula typeset by MathJax, no console error; the failing fixture shows its error and stops there.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { JupyterServer, classicMissing, startJupyter } from '../lib/workbook/jupyterlab/server';
import { ensureBuilt, projectRoot, workbookNotebooks } from '../lib/workbook/runners/project';
import { jupyterMissing, JUPYTER_INSTALL_HINT } from '../lib/workbook/runners/kernel';
import { BUILD_TIMEOUT_MS, FAILING_CELL, FAILING_FIXTURE } from './fixtures/quick-workbook';
import { CellView, MathView, chromiumMissing, expectCleanRun, launchChromium, projectErrors, requireTool, since, uiRoot, shutdownKernels, watchConsole } from './notebook-ui';

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
  }, null, { timeout: 120_000, polling: 250 });
  const kernel = await page.evaluate(() => {
    const J = (window as unknown as { Jupyter: any }).Jupyter;
    // the copy is temporary, but a save would still rewrite it under the run: none
    J.notebook.set_autosave_interval(0);
    return J.notebook.kernel.name as string;
  });
  expect(kernel, `${rel}: kernel`).to.equal('tslab');
  return { page, ...watched };
}

/** Waits until no cell shows In [*] and the kernel indicator is idle (twice in a row, 0.5 s apart). */
async function waitIdle(page: Page, timeoutMs: number): Promise<void> {
  await page.waitForFunction(
    () => {
      const w = window as unknown as { Jupyter: any; __idleSince?: number };
      const busy = Array.from(document.querySelectorAll('.code_cell .input_prompt')).some((p) => /\[\*\]/.test(p.textContent ?? ''));
      const idle = !busy && document.querySelector('#kernel_indicator_icon')?.classList.contains('kernel_idle_icon') === true;
      if (!idle) {
        w.__idleSince = undefined;
        return false;
      }
      w.__idleSince ??= Date.now();
      return Date.now() - w.__idleSince > 500;
    },
    null,
    { timeout: timeoutMs, polling: 250 },
  );
}

/** The notebook as the page shows it: code cells (prompt, outputs, figures) and math. */
async function readClassic(page: Page): Promise<{ cells: (CellView & { errorShown: string })[]; math: MathView; plotOutputs: number }> {
  await page
    .waitForFunction(
      () => {
        const plotsDone = Array.from(document.querySelectorAll('.ddpm-plot')).every((el) => el.querySelector('svg.main-svg') || /could not/.test(el.textContent ?? ''));
        const sources = document.querySelectorAll('#notebook script[type^="math/tex"]').length;
        return plotsDone && document.querySelectorAll('#notebook span.MathJax, #notebook span.MathJax_CHTML, #notebook span.MathJax_SVG').length >= sources;
      },
      null,
      { timeout: 60_000, polling: 250 },
    )
    .catch(() => undefined); // the assertions say what is missing
  return page.evaluate(() => {
    const J = (window as unknown as { Jupyter: any }).Jupyter;
    const TFJS_BANNER = /\n?=+\nHi, looks like you are running TensorFlow\.js in Node\.js\.[^\n]*\n=+\n/;
    const text = (o: { text?: string | string[] }) => (Array.isArray(o.text) ? o.text.join('') : (o.text ?? ''));
    let plotOutputs = 0;
    const cells = (J.notebook.get_cells() as any[])
      .filter((c) => c.cell_type === 'code')
      .map((c, index) => {
        const el = c.element[0] as HTMLElement;
        const outputs = c.output_area.outputs as { output_type: string; name?: string; text?: string | string[]; ename?: string; evalue?: string; data?: Record<string, unknown> }[];
        plotOutputs += outputs.filter((o) => o.data && 'application/vnd.plotly.v1+json' in o.data).length;
        const prompt = el.querySelector('.input_prompt')?.textContent ?? '';
        const m = /\[(\d+)\]/.exec(prompt);
        // tslab reports a failing cell on stderr only (see run_nbclient.py): stderr is its error output
        const errorEl = el.querySelector('.output_stderr, .output_error') as HTMLElement | null;
        if (errorEl) errorEl.scrollIntoView();
        const box = errorEl?.getBoundingClientRect();
        return {
          index,
          count: m ? Number(m[1]) : null,
          busy: /\[\*\]/.test(prompt),
          firstLine: (c.get_text() as string).split('\n')[0],
          errors: [
            ...outputs.filter((o) => o.output_type === 'error').map((o) => `${o.ename}: ${o.evalue}`),
            ...outputs
              .filter((o) => o.output_type === 'stream' && o.name === 'stderr')
              .map((o) => text(o).replace(TFJS_BANNER, ''))
              .filter((t) => t.trim() !== '')
              .map((t) => `stderr: ${t.slice(0, 2000)}`),
          ],
          errorShown: errorEl ? errorEl.innerText : '',
          errorBox: box ? { width: box.width, height: box.height } : null,
          stderr: outputs.filter((o) => o.output_type === 'stream' && o.name === 'stderr').map(text).join(''),
          stdout: outputs.filter((o) => o.output_type === 'stream' && o.name === 'stdout').map(text).join(''),
          expectedPoints: outputs.filter((o) => o.data && 'application/vnd.plotly.v1+json' in o.data).map((o) => (window as any).__ddpmPoints((o.data as any)['application/vnd.plotly.v1+json'].data)),
          plots: Array.from(el.querySelectorAll('.ddpm-plot')).map((p: any) => ({
            svgs: p.querySelectorAll('svg.main-svg').length,
            dataMarks: p.querySelectorAll('svg.main-svg g.trace, svg.main-svg g.hm, svg.main-svg .heatmaplayer image, svg.main-svg .imagelayer image, svg.main-svg .pielayer .slice').length,
            traces: (p._fullData ?? []).length,
            points: (window as any).__ddpmPoints(p.data),
            text: (p.textContent ?? '').slice(0, 200),
          })),
        };
      });
    const nb = document.querySelector('#notebook')!;
    const math = {
      sources: nb.querySelectorAll('script[type^="math/tex"]').length,
      rendered: nb.querySelectorAll('span.MathJax, span.MathJax_CHTML, span.MathJax_SVG').length,
      errors: Array.from(nb.querySelectorAll('.MathJax_Error, [data-mathml*="<merror"], .MathJax .merror')).map((e) => e.textContent ?? ''),
    };
    return { cells, math, plotOutputs };
  });
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
    requireTool(this, chromiumMissing());
    const j = jupyterMissing();
    requireTool(this, j && `${j}: ${JUPYTER_INSTALL_HINT}`);
    requireTool(this, classicMissing());
    ensureBuilt(root);
    dir = uiRoot();
    fs.mkdirSync(path.join(dir, 'test', 'fixtures'), { recursive: true });
    fs.copyFileSync(FAILING_FIXTURE, path.join(dir, 'test', 'fixtures', path.basename(FAILING_FIXTURE)));
    const t0 = Date.now();
    server = await startJupyter('classic notebook', 'plotly', { rootDir: dir, env: { DDPM_WORKBOOK_MODE: 'quick' } });
    context = await launchChromium();
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
      const { cells } = await readClassic(page);
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
    } finally {
      await page.close();
      await shutdownKernels(server);
    }
  });
});
