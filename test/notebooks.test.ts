/**
 * The workbook's notebooks as tests: both runners must execute every notebooks/*.ipynb in quick
 * mode, and both must catch tslab's silent failures (proved on a fixture whose middle cell fails).
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import { runInProcess } from '../lib/workbook/runners/inprocess';
import { JUPYTER_INSTALL_HINT, jupyterDataDir, jupyterMissing, runWithKernel } from '../lib/workbook/runners/kernel';
import { runChild } from '../lib/workbook/runners/spawn';
import { Notebook, committedProblems, joinSource, readNotebook } from '../lib/workbook/runners/nbformat';
import { ensureBuilt, projectRoot, workbookNotebooks } from '../lib/workbook/runners/project';
import { NotebookRun, describeFailure, errorLine, lateCheckFailure } from '../lib/workbook/runners/types';
import { planLab } from '../lib/workbook/lab';
import { parseArgs } from '../lib/workbook/notebooks';
import { spawnSync } from 'child_process';
import { UNetDenoiser, loadMnist, namedSchedule, saveCheckpoint, train, useBestBackend } from '../lib';
import { useCpu } from './support';
import { BUILD_TIMEOUT_MS, FAILING_CELL, FAILING_FIXTURE, FIXTURES, kernelWorkbookRuns, quickWorkbook, tempDir, wantKernelPass } from './fixtures/quick-workbook';

const root = projectRoot();
const notebooks = workbookNotebooks(root);
const name = (f: string) => path.basename(f, '.ipynb');
const allText = (nb: Notebook) =>
  nb.cells
    .flatMap((c) => c.outputs ?? [])
    .map((o) => (o.output_type === 'stream' ? joinSource(o.text) : o.output_type === 'display_data' ? String(o.data['text/plain']) : ''))
    .join('');

/** What both runners must report for the failing fixture. */
function expectFailingFixture(run: NotebookRun): void {
  expect(run.ok, 'the fixture has a failing check').to.equal(false);
  expect(run.failure).to.include(FAILING_CELL);
  expect(run.failure?.status).to.equal('error');
  expect(run.failure?.message).to.include('one plus one is three').and.include('expected 2 to equal 3');
  const described = describeFailure(run);
  expect(described).to.include('failing.ipynb').and.include('cell 3 (code cell 2)').and.include(FAILING_CELL.firstLine);
  const executed = readNotebook(run.executed);
  const text = allText(executed);
  expect(text, 'DDPM_WORKBOOK_MODE comes from the caller').to.include('mode quick');
  expect(text).to.include('✓ two plus two is four');
  expect(text, 'the runner stops at the failing cell').to.not.include('code cell 3 ran');
  expect(text, 'the failing cell stops at the failure').to.not.include('after the failing check');
  // the plot before the failure is one output holding the three-type bundle
  const displays = executed.cells[1].outputs?.filter((o) => o.output_type === 'display_data') ?? [];
  expect(displays).to.have.length(1);
  const d = displays[0];
  expect(d.output_type === 'display_data' && Object.keys(d.data).sort()).to.deep.equal(['application/vnd.plotly.v1+json', 'text/html', 'text/plain']);
  expect(executed.cells[3].outputs ?? []).to.have.length(0);
}

