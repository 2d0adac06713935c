/**
 * out/ in a real browser: the project's headless chromium (lib/workbook/browser.ts: Debian's, never a downloaded one),
 * opens every page of the shared quick build and checks that each plot drew, the math is typeset,
 * and nothing logged an error; then the same for nbconvert's own HTML export of an executed notebook.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import type { BrowserContext, Page } from 'playwright-core';
import { chromiumMissing, launchChromium } from '../lib/workbook/browser';
import { jupyterMissing, pythonPath, JUPYTER_INSTALL_HINT } from '../lib/workbook/runners/kernel';
import { plotHtml } from '../lib/workbook/plot';
import { readNotebook } from '../lib/workbook/runners/nbformat';
import { notebookHeading } from '../lib/workbook/site/html';
import { BUILD_TIMEOUT_MS, quickWorkbook, tempDir } from './fixtures/quick-workbook';

interface PlotState {
  id: string;
  svgs: number;
  /** SVG elements that draw data (scatter/bar traces, heatmap images...). */
  dataMarks: number;
  /** Traces plotly.js registered on the element. */
  traces: number;
  text: string;
}

/** Waits until every plot of the page drew (or timeout), and reads their state. */
async function plotsOf(page: Page, timeoutMs = 90_000): Promise<PlotState[]> {
  await page
    .waitForFunction(() => Array.from(document.querySelectorAll('.ddpm-plot')).every((el) => el.querySelector('svg.main-svg') || /could not/.test(el.textContent ?? '')), null, {
      timeout: timeoutMs,
    })
    .catch(() => undefined); // the assertions below say which plot did not draw
  return page.evaluate(() =>
    Array.from(document.querySelectorAll('.ddpm-plot')).map((el) => ({
      id: el.id,
      svgs: el.querySelectorAll('svg.main-svg').length,
      dataMarks: el.querySelectorAll('svg.main-svg g.trace, svg.main-svg g.hm, svg.main-svg .heatmaplayer image, svg.main-svg .imagelayer image, svg.main-svg .pielayer .slice').length,
      traces: ((el as unknown as { _fullData?: unknown[] })._fullData ?? []).length,
      text: (el.textContent ?? '').slice(0, 200),
    })),
  );
}

function expectDrawn(plots: PlotState[], where: string): void {
  for (const p of plots) {
    expect(p.svgs, `${where}: plot ${p.id} has no SVG (${p.text})`).to.be.above(0);
    expect(p.traces, `${where}: plot ${p.id} has no traces`).to.be.above(0);
    expect(p.dataMarks, `${where}: plot ${p.id} drew no data marks`).to.be.above(0);
  }
}

/** The --user-data-dir of every browser this process started and that still runs (its children, read from /proc). */
function ownProfiles(): Set<string> {
  const dirs = new Set<string>();
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]); // fields after "(comm)": state, ppid
      if (ppid !== process.pid) continue;
      const arg = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').find((a) => a.startsWith('--user-data-dir='));
      if (arg) dirs.add(arg.slice('--user-data-dir='.length));
    } catch {
      // the process ended while it was read
    }
  }
  return dirs;
}

