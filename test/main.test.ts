import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import { mainSettings } from '../lib/workbook/main';
import { defaultTimeout } from '../lib/workbook/runners/inprocess';
import { readNotebook } from '../lib/workbook/runners/nbformat';
import { workbookNotebooks } from '../lib/workbook/runners/project';
import { summaryText } from '../lib/workbook/site/build';
import { BUILD_TIMEOUT_MS, quickWorkbook } from './fixtures/quick-workbook';

describe('the main job (npm start: the whole workbook, executed, into out/)', function () {
  this.timeout(BUILD_TIMEOUT_MS);

  it('reads its settings from DDPM_* variables: full mode and the in-process runner by default; a bad value names the variable', () => {
    expect(mainSettings({})).to.deep.include({ mode: 'full', runner: 'in-process', outDir: path.resolve('out'), echo: false });
    expect(mainSettings({ DDPM_WORKBOOK_MODE: 'quick', DDPM_WORKBOOK_RUNNER: 'nbclient', DDPM_OUT: '/tmp/x' })).to.deep.include({
      mode: 'quick',
      runner: 'nbclient',
      outDir: '/tmp/x',
    });
    expect(() => mainSettings({ DDPM_WORKBOOK_MODE: 'fast' })).to.throw('DDPM_WORKBOOK_MODE must be one of quick, full, got "fast"');
    expect(() => mainSettings({ DDPM_WORKBOOK_RUNNER: 'papermill' })).to.throw(/DDPM_WORKBOOK_RUNNER must be one of in-process, nbclient, got "papermill"/);
  });

  it('gives each notebook 15 minutes in quick mode, 6 hours in full mode, or DDPM_NOTEBOOK_TIMEOUT seconds', () => {
    expect(defaultTimeout('quick', {})).to.equal(900);
    expect(defaultTimeout('full', {})).to.equal(21600);
    expect(defaultTimeout('full', { DDPM_NOTEBOOK_TIMEOUT: '60' })).to.equal(60);
    expect(() => defaultTimeout('quick', { DDPM_NOTEBOOK_TIMEOUT: 'soon' })).to.throw('DDPM_NOTEBOOK_TIMEOUT must be a number of seconds > 0, got "soon"');
  });

  it('writes each executed notebook, its HTML page, vendor/ for offline viewing, an index linking them, and summary.json', async () => {
    const b = await quickWorkbook();
    const names = [...workbookNotebooks().map((f) => path.basename(f, '.ipynb')), 'workbook'];
    expect(b.notebooks.map((n) => n.name)).to.deep.equal(names);
    const files = fs.readdirSync(b.outDir).filter((f) => f !== 'figures').sort();
    expect(files).to.deep.equal([...names.flatMap((n) => [`${n}.html`, `${n}.ipynb`]), 'index.html', 'summary.json', 'vendor'].sort(), 'no temporary files left');
    const figures = path.join(path.dirname(workbookNotebooks()[0] ?? ''), 'figures');
    if (workbookNotebooks().length > 0 && fs.existsSync(figures)) {
      expect(fs.readdirSync(path.join(b.outDir, 'figures')).sort(), 'notebooks/figures is copied beside the pages').to.deep.equal(fs.readdirSync(figures).sort());
    }
    const index = fs.readFileSync(b.index, 'utf8');
    for (const n of names) expect(index).to.include(`href="${n}.html"`).and.include(`href="${n}.ipynb"`);
    expect(index).to.include('alphaBar_t equals the running product of (1 - beta_s)');
    for (const n of names) {
      const executed = readNotebook(path.join(b.outDir, `${n}.ipynb`));
      expect(executed.cells.some((c) => (c.outputs ?? []).length > 0), `${n}.ipynb has outputs`).to.equal(true);
    }
    expect(fs.statSync(path.join(b.outDir, 'vendor', 'plotly.min.js')).size).to.be.above(1_000_000);
    expect(fs.existsSync(path.join(b.outDir, 'vendor', 'katex', 'katex.min.css'))).to.equal(true);
    expect(fs.readdirSync(path.join(b.outDir, 'vendor', 'katex', 'fonts')).filter((f) => f.endsWith('.woff2')).length).to.be.above(10);
    // pages load nothing from the network
    for (const n of names) expect(fs.readFileSync(path.join(b.outDir, `${n}.html`), 'utf8')).to.not.match(/(src|href)="https?:/);
    const summary = JSON.parse(fs.readFileSync(path.join(b.outDir, 'summary.json'), 'utf8'));
    expect(summary).to.include({ mode: 'quick', runner: 'in-process' });
    expect(summary.notebooks.map((n: { name: string }) => n.name)).to.deep.equal(names);
    // the end-of-run summary lists every check of every notebook
    const text = summaryText(b.notebooks);
    for (const n of b.notebooks) for (const c of n.run.checks) expect(text).to.include(`${c.ok ? '✓' : '✗'} ${c.description}`);
    expect(text).to.match(/notebooks, \d+ checks passed, \d+ failed; \d+ notebook\(s\) failed/);
  });
});