describe('the workbook notebooks', function () {
  this.timeout(BUILD_TIMEOUT_MS);
  wantKernelPass();

  it(`committed notebooks (${notebooks.length} in notebooks/, plus the fixtures) carry no outputs and null execution counts`, () => {
    const fixtures = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.ipynb')).map((f) => path.join(FIXTURES, f));
    const all = [...fs.readdirSync(path.join(root, 'notebooks')).filter((f) => f.endsWith('.ipynb')).map((f) => path.join(root, 'notebooks', f)), ...fixtures];
    expect(fixtures.length).to.be.at.least(2);
    for (const file of all) expect(committedProblems(readNotebook(file)), path.relative(root, file)).to.deep.equal([]);
    // the rule itself catches both kinds of leftovers
    const dirty = readNotebook(FAILING_FIXTURE);
    dirty.cells[1].execution_count = 4;
    dirty.cells[2].outputs = [{ output_type: 'stream', name: 'stdout', text: 'x' }];
    expect(committedProblems(dirty)).to.have.length(2);
  });

  it('notebooks follow the conventions: tslab kernelspec, a "parameters" cell reading DDPM_WORKBOOK_MODE', () => {
    for (const file of [...notebooks, path.join(FIXTURES, 'workbook.ipynb')]) {
      const nb = readNotebook(file);
      expect(nb.metadata.kernelspec?.name, `${name(file)}: kernelspec`).to.equal('tslab');
      const params = nb.cells.filter((c) => c.metadata.tags?.includes('parameters'));
      expect(params, `${name(file)}: one cell tagged "parameters"`).to.have.length(1);
      expect(joinSource(params[0].source), `${name(file)}: the parameters cell reads the mode`).to.include('DDPM_WORKBOOK_MODE');
    }
  });

  it('notebooks import the workbook helpers from dist/lib/workbook and define no copy of one', () => {
    // names the workbook exports, and the names the notebooks' own copies had before they moved there
    const helpers = [...Object.keys(require('../lib/workbook')), 'meanSe', 'meanSd', 'varianceSe', 'mosaic', 'imageFigure', 'lossFigure', 'liveFigure', 'mixFigure', 'lossTraces', 'scatter', 'cannotTrainUNet', 'inverse'];
    for (const file of notebooks) {
      const code = readNotebook(file).cells.filter((c) => c.cell_type === 'code').map((c) => joinSource(c.source)).join('\n');
      expect(code, `${name(file)} imports the workbook`).to.match(/from '\.\.\/dist\/lib\/workbook'/);
      const libImport = /import \{([^}]*)\} from '\.\.\/dist\/lib';/.exec(code)?.[1] ?? '';
      for (const n of ['check', 'plot']) expect(libImport, `${name(file)}: ${n} comes from the workbook, not the library`).to.not.match(new RegExp(`\\b${n}\\b`));
      for (const h of helpers) {
        expect(code, `${name(file)} defines its own ${h}`).to.not.match(new RegExp(`(function|const|let)\\s+${h}\\s*[=(<]`));
      }
    }
  });

  describe('in-process runner (tslab executor, one child process per notebook)', () => {
    before(() => ensureBuilt(root));

    it('stops at the fixture\'s failing middle cell and names the notebook, the cell and its first line', async () => {
      expectFailingFixture(await runInProcess(FAILING_FIXTURE, { mode: 'quick', executed: path.join(tempDir('ddpm-fail-'), 'failing.ipynb') }));
    });

    it('fails a notebook that outlives its time limit (the child is killed), saying so', async () => {
      const run = await runInProcess(FAILING_FIXTURE, { mode: 'quick', executed: path.join(tempDir('ddpm-slow-'), 'f.ipynb'), timeoutSeconds: 0.3 });
      expect(run.ok).to.equal(false);
      expect(run.failure).to.include({ status: 'timeout', cell: 0 });
      expect(describeFailure(run)).to.include('timed out (the runner process (limit 0.3 s))');
    });

    it('runs the fixture chapter green: checks recorded, plots as bundles, update() replaced in place', async () => {
      const b = (await quickWorkbook()).notebooks.find((n) => n.name === 'workbook');
      expect(b, 'the fixture chapter was built').to.not.equal(undefined);
      expect(b!.run.ok, describeFailure(b!.run)).to.equal(true);
      expect(b!.run.checks.map((c) => [c.description, c.ok])).to.deep.equal([
        ['alphaBar_t equals the running product of (1 - beta_s)', true],
        ['an async check is awaited', true],
      ]);
      const nb = readNotebook(b!.run.executed);
      const plots = nb.cells[5].outputs?.filter((o) => o.output_type === 'display_data') ?? [];
      expect(plots, 'two plots; the update redrew the first in place').to.have.length(2);
      const first = plots[0].output_type === 'display_data' ? plots[0].data : {};
      expect(first['text/plain']).to.match(/^Plotly figure "abar_t": 1 trace \(scatter\), \d+ points$/);
      expect(nb.cells.filter((c) => c.cell_type === 'code').map((c) => c.execution_count)).to.deep.equal([1, 2, 3, 4]);
    });

    it('07_mnist samples a run of ddpm train named by DDPM_MNIST_RUN instead of training, saying so; it refuses a run that is not an MNIST U-Net before sampling', async function () {
      const mnist = path.join(root, 'notebooks', '07_mnist.ipynb');
      if (!fs.existsSync(mnist)) this.skip();
      const dir = tempDir('ddpm-07-run-');
      // two runs saved the way `ddpm train` saves one (onCheckpoint -> saveCheckpoint), each what quick mode
      // itself trains (the tiny U-Net, 10 steps of 8 digits at lr 1e-2, T = 50), so that its checks apply
      const saveRun = async (out: string, data: string, steps: number) => {
        const model = new UNetDenoiser({ baseChannels: 8, channelMults: [1], numResBlocks: 1, attention: false, groups: 4, seed: 3 });
        const schedule = namedSchedule('linear', 50);
        const { images } = loadMnist({ split: 'train', limit: 8 });
        try {
          await train({
            model, schedule, data: images, steps, batchSize: 8, lr: 1e-2, seed: 1, emaDecay: 0.5,
            onCheckpoint: (c) => saveCheckpoint(out, { model, ema: c.ema, optimizer: c.optimizer, schedule, step: c.step, seed: 1, rngState: c.rngState, losses: c.losses, skipped: c.skipped, train: { data, batch: 8, lr: 1e-2, conditional: false } }).then(() => undefined),
          });
        } finally {
          images.dispose();
          model.dispose();
        }
      };
      const good = path.join(dir, 'mnist-run');
      const wrong = path.join(dir, 'moons-run');
      // on wasm, as the notebook trains (the plain-JavaScript cpu backend takes minutes for these convolutions)
      await useBestBackend({ prefer: 'wasm' });
      try {
        await saveRun(good, 'mnist', 10);
        await saveRun(wrong, 'moons', 1); // refused before it is used: one step is enough
      } finally {
        await useCpu();
      }
      const loaded = await runInProcess(mnist, { mode: 'quick', executed: path.join(dir, 'loaded.ipynb'), env: { DDPM_MNIST_RUN: good } });
      expect(loaded.ok, describeFailure(loaded)).to.equal(true);
      const text = allText(readNotebook(loaded.executed));
      expect(text).to.include(`loaded ${good} (not trained here): 10 steps of 8 digits, lr 0.01, by ddpm train on wasm`).and.include('sampling with its EMA weights');
      expect(text, 'nothing trained in the notebook').to.not.match(/^trained \d+ steps/m);
      expect(loaded.checks.map((c) => c.description), 'the training checks are not made for a loaded run').to.not.include('every training loss is finite');
      expect(loaded.checks.map((c) => c.description)).to.include('DDIM samples are finite and in [-1, 1]');
      const refused = await runInProcess(mnist, { mode: 'quick', executed: path.join(dir, 'refused.ipynb'), env: { DDPM_MNIST_RUN: wrong } });
      expect(refused.ok).to.equal(false);
      expect(refused.failure?.message).to.include(`DDPM_MNIST_RUN must be a run of ddpm train --data mnist --model unet (unconditional), got ${wrong}: trained on "moons"`);
      expect(refused.failure?.firstLine, 'refused in the cell that loads it').to.match(/run of DDPM_MNIST_RUN/);
    });

    for (const file of notebooks) {
      it(`${name(file)} runs green in quick mode`, async () => {
        const b = (await quickWorkbook()).notebooks.find((n) => n.name === name(file));
        expect(b!.run.ok, describeFailure(b!.run)).to.equal(true);
        expect(b!.run.checks.length, `${name(file)} verifies its claims with check(...)`).to.be.above(0);
      });
    }
  });

  describe('Jupyter kernel runner (nbclient + the tslab kernel)', () => {
    before(function () {
      const missing = jupyterMissing();
      if (missing === null) return;
      if (process.env.CI === 'true') throw new Error(`under CI the kernel runner must run, but ${missing}: ${JUPYTER_INSTALL_HINT}`);
      console.log(`    (skipped: ${missing}; to run these, ${JUPYTER_INSTALL_HINT})`);
      this.skip();
    });

    it('stops at the fixture\'s failing middle cell (reply status "error", tslab\'s only signal) and names it', async () => {
      expectFailingFixture(await runWithKernel(FAILING_FIXTURE, { mode: 'quick', executed: path.join(tempDir('ddpm-fail-'), 'failing.ipynb') }));
    });

    it('fails on an async check nobody awaited (its output is lost between requests; the kernel\'s check registry is not)', async () => {
      const run = await runWithKernel(path.join(FIXTURES, 'async-unawaited.ipynb'), { mode: 'quick', executed: path.join(tempDir('ddpm-async-'), 'a.ipynb') });
      expect(run.ok).to.equal(false);
      expect(run.failure).to.include({ cell: 3, codeCell: 2, status: 'async-error' });
      expect(run.failure?.message).to.include('async false claim, not awaited').and.include('expected 1 to equal 2');
      expect(run.checks.map((c) => [c.description, c.ok])).to.deep.equal([
        ['two plus two is four', true],
        ['async false claim, not awaited', false],
      ]);
    });

    for (const file of notebooks) {
      it(`${name(file)} runs green in quick mode`, async () => {
        const run = (await kernelWorkbookRuns()).get(file)!;
        expect(run.ok, describeFailure(run)).to.equal(true);
        expect(run.checks.length).to.be.above(0);
      });
    }
  });

  describe('the commands around the runners', () => {
    it('lateCheckFailure blames the cell holding a failed check\'s description, else the last code cell', () => {
      const nb = readNotebook(FAILING_FIXTURE);
      const ok = { description: 'two plus two is four', ok: true, seconds: 0 };
      expect(lateCheckFailure(nb, [ok])).to.equal(undefined);
      const bad = { description: 'one plus one is three (false on purpose: the runners must stop here)', ok: false, seconds: 0, error: 'expected 2 to equal 3' };
      expect(lateCheckFailure(nb, [ok, bad])).to.include({ ...FAILING_CELL, status: 'async-error' });
      const elsewhere = { description: 'built at run time', ok: false, seconds: 0, error: 'x' };
      expect(lateCheckFailure(nb, [elsewhere])).to.include({ cell: 4, codeCell: 3 });
    });

    it('ensureBuilt rebuilds for a lib/ source newer than dist/, not for .ts files under a node_modules inside lib/ (the project\'s JupyterLab)', () => {
      const fake = tempDir('ddpm-built-');
      const write = (rel: string, ageSeconds: number) => {
        fs.mkdirSync(path.dirname(path.join(fake, rel)), { recursive: true });
        fs.writeFileSync(path.join(fake, rel), '');
        const t = new Date(Date.now() - ageSeconds * 1000);
        fs.utimesSync(path.join(fake, rel), t, t);
      };
      write('lib/index.ts', 300);
      write('dist/lib/index.js', 200);
      write('lib/workbook/jupyterlab/node_modules/pkg/src/a.ts', 100); // installed after the build
      expect(ensureBuilt(fake), 'a package source under node_modules is not the library').to.equal(false);
      write('lib/index.ts', 50);
      // a stale build is rebuilt: here tsc finds no compiler in the fake checkout, and says the build failed
      expect(() => ensureBuilt(fake)).to.throw(/npm run build failed/);
    });

    it('errorLine picks what went wrong out of tslab\'s stderr', () => {
      expect(errorLine('/x/check.js:39\n    throw new Error(...)\n    ^\n\nError: a: expected 2 to equal 3\n    at fail')).to.equal('Error: a: expected 2 to equal 3');
      expect(errorLine('3:7 - Cannot find name \'x\'.\n')).to.equal("3:7 - Cannot find name 'x'.");
      expect(errorLine('UnhandledPromiseRejection: TypeError: boom')).to.equal('UnhandledPromiseRejection: TypeError: boom');
    });

    it('npm run notebooks parses its arguments, rejecting unknown ones by name', () => {
      expect(parseArgs(['a.ipynb', '--runner=nbclient', '--echo'])).to.deep.include({ notebooks: [path.resolve('a.ipynb')], mode: 'quick', runner: 'nbclient', echo: true, outDir: path.resolve('out/quick') });
      expect(parseArgs(['--full'])).to.deep.include({ notebooks: undefined, mode: 'full', outDir: path.resolve('out') });
      expect(() => parseArgs(['--runner=papermill'])).to.throw('--runner must be in-process or nbclient, got "papermill"');
      expect(() => parseArgs(['--fast'])).to.throw(/unknown option --fast/);
    });

    it('npm run lab registers the project\'s tslab kernel and says which front end it starts (--print starts nothing)', function () {
      const missing = jupyterMissing();
      if (missing !== null) {
        if (process.env.CI === 'true') throw new Error(`under CI this must run, but ${missing}: ${JUPYTER_INSTALL_HINT}`);
        this.skip();
      }
      const plan = planLab();
      expect(plan.frontEnd).to.be.oneOf(['JupyterLab', 'classic notebook']);
      expect(plan.args).to.include(`--notebook-dir=${root}`);
      const spec = JSON.parse(fs.readFileSync(path.join(plan.env.JUPYTER_PATH.split(path.delimiter)[0], 'kernels', 'tslab', 'kernel.json'), 'utf8'));
      expect(spec).to.deep.include({ display_name: 'TypeScript', language: 'typescript' });
      expect(spec.argv[0]).to.equal(path.join(root, 'node_modules', '.bin', 'tslab'));
      ensureBuilt(root);
      const r = spawnSync(process.execPath, [path.join(root, 'dist', 'lib', 'workbook', 'lab.js'), '--print'], { encoding: 'utf8', timeout: 60_000 });
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.match(plan.frontEnd === 'JupyterLab' ? /^Starting JupyterLab/ : /starting the classic notebook \(jupyter notebook\)/);
      expect(r.stdout).to.include(`JUPYTER_PATH=${plan.env.JUPYTER_PATH}`);
    });

    it('three processes registering the tslab kernel at once all succeed and leave one whole spec (npm test\'s parts start side by side)', async function () {
      const missing = jupyterMissing();
      if (missing !== null) {
        if (process.env.CI === 'true') throw new Error(`under CI this must run, but ${missing}: ${JUPYTER_INSTALL_HINT}`);
        this.skip();
      }
      // a checkout of its own (its node_modules holds links to this one's tslab), so its spec starts unregistered
      const fake = tempDir('ddpm-kernelspec-');
      fs.mkdirSync(path.join(fake, 'node_modules', '.bin'), { recursive: true });
      fs.symlinkSync(path.join(root, 'node_modules', 'tslab'), path.join(fake, 'node_modules', 'tslab'));
      fs.symlinkSync(path.join(root, 'node_modules', '.bin', 'tslab'), path.join(fake, 'node_modules', '.bin', 'tslab'));
      const kernel = path.join(root, 'lib', 'workbook', 'runners', 'kernel.ts');
      const script = `require(${JSON.stringify(kernel)}).ensureKernelSpec(${JSON.stringify(fake)})`;
      const runs = await Promise.all([0, 1, 2].map(() => runChild(process.execPath, ['-r', 'tsx/cjs', '-e', script], { env: process.env, timeoutMs: 120_000, killSignal: 'SIGKILL' })));
      for (const r of runs) expect(r.code, r.stderr).to.equal(0);
      const kernels = path.join(jupyterDataDir(fake), 'kernels');
      expect(fs.readdirSync(kernels)).to.deep.equal(['tslab']);
      const spec = JSON.parse(fs.readFileSync(path.join(kernels, 'tslab', 'kernel.json'), 'utf8'));
      expect(spec.argv[0]).to.equal(path.join(fake, 'node_modules', '.bin', 'tslab'));
      // and no private install prefix is left behind beside the project's Jupyter prefix
      expect(fs.readdirSync(path.resolve(jupyterDataDir(fake), '..', '..', '..'))).to.deep.equal(['jupyter']);
    });
  });
});
