/**
 * The workbook in JupyterLab's own interface: the project's JupyterLab 3.6 build
 * (lib/workbook/jupyterlab), served by Debian's jupyterlab_server, driven in headless Debian chromium.
 * Every notebook is opened, run with Run > Run All Cells (quick mode), and read back from the page:
 * every code cell ran in order with no error output, every Plotly figure drew data marks through
 * plotly's mime renderer, every formula was typeset by MathJax, and the console shows no error.
 * The notebooks executed there, signed, are then opened in the build WITHOUT plotly's renderer,
 * where the plots must draw from their text/html; and the failing fixture must show its error and stop.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { LabVariant, JupyterServer, classicMissing, labBuildMissing, labServerMissing, startJupyter } from '../lib/workbook/jupyterlab/server';
import { planLab } from '../lib/workbook/lab';
import { ensureBuilt, projectRoot, workbookNotebooks } from '../lib/workbook/runners/project';
import { jupyterMissing, pythonPath, JUPYTER_INSTALL_HINT } from '../lib/workbook/runners/kernel';
import { signNotebooks } from '../lib/workbook/runners/sign';
import { BUILD_TIMEOUT_MS, FAILING_CELL, FAILING_FIXTURE, tempDir } from './fixtures/quick-workbook';
import { CellView, MathView, chromiumMissing, expectCleanRun, launchChromium, plotOutputs, projectErrors, requireTool, since, uiRoot, shutdownKernels, watchConsole } from './notebook-ui';

const root = projectRoot();
/** Per notebook: quick mode takes 10-60 s through a kernel on the 2-core machine (README); this bounds a stuck one. */
const RUN_TIMEOUT_MS = 6 * 60 * 1000;

type Nb = { cells: { cell_type: string; source: string | string[]; outputs?: { output_type: string; data?: Record<string, unknown> }[] }[]; metadata: Record<string, unknown> };

/** Opens a notebook in JupyterLab (fresh workspace) and waits until its kernel is ready; returns the page and its console. */
async function openInLab(context: BrowserContext, server: JupyterServer, rel: string, waitKernel = true): Promise<{ page: Page; errors: string[]; http: string[] }> {
  const page = await context.newPage();
  const watched = watchConsole(page);
  // ?reset: a fresh workspace, so the previous notebook's tab (and kernel) is not restored
  await page.goto(`${server.notebookUrl(rel)}&reset`);
  await page.waitForFunction(() => document.body.dataset.ddpmLab === 'restored', null, { timeout: 120_000 });
  const kernel = await page.evaluate(async ([file, wait]) => {
    const lab = (window as unknown as { ddpmLab: any }).ddpmLab;
    for (let i = 0; i < 600 && !(lab.shell.currentWidget?.context?.path === file); i++) await new Promise((r) => setTimeout(r, 100));
    const panel = lab.shell.currentWidget;
    if (panel?.context?.path !== file) return `the open tab is ${panel?.context?.path ?? 'none'}, not ${file}`;
    await panel.context.ready;
    if (!wait) return 'tslab';
    await panel.sessionContext.ready;
    return panel.sessionContext.session?.kernel?.name ?? 'no kernel';
  }, [rel, waitKernel] as const);
  expect(kernel, `${rel}: kernel`).to.equal('tslab');
  return { page, ...watched };
}

/** Clicks Run > Run All Cells in JupyterLab's menu bar. */
async function runAll(page: Page): Promise<void> {
  await page.click('.lm-MenuBar-item:has-text("Run")');
  await page.click('.lm-Menu-item:has-text("Run All Cells")');
}

