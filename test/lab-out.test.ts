/**
 * Opened, not only run: the executed notebooks that `npm start` writes into out/ (the shared quick
 * build; lib/workbook/site/build.ts signs them) open in the project's JupyterLab with no kernel and
 * nothing re-run: every one in the build without plotly's renderer (plots drawn from their
 * text/html, which needs the signature), the chapter with the most figures in the build with it
 * (plotly's renderer is a safe one: it draws trusted or not). Read from the page's DOM: every Plotly
 * figure drew its data marks, every formula is typeset, no console error, and the notebook is
 * trusted (its text/html outputs kept their scripts). Negative control: the same notebook with its
 * signature broken opens untrusted in the build without the renderer, and its text/html plots do not
 * draw.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import type { BrowserContext } from 'playwright-core';
import { JupyterServer, LabVariant, startJupyter } from '../lib/workbook/jupyterlab/server';
import { readNotebook } from '../lib/workbook/runners/nbformat';
import { projectRoot } from '../lib/workbook/runners/project';
import { BUILD_TIMEOUT_MS, quickWorkbook, tempDir } from './fixtures/quick-workbook';
import { LabPage, expectCleanRun, labUserDir, launchUiBrowser, startTogether, openInLab, openLabPage, plotOutputs, projectErrors, readLab, requireFrontEnd, since } from './notebook-ui';

const VARIANTS: LabVariant[] = ['plotly', 'plain'];
/** The negative control's notebook, and the one the plotly build opens: the chapter with the most figures. */
const CONTROL = '01_forward_diffusion';