describe('out/ in headless Chromium', function () {
  this.timeout(BUILD_TIMEOUT_MS);
  let browser: BrowserContext | null = null;

  before(async function () {
    const why = chromiumMissing();
    if (why) {
      if (process.env.CI === 'true') throw new Error(`under CI the browser test must run, but ${why}`);
      console.log(`    (skipped: ${why})`);
      this.skip();
    }
    browser = await launchChromium();
  });
  after(async () => browser?.close());

  /** Opens a file, collecting console errors, page errors and failed requests. */
  async function open(file: string): Promise<{ page: Page; errors: string[]; failed: string[] }> {
    const page = await browser!.newPage();
    const errors: string[] = [];
    const failed: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => failed.push(`${r.url()} (${r.failure()?.errorText})`));
    await page.goto(`file://${file}`);
    return { page, errors, failed };
  }

  it('every page of the quick build draws every plot, typesets every formula, and logs no error', async () => {
    const b = await quickWorkbook();
    const pages = [b.index, ...b.notebooks.map((n) => n.html)];
    let plotsSeen = 0;
    let mathSeen = 0;
    for (const file of pages) {
      const where = path.basename(file);
      const { page, errors, failed } = await open(file);
      const plots = await plotsOf(page);
      expectDrawn(plots, where);
      plotsSeen += plots.length;
      const math = await page.evaluate(() => {
        // markdown text outside code: no $ or $$ delimiters may be left un-typeset
        const cells = Array.from(document.querySelectorAll('.cell.markdown')).map((c) => {
          const copy = c.cloneNode(true) as HTMLElement;
          copy.querySelectorAll('code, pre, .katex').forEach((e) => e.remove());
          return copy.textContent ?? '';
        });
        return {
          katex: document.querySelectorAll('.katex').length,
          errors: Array.from(document.querySelectorAll('.katex-error')).map((e) => e.textContent),
          raw: cells.filter((t) => /\$\$|\$[^$\s][^$]*\$/.test(t)),
          mathml: document.querySelectorAll('.katex math').length,
        };
      });
      expect(math.errors, `${where}: formulas KaTeX could not typeset`).to.deep.equal([]);
      expect(math.raw, `${where}: raw $ math left in markdown`).to.deep.equal([]);
      expect(math.mathml, `${where}: each formula has its MathML`).to.equal(math.katex);
      mathSeen += math.katex;
      expect(errors, `${where}: console errors`).to.deep.equal([]);
      expect(failed, `${where}: failed requests`).to.deep.equal([]);
      await page.close();
    }
    // the fixture chapter alone has 2 plots and 5 formulas: the test saw real work
    expect(plotsSeen).to.be.at.least(2);
    expect(mathSeen).to.be.at.least(5);
  });

  it("the index typesets the math of every chapter title and draws each chapter card's lead figure", async () => {
    const b = await quickWorkbook();
    const { page, errors, failed } = await open(b.index);
    await plotsOf(page);
    const cards = await page.evaluate(() =>
      Array.from(document.querySelectorAll('.chapter')).map((card) => {
        const title = card.querySelector('.chapter-title') as HTMLElement;
        const copy = title.cloneNode(true) as HTMLElement;
        copy.querySelectorAll('.katex').forEach((e) => e.remove());
        return {
          id: card.id,
          katex: title.querySelectorAll('.katex').length,
          mathml: title.querySelectorAll('.katex math').length,
          textLeft: copy.textContent ?? '',
          plots: Array.from(card.querySelectorAll('.lead .ddpm-plot')).map(
            (el) => el.querySelectorAll('svg.main-svg').length > 0 && ((el as unknown as { _fullData?: unknown[] })._fullData ?? []).length > 0,
          ),
          images: Array.from(card.querySelectorAll('.lead img')).map((img) => (img as HTMLImageElement).complete && (img as HTMLImageElement).naturalWidth > 0),
        };
      }),
    );
    expect(cards.map((c) => c.id)).to.deep.equal(b.notebooks.map((n) => `chapter-${n.name}`));
    let typeset = 0;
    for (const [k, card] of cards.entries()) {
      // the heading as the notebook's author wrote it: each $...$ must have become one KaTeX formula
      const heading = notebookHeading(readNotebook(path.join(b.outDir, `${b.notebooks[k].name}.ipynb`)), '');
      const formulas = (heading.match(/\$[^$]+\$/g) ?? []).length;
      expect(card.katex, `${card.id}: formulas in the title`).to.equal(formulas);
      expect(card.mathml, `${card.id}: each has its MathML`).to.equal(formulas);
      expect(card.textLeft, `${card.id}: no raw $ left`).to.not.include('$');
      typeset += card.katex;
      const drawn = [...card.plots, ...card.images];
      expect(drawn, `${card.id}: a lead figure`).to.have.length(1);
      expect(drawn[0], `${card.id}: the lead figure is drawn`).to.equal(true);
    }
    expect(typeset, 'the fixture chapter alone has one formula in its title').to.be.at.least(1);
    expect(errors).to.deep.equal([]);
    expect(failed).to.deep.equal([]);
    await page.close();
  });

  it('with require.js on the page (the classic notebook, nbconvert online) plots load plotly.js once through AMD', async function () {
    const requirejs = '/usr/share/javascript/requirejs/require.min.js';
    if (!fs.existsSync(requirejs)) {
      console.log(`    (skipped: ${requirejs} is absent: Debian's libjs-requirejs, installed with jupyter-notebook)`);
      this.skip();
    }
    const b = await quickWorkbook();
    const dir = tempDir('ddpm-amd-');
    fs.cpSync(path.join(b.outDir, 'vendor'), path.join(dir, 'vendor'), { recursive: true });
    fs.copyFileSync(requirejs, path.join(dir, 'require.min.js'));
    const fig = { data: [{ type: 'bar', x: ['a', 'b'], y: [1, 2] }] };
    fs.writeFileSync(
      path.join(dir, 'amd.html'),
      `<!doctype html><html><head><meta charset="utf-8"><script src="require.min.js"></script></head><body>${plotHtml(fig)}${plotHtml(fig)}</body></html>`,
    );
    const { page, errors, failed } = await open(path.join(dir, 'amd.html'));
    const plots = await plotsOf(page);
    expect(plots).to.have.length(2);
    expectDrawn(plots, 'page with require.js');
    const scripts = await page.evaluate(() =>
      Array.from(document.querySelectorAll('script[src$="plotly.min.js"]')).map((s) => s.getAttribute('data-requiremodule')),
    );
    expect(scripts, 'plotly.js is loaded once per page, by require.js').to.deep.equal(['vendor/plotly.min.js']);
    expect(errors).to.deep.equal([]);
    expect(failed).to.deep.equal([]);
    await page.close();
  });

  it("nbconvert's own HTML export of an executed notebook draws the plots too (offline: vendor/plotly.min.js beside it)", async function () {
    const missing = jupyterMissing();
    if (missing !== null) {
      if (process.env.CI === 'true') throw new Error(`under CI this must run, but ${missing}: ${JUPYTER_INSTALL_HINT}`);
      console.log(`    (skipped: ${missing})`);
      this.skip();
    }
    const b = await quickWorkbook();
    const dir = tempDir('ddpm-nbconvert-');
    fs.cpSync(path.join(b.outDir, 'vendor'), path.join(dir, 'vendor'), { recursive: true });
    const r = spawnSync(pythonPath(), ['-m', 'nbconvert', '--to', 'html', '--output-dir', dir, path.join(b.outDir, 'workbook.ipynb')], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    const { page, errors } = await open(path.join(dir, 'workbook.html'));
    const plots = await plotsOf(page);
    expect(plots).to.have.length(2);
    expectDrawn(plots, 'nbconvert export');
    // nbconvert's template fetches require.js/MathJax from a CDN, unreachable offline: only our errors count
    expect(errors.filter((e) => /plotly|ddpm/i.test(e))).to.deep.equal([]);
    await page.close();
  });

  it('a closed chromium leaves no profile folder and no exit listener behind (Node warns past 10 listeners)', async () => {
    // the profile is found by the browser's own --user-data-dir, not by listing the temporary
    // folder: the other parts of npm test start chromiums with profiles there meanwhile
    const before = ownProfiles();
    const listeners = process.listenerCount('exit');
    const second = await launchChromium();
    const made = [...ownProfiles()].filter((d) => !before.has(d));
    expect(made, "the new context's profile folder").to.have.length(1);
    expect(path.dirname(made[0]), 'a temporary profile (lib/workbook/browser.ts)').to.equal(os.tmpdir());
    expect(fs.existsSync(made[0]), `${made[0]} while the browser runs`).to.equal(true);
    await second.close();
    expect(fs.existsSync(made[0]), `${made[0]} left behind`).to.equal(false);
    expect(process.listenerCount('exit'), 'exit listeners after close').to.equal(listeners);
  });
});