/** Waits until no cell shows [*] and the kernel is idle (twice in a row, 0.5 s apart). */
async function waitIdle(page: Page, timeoutMs: number): Promise<void> {
  await page.waitForFunction(
    () => {
      const w = window as unknown as { ddpmLab: any; __idleSince?: number };
      const panel = w.ddpmLab.shell.currentWidget;
      const busy = Array.from(panel.node.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).some((p) => /\[\*\]/.test((p as HTMLElement).textContent ?? ''));
      const idle = !busy && panel.sessionContext.session?.kernel?.status === 'idle';
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

/** The current notebook as the page shows it: code cells (prompt, outputs, figures), math, and the model's JSON. */
async function readLab(page: Page): Promise<{ cells: CellView[]; math: MathView; nb: Nb }> {
  // plots and formulas draw asynchronously after the outputs arrive: wait for both to settle (or time out; the asserts say what is missing)
  await page
    .waitForFunction(
      () => {
        const panel = (window as unknown as { ddpmLab: any }).ddpmLab.shell.currentWidget.node as HTMLElement;
        const plotsDone = Array.from(panel.querySelectorAll('.jp-RenderedPlotly, .ddpm-plot')).every((el) => el.querySelector('svg.main-svg') || /could not/.test(el.textContent ?? ''));
        const sources = panel.querySelectorAll('script[type^="math/tex"]').length;
        return plotsDone && panel.querySelectorAll('span.MathJax, span.MathJax_CHTML, span.MathJax_SVG').length >= sources;
      },
      null,
      { timeout: 60_000, polling: 250 },
    )
    .catch(() => undefined);
  return page.evaluate(() => {
    const panel = (window as unknown as { ddpmLab: any }).ddpmLab.shell.currentWidget;
    const node = panel.node as HTMLElement;
    const text = (o: { text?: string | string[] }) => (Array.isArray(o.text) ? o.text.join('') : (o.text ?? ''));
    // tfjs-backend-cpu's once-per-process advice to install tfjs-node (a warning, on stderr) is not an error
    const TFJS_BANNER = /\n?=+\nHi, looks like you are running TensorFlow\.js in Node\.js\.[^\n]*\n=+\n/;
    const cells = (panel.content.widgets as any[])
      .filter((w) => w.model.type === 'code')
      .map((w, index) => {
        const outputs = w.model.outputs.toJSON() as { output_type: string; name?: string; text?: string | string[]; ename?: string; evalue?: string; data?: Record<string, any> }[];
        const prompt = (w.node.querySelector('.jp-InputPrompt')?.textContent ?? '') as string;
        const m = /\[(\d+)\]/.exec(prompt);
        // tslab reports a failing cell on stderr only (no error message; see run_nbclient.py), which
        // JupyterLab shows as a stderr output: both count as the cell's error output
        const errorEl = Array.from(w.node.querySelectorAll('.jp-OutputArea-output')).find((el) => (el as HTMLElement).dataset.mimeType === 'application/vnd.jupyter.stderr') as HTMLElement | undefined;
        if (errorEl) errorEl.scrollIntoView();
        const box = errorEl?.getBoundingClientRect();
        const src = w.model.value.text as string;
        return {
          index,
          count: m ? Number(m[1]) : null,
          busy: /\[\*\]/.test(prompt),
          firstLine: src.split('\n')[0],
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
          expectedPoints: outputs.filter((o) => o.data && 'application/vnd.plotly.v1+json' in o.data).map((o) => (window as any).__ddpmPoints(o.data!['application/vnd.plotly.v1+json'].data)),
          plots: Array.from(w.node.querySelectorAll('.jp-RenderedPlotly, .ddpm-plot')).map((el: any) => ({
            svgs: el.querySelectorAll('svg.main-svg').length,
            dataMarks: el.querySelectorAll('svg.main-svg g.trace, svg.main-svg g.hm, svg.main-svg .heatmaplayer image, svg.main-svg .imagelayer image, svg.main-svg .pielayer .slice').length,
            traces: (el._fullData ?? []).length,
            points: (window as any).__ddpmPoints(el.data),
            text: (el.textContent ?? '').slice(0, 200),
          })),
        };
      });
    const math = {
      sources: node.querySelectorAll('script[type^="math/tex"]').length,
      rendered: node.querySelectorAll('span.MathJax, span.MathJax_CHTML, span.MathJax_SVG').length,
      errors: Array.from(node.querySelectorAll('.MathJax_Error, [data-mathml*="<merror"], .MathJax .merror')).map((e) => (e as HTMLElement).textContent ?? ''),
    };
    return { cells, math, nb: panel.context.model.toJSON() };
  }) as Promise<{ cells: (CellView & { errorShown: string })[]; math: MathView; nb: Nb }>;
}

/** Shuts every kernel of the server down (closing a tab leaves its kernel running). */

describe('the workbook in JupyterLab (headless Chromium)', function () {
  this.timeout(BUILD_TIMEOUT_MS);
  let context: BrowserContext;
  let dir: string;
  /** The runs' server (build/plotly), and the plain build's, which opens notebooks without starting a kernel. */
  let run: JupyterServer;
  const readers: Partial<Record<LabVariant, JupyterServer>> = {};
  const executed = new Map<string, Nb>();
  const timings: string[] = [];

  before(async function () {
    requireTool(this, chromiumMissing());
    const j = jupyterMissing();
    requireTool(this, j && `${j}: ${JUPYTER_INSTALL_HINT}`);
    requireTool(this, labServerMissing());
    requireTool(this, labBuildMissing('plotly') ?? labBuildMissing('plain'));
    ensureBuilt(root);
    dir = uiRoot();
    // where it sits in the project: it imports ../../dist/lib
    fs.mkdirSync(path.join(dir, 'test', 'fixtures'), { recursive: true });
    fs.copyFileSync(FAILING_FIXTURE, path.join(dir, 'test', 'fixtures', path.basename(FAILING_FIXTURE)));
    fs.mkdirSync(path.join(dir, 'executed'));
    const userDir = tempDir('ddpm-lab-user-');
    // a run must never save over the project's notebooks: autosave off in this user's settings
    const docmanager = path.join(userDir, 'user-settings', '@jupyterlab', 'docmanager-extension');
    fs.mkdirSync(docmanager, { recursive: true });
    fs.writeFileSync(path.join(docmanager, 'plugin.jupyterlab-settings'), JSON.stringify({ autosave: false }));
    const t0 = Date.now();
    const env = { DDPM_WORKBOOK_MODE: 'quick' };
    [run, readers.plain] = await Promise.all([
      startJupyter('JupyterLab', 'plotly', { rootDir: dir, userDir, env }),
      startJupyter('JupyterLab', 'plain', { rootDir: dir, userDir, env, startsKernel: false }),
    ]);
    context = await launchChromium();
    timings.push(`servers and browser up in ${since(t0)} s`);
  });

  after(async function () {
    await context?.close();
    await Promise.all([run, ...Object.values(readers)].map((s) => s?.stop()));
    if (timings.length) console.log(`      JupyterLab timings: ${timings.join('; ')}`);
  });

  for (const file of workbookNotebooks(root)) {
    const rel = `notebooks/${path.basename(file)}`;
    it(`${path.basename(file)}: Run All in JupyterLab runs every code cell without an error, plots drawn by plotly's renderer, formulas typeset, no console error`, async function () {
      this.timeout(RUN_TIMEOUT_MS + 120_000);
      const t0 = Date.now();
      const { page, errors, http } = await openInLab(context, run, rel);
      try {
        await runAll(page);
        await waitIdle(page, RUN_TIMEOUT_MS);
        const { cells, math, nb } = await readLab(page);
        expectCleanRun(rel, cells, math, projectErrors(errors, http), plotOutputs(nb));
        // what the rest of the suite opens without plotly's renderer: this run's own outputs, signed
        const out = path.join(dir, 'executed', path.basename(file));
        fs.writeFileSync(out, JSON.stringify(nb, null, 1));
        expect(signNotebooks([out]), `signing ${out}`).to.equal(null);
        executed.set(path.basename(file), nb);
        timings.push(`${path.basename(file, '.ipynb')} ${since(t0)} s`);
      } finally {
        await page.close();
        await shutdownKernels(run);
      }
    });
  }

  it('the failing fixture: Run All stops at the failing cell, whose error shows in its output area; the cell after it never runs', async function () {
    this.timeout(RUN_TIMEOUT_MS);
    const rel = `test/fixtures/${path.basename(FAILING_FIXTURE)}`;
    const { page } = await openInLab(context, run, rel);
    try {
      await runAll(page);
      await waitIdle(page, RUN_TIMEOUT_MS);
      const { cells } = (await readLab(page)) as unknown as { cells: (CellView & { errorShown: string })[] };
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
      await page.screenshot({ path: path.join(dir, 'failing.png') });
    } finally {
      await page.close();
      await shutdownKernels(run);
    }
  });

  it('without plotly\'s renderer, the notebooks executed above (signed) open with every plot drawn from its text/html, and their math typeset', async function () {
    if (executed.size === 0) this.skip();
    for (const [name, nb] of executed) {
      const rel = `executed/${name}`;
      const { page, errors, http } = await openInLab(context, readers.plain!, rel, false);
      try {
        const { cells, math } = await readLab(page);
        expectCleanRun(`${rel} (no plotly renderer)`, cells, math, projectErrors(errors, http), plotOutputs(nb));
        // the HTML fallback drew them, not a renderer that is not in this build
        expect(await page.locator('.jp-RenderedPlotly').count(), `${rel}: a plotly renderer output in the plain build`).to.equal(0);
      } finally {
        await page.close();
      }
    }
  });
});

describe('npm run lab picks a front end and says which', function () {
  this.timeout(120_000);
  const jupyterlabInstalled = () => spawnSync(pythonPath(), ['-c', 'import jupyterlab'], { stdio: 'ignore' }).status === 0;

  before(function () {
    const j = jupyterMissing();
    requireTool(this, j && `${j}: ${JUPYTER_INSTALL_HINT}`);
    requireTool(this, labServerMissing());
    requireTool(this, classicMissing());
  });

  it('without an installed JupyterLab, the project\'s own build is served by serve.py (built: no build step planned)', function () {
    if (jupyterlabInstalled()) this.skip(); // an installed JupyterLab comes first
    requireTool(this, labBuildMissing('plotly'));
    const plan = planLab();
    expect(plan).to.deep.include({ frontEnd: 'JupyterLab', source: 'project build' });
    expect(plan.build).to.equal(undefined);
    expect(plan.args[0]).to.equal(path.join(root, 'lib', 'workbook', 'jupyterlab', 'serve.py'));
    expect(plan.args[1]).to.equal(path.join(root, 'lib', 'workbook', 'jupyterlab', 'build', 'plotly'));
    expect(plan.args).to.include(`--notebook-dir=${root}`);
    expect(plan.message).to.match(/^Starting JupyterLab 3\.6\.8, the project's own build/);
  });

  it('an unbuilt project build is planned with its build step, or, when the build is declined, the classic notebook is started instead, saying how to build', function () {
    if (jupyterlabInstalled()) this.skip();
    // a checkout whose lab folder has no build: a temporary project with the real package.json, lib/ linked file by file
    const fake = tempDir('ddpm-lab-fresh-');
    fs.copyFileSync(path.join(root, 'package.json'), path.join(fake, 'package.json'));
    fs.mkdirSync(path.join(fake, 'lib', 'workbook', 'jupyterlab'), { recursive: true });
    for (const f of ['build.js', 'package.json', 'package-lock.json', 'serve.py']) fs.copyFileSync(path.join(root, 'lib', 'workbook', 'jupyterlab', f), path.join(fake, 'lib', 'workbook', 'jupyterlab', f));
    fs.symlinkSync(path.join(root, 'lib', 'workbook', 'jupyterlab', 'src'), path.join(fake, 'lib', 'workbook', 'jupyterlab', 'src'));
    // its own node_modules (kernel spec under its .cache), with the real tslab linked in
    fs.mkdirSync(path.join(fake, 'node_modules', '.bin'), { recursive: true });
    fs.symlinkSync(path.join(root, 'node_modules', 'tslab'), path.join(fake, 'node_modules', 'tslab'));
    fs.symlinkSync(path.join(root, 'node_modules', '.bin', 'tslab'), path.join(fake, 'node_modules', '.bin', 'tslab'));
    const offered = planLab([], pythonPath(), fake);
    expect(offered).to.deep.include({ frontEnd: 'JupyterLab', source: 'project build', build: 'plotly' });
    expect(offered.message).to.include('It is built first, once: npm ci in');
    const declined = planLab([], pythonPath(), fake, { buildConsent: false });
    expect(declined).to.deep.include({ frontEnd: 'classic notebook', source: 'classic notebook' });
    expect(declined.message).to.include('npm run lab -- --yes');
  });

  it('--classic starts the classic notebook even when a JupyterLab is there', function () {
    const plan = planLab([], pythonPath(), root, { classic: true });
    expect(plan).to.deep.include({ frontEnd: 'classic notebook', source: 'classic notebook' });
    expect(plan.args.slice(0, 2)).to.deep.equal(['-m', 'notebook']);
    expect(plan.message).to.match(/^As asked \(--classic\), starting the classic notebook/);
  });
});