describe('executed notebooks from out/ open in JupyterLab with their plots drawn (opened, not run)', function () {
  this.timeout(BUILD_TIMEOUT_MS);
  let context: BrowserContext;
  const servers: Partial<Record<LabVariant, JupyterServer>> = {};
  const labs: Partial<Record<LabVariant, LabPage>> = {};
  let names: string[] = [];
  const timings: string[] = [];

  before(async function () {
    requireFrontEnd(this, 'JupyterLab', VARIANTS);
    const b = await quickWorkbook();
    names = b.notebooks.map((n) => n.name);
    // the server's root as in a checkout after `npm start`: out/ beside node_modules/ (the plots'
    // <base_url>files/node_modules/plotly.js-dist-min); a copy, so that nothing written there reaches the build
    const dir = tempDir('ddpm-lab-out-');
    fs.cpSync(b.outDir, path.join(dir, 'out'), { recursive: true });
    fs.symlinkSync(path.join(projectRoot(), 'node_modules'), path.join(dir, 'node_modules'));
    // the control: the same notebook, one metadata key added after signing, so its signature no longer matches
    const control = readNotebook(path.join(dir, 'out', `${CONTROL}.ipynb`)) as unknown as { metadata: Record<string, unknown> };
    control.metadata.ddpm_signature_broken = true;
    fs.mkdirSync(path.join(dir, 'unsigned'));
    fs.writeFileSync(path.join(dir, 'unsigned', `${CONTROL}.ipynb`), JSON.stringify(control, null, 1));
    const t0 = Date.now();
    const userDir = labUserDir();
    const started = await startTogether<(JupyterServer | BrowserContext)[]>([
      ...VARIANTS.map((v) => startJupyter('JupyterLab', v, { rootDir: dir, userDir, startsKernel: false })),
      launchUiBrowser(),
    ]);
    VARIANTS.forEach((v, k) => (servers[v] = started[k] as JupyterServer));
    context = started[VARIANTS.length] as BrowserContext;
    await Promise.all(VARIANTS.map(async (v) => (labs[v] = await openLabPage(context, servers[v]!))));
    timings.push(`servers, browser and both JupyterLabs up in ${since(t0)} s`);
    openAll();
  });

  after(async function () {
    await context?.close();
    await Promise.all(Object.values(servers).map((s) => s?.stop()));
    if (timings.length) console.log(`      out/ in JupyterLab timings: ${timings.join('; ')}`);
  });

  /** Opens rel (a path under the server's root) in the variant's page, without a kernel, and reads it back. */
  async function open(variant: LabVariant, rel: string, waitPlots = true) {
    const lab = labs[variant]!;
    const t0 = Date.now();
    lab.take(); // what the page logged before this notebook is not its
    await openInLab(lab, rel, false);
    const read = await readLab(lab, waitPlots);
    const { errors, http } = lab.take();
    const renderers = await lab.page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedPlotly').count();
    return { ...read, rel, errors: projectErrors(errors, http), renderers, seconds: since(t0) };
  }
  type Opened = Awaited<ReturnType<typeof open>>;

  /**
   * What each build opens. The plain build: every notebook of out/, each plot drawn from its
   * text/html, which only a trusted (signed) notebook keeps. The plotly build (what `npm run lab`
   * serves): the chapter with the most figures. Its renderer draws from the output's JSON, trusted or
   * not, and test/jupyterlab.test.ts already reads every figure of every notebook drawn by it.
   */
  const opensIn = (v: LabVariant) => (v === 'plain' ? names : names.filter((n) => n === CONTROL));

  /**
   * Each build's page opens its notebooks one after another, the two pages at the same time (each
   * page is its own renderer process: on 2 cores they take about the time of one); the tests below
   * check what each page showed. The plain build then opens the control.
   */
  const opened: Partial<Record<LabVariant, Promise<Opened[]>>> = {};
  let control: Promise<Opened> | null = null;
  function openAll(): void {
    for (const v of VARIANTS) {
      opened[v] = (async () => {
        const all: Opened[] = [];
        for (const name of opensIn(v)) all.push(await open(v, `out/${name}.ipynb`));
        return all;
      })();
      opened[v]!.catch(() => undefined); // its test reports a rejection
    }
    control = opened.plain!.then(() => open('plain', `unsigned/${CONTROL}.ipynb`, false));
    control.catch(() => undefined);
  }

  for (const variant of VARIANTS) {
    const how = variant === 'plotly' ? "plotly's mime renderer" : 'their text/html (no plotly renderer in this build)';
    const which = variant === 'plain' ? 'every notebook of out/ opens' : `${CONTROL} from out/ opens`;
    it(`${variant} build: ${which} trusted, every plot drawn by ${how}, every formula typeset, no console error`, async function () {
      expect(names.length, 'notebooks in out/').to.be.above(1);
      expect(names, 'the chapter the plotly build opens is in out/').to.include(CONTROL);
      const all = await opened[variant]!;
      expect(all.map((o) => o.rel)).to.deep.equal(opensIn(variant).map((n) => `out/${n}.ipynb`));
      for (const { cells, math, nb, errors, renderers, rel, seconds } of all) {
        const where = `${rel} (${variant} build)`;
        // the file's own outputs and execution counts (1, 2, ...: a clean run) are what the page must show
        expectCleanRun(where, cells, math, errors, plotOutputs(nb));
        expect(cells.filter((c) => c.trusted !== true).map((c) => c.index + 1), `${where}: code cells not trusted`).to.deep.equal([]);
        if (variant === 'plain') {
          expect(renderers, `${where}: a plotly renderer output in the plain build`).to.equal(0);
          const lost = cells.filter((c) => c.htmlScripts.inPage < c.htmlScripts.inOutputs).map((c) => `cell ${c.index + 1}: ${c.htmlScripts.inPage} of ${c.htmlScripts.inOutputs}`);
          expect(lost, `${where}: text/html outputs that lost their scripts`).to.deep.equal([]);
        } else {
          expect(renderers, `${where}: figures drawn by plotly's renderer`).to.equal(plotOutputs(nb));
        }
        timings.push(`${variant} ${path.basename(rel, '.ipynb')} ${seconds} s`);
      }
    });
  }

  it(`negative control: ${CONTROL} with its signature broken opens untrusted in the plain build, its text/html plots stripped of their scripts and not drawn`, async function () {
    // read once its math is typeset (the plots must not draw: there is nothing to wait for), after the signed notebooks
    const { cells, math, nb } = await control!;
    expect(plotOutputs(nb), 'the control has plots to not draw').to.be.above(0);
    expect(cells.filter((c) => c.trusted !== false).map((c) => c.index + 1), 'code cells trusted without a signature').to.deep.equal([]);
    const scripts = cells.reduce((n, c) => n + c.htmlScripts.inOutputs, 0);
    expect(scripts, "the control's text/html outputs hold scripts").to.be.above(0);
    expect(cells.reduce((n, c) => n + c.htmlScripts.inPage, 0), 'scripts the page kept of untrusted outputs').to.equal(0);
    expect(cells.flatMap((c) => c.plots).filter((p) => p.svgs > 0).length, 'plots drawn in an untrusted notebook').to.equal(0);
    // the page did render it: its math is typeset, as in the signed copy
    expect(math.raw, 'markdown with raw TeX left').to.deep.equal([]);
    expect(math.sources, 'formulas found').to.be.above(0);
    expect(math.rendered).to.equal(math.sources);
  });
});
