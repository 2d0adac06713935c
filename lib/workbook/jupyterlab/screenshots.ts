/**
 * Makes docs/figures/jupyterlab-*.png: notebooks run in the project's JupyterLab (build/plotly) in
 * headless Debian chromium, quick mode, each shot scrolled to a figure.
 *   node -r tsx/cjs lib/workbook/jupyterlab/screenshots.ts
 * (a maintainer's tool, not part of the tests: it writes into docs/figures/).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { launchChromium } from '../browser';
import { ensureBuilt, projectRoot } from '../runners/project';
import { startJupyter, workbookServerRoot } from './server';

const SHOTS = [
  { notebook: '05_training_2d.ipynb', figure: 0, file: 'jupyterlab-05-training.png' },
  { notebook: '01_forward_diffusion.ipynb', figure: 0, file: 'jupyterlab-01-forward.png', above: 420 },
  // notebook 08's fourth figure: the exact class posterior of guided samples over w, with error bars
  { notebook: '08_guidance.ipynb', figure: 3, file: 'jupyterlab-08-guidance.png', above: 200 },
];

async function main(): Promise<void> {
  const root = projectRoot();
  ensureBuilt(root);
  // a temporary root with copies of the notebooks (nothing is saved into the project's)
  const dir = workbookServerRoot(fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-shots-')), root);
  const server = await startJupyter('JupyterLab', 'plotly', { rootDir: dir, userDir: path.join(dir, '.lab-user'), env: { DDPM_WORKBOOK_MODE: 'quick' } });
  const browser = await launchChromium({ viewport: { width: 1280, height: 860 } });
  try {
    for (const shot of SHOTS) {
      const page = await browser.newPage();
      await page.goto(`${server.notebookUrl(`notebooks/${shot.notebook}`)}&reset`);
      await page.waitForFunction(() => document.body.dataset.ddpmLab === 'restored', null, { timeout: 120_000 });
      await page.waitForSelector('.jp-NotebookPanel .jp-Cell', { timeout: 60_000 });
      await page.evaluate(async () => (window as unknown as { ddpmLab: any }).ddpmLab.shell.currentWidget.sessionContext.ready);
      await page.click('.lm-MenuBar-item:has-text("Run")');
      await page.click('.lm-Menu-item:has-text("Run All Cells")');
      await page.waitForFunction(
        () => {
          const panel = (window as unknown as { ddpmLab: any }).ddpmLab.shell.currentWidget;
          const busy = Array.from(panel.node.querySelectorAll('.jp-InputPrompt')).some((p: any) => /\[\*\]/.test(p.textContent));
          return !busy && panel.sessionContext.session?.kernel?.status === 'idle';
        },
        null,
        { timeout: 600_000, polling: 500 },
      );
      await page.waitForTimeout(1500);
      await page.evaluate(
        ([i, above]) => {
          const figs = Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-RenderedPlotly')) as HTMLElement[];
          const fig = figs[i];
          const scroller = fig.closest('.jp-WindowedPanel-outer, .jp-Notebook') as HTMLElement;
          const top = fig.getBoundingClientRect().top - scroller.getBoundingClientRect().top + scroller.scrollTop;
          scroller.scrollTop = Math.max(0, top - above);
        },
        [shot.figure, shot.above ?? 160] as const,
      );
      await page.waitForTimeout(800);
      const out = path.join(root, 'docs', 'figures', shot.file);
      fs.mkdirSync(path.dirname(out), { recursive: true });
      await page.screenshot({ path: out });
      console.log(`wrote ${out}`);
      await page.close();
    }
  } finally {
    await browser.close();
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
