/**
 * The workbook in JupyterLab's own interface: the project's JupyterLab 3.6 build
 * (lib/workbook/jupyterlab), served by Debian's jupyterlab_server, driven in headless Debian chromium.
 * Every notebook is opened, run with Run > Run All Cells (quick mode), and read back from the page:
 * every code cell ran in order with no error output, every Plotly figure drew data marks through
 * plotly's mime renderer, every formula was typeset by MathJax, and the console shows no error;
 * the failing fixture must show its error and stop. (The build WITHOUT plotly's renderer, where plots
 * draw from their text/html, opens the executed, signed notebooks of out/: test/lab-out.test.ts.)
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import type { BrowserContext } from 'playwright-core';
import { JupyterServer, classicMissing, labBuildMissing, labServerMissing, startJupyter } from '../lib/workbook/jupyterlab/server';
import { planLab } from '../lib/workbook/lab';
import { ensureBuilt, projectRoot, workbookNotebooks } from '../lib/workbook/runners/project';
import { jupyterMissing, pythonPath, JUPYTER_INSTALL_HINT } from '../lib/workbook/runners/kernel';
import { BUILD_TIMEOUT_MS, FAILING_FIXTURE, tempDir } from './fixtures/quick-workbook';
import {
  CellView,
  LabPage,
  MathView,
  NotebookJson,
  closeInLab,
  expectCleanRun,
  expectFailingFixtureRun,
  labUserDir,
  launchUiBrowser,
  openInLab,
  openLabPage,
  plotOutputs,
  projectErrors,
  readLab,
  requireFrontEnd,
  requireTool,
  runAllInLab,
  since,
  shutdownKernels,
  startTogether,
  uiRoot,
  waitIdleInLab,
} from './notebook-ui';

const root = projectRoot();
/** Per notebook: quick mode takes 10-60 s through a kernel on the 2-core machine (README); this bounds a stuck one. */
const RUN_TIMEOUT_MS = 6 * 60 * 1000;

describe('the workbook in JupyterLab (headless Chromium)', function () {
  this.timeout(BUILD_TIMEOUT_MS);
  let context: BrowserContext;
  let server: JupyterServer;
  /** One JupyterLab page for every notebook: the app loads once, each notebook opens in it. */
  let lab: LabPage;
  let dir: string;
  const timings: string[] = [];

  before(async function () {
    requireFrontEnd(this, 'JupyterLab', ['plotly']);
    ensureBuilt(root);
    dir = uiRoot();
    const t0 = Date.now();
    [server, context] = await startTogether<[JupyterServer, BrowserContext]>([startJupyter('JupyterLab', 'plotly', { rootDir: dir, userDir: labUserDir(), env: { DDPM_WORKBOOK_MODE: 'quick' } }), launchUiBrowser()]);
    lab = await openLabPage(context, server);
    timings.push(`server, browser and JupyterLab up in ${since(t0)} s`);
  });

  after(async function () {
    await context?.close();
    await server?.stop();
    if (timings.length) console.log(`      JupyterLab timings: ${timings.join('; ')}`);
  });

  /** Opens rel, runs it with Run All, and reads the page back (and shoots it to screenshot, when given); then closes it and ends its kernel. */
  async function runInLab(rel: string, screenshot?: string): Promise<{ cells: CellView[]; math: MathView; nb: NotebookJson; errors: string[] }> {
    lab.take(); // what the page logged before this notebook is not its
    await openInLab(lab, rel);
    try {
      await runAllInLab(lab);
      await waitIdleInLab(lab, RUN_TIMEOUT_MS);
      const read = await readLab(lab);
      if (screenshot) await lab.page.screenshot({ path: screenshot });
      const { errors, http } = lab.take();
      return { ...read, errors: projectErrors(errors, http) };
    } finally {
      await closeInLab(lab);
      await shutdownKernels(server);
    }
  }

  for (const file of workbookNotebooks(root)) {
    const rel = `notebooks/${path.basename(file)}`;
    it(`${path.basename(file)}: Run All in JupyterLab runs every code cell without an error, plots drawn by plotly's renderer, formulas typeset, no console error`, async function () {
      this.timeout(RUN_TIMEOUT_MS + 120_000);
      const t0 = Date.now();
      const { cells, math, nb, errors } = await runInLab(rel);
      expectCleanRun(rel, cells, math, errors, plotOutputs(nb));
      timings.push(`${path.basename(file, '.ipynb')} ${since(t0)} s`);
    });
  }

  it('the failing fixture: Run All stops at the failing cell, whose error shows in its output area; the cell after it never runs', async function () {
    this.timeout(RUN_TIMEOUT_MS);
    // the page as docs/figures/jupyterlab-failing-cell.png shows it (taken here, into the server's temporary root)
    expectFailingFixtureRun((await runInLab(`test/fixtures/${path.basename(FAILING_FIXTURE)}`, path.join(dir, 'failing.png'))).cells);
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

describe("the project's JupyterLab server cleans up after itself", function () {
  this.timeout(120_000);

  before(function () {
    requireTool(this, labServerMissing());
    requireTool(this, labBuildMissing('plain'));
  });

  it('a stopped server leaves nothing in its temporary folder (jupyter_core made a config folder per server there and never removed it)', async () => {
    // a private TMPDIR: the other parts of npm test start servers into the shared one meanwhile
    const tmp = tempDir('ddpm-lab-tmp-');
    const server = await startJupyter('JupyterLab', 'plain', { rootDir: tempDir('ddpm-lab-root-'), userDir: tempDir('ddpm-lab-user-'), startsKernel: false, env: { TMPDIR: tmp } });
    let during: string[];
    try {
      during = fs.readdirSync(tmp);
    } finally {
      await server.stop();
    }
    expect(during, 'what the running server made in TMPDIR (it uses it: else this test would not see the folder)').to.satisfy((names: string[]) => names.some((n) => n.startsWith('jupyter-clean-cfg-')));
    expect(fs.readdirSync(tmp), 'left in TMPDIR after stop()').to.deep.equal([]);
  });
});
