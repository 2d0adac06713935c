import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import { mainSettings } from '../lib/workbook/main';
import { defaultTimeout } from '../lib/workbook/runners/inprocess';
import { readNotebook } from '../lib/workbook/runners/nbformat';
import { workbookNotebooks } from '../lib/workbook/runners/project';
import { summaryText } from '../lib/workbook/site/build';
import { leadFigureHtml, notebookTitle, renderInlineMath } from '../lib/workbook/site/html';
import { Notebook } from '../lib/workbook/runners/nbformat';
import { PLOTLY_MIME } from '../lib/workbook';
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
  it('a chapter title keeps its math for the index (KaTeX at build time, the rest escaped) and drops the $ for <title>', () => {
    const html = renderInlineMath('2. The ELBO <bound> on $\\log p(x_0)$ & more');
    expect(html.startsWith('2. The ELBO &lt;bound&gt; on <span class="katex">')).to.equal(true);
    expect(html).to.include('<math').and.include('<annotation encoding="application/x-tex">\\log p(x_0)</annotation>');
    expect(html.endsWith(' &amp; more')).to.equal(true);
    const errors: { tex: string; message: string }[] = [];
    expect(renderInlineMath('bad $\\frac{1}$', errors)).to.include('katex-error');
    expect(errors.map((e) => e.tex)).to.deep.equal(['\\frac{1}']);
    const nb: Notebook = { cells: [{ cell_type: 'markdown', metadata: {}, source: ['# 3. The posterior $q(x_{t-1} \\mid x_t)$\n'] }], metadata: {}, nbformat: 4, nbformat_minor: 5 };
    expect(notebookTitle(nb, 'x')).to.equal('3. The posterior q(x_{t-1} \\mid x_t)');
  });

  it("the index's lead figure is a chapter's first Plotly figure, small and static, or else its first image", () => {
    const figure = { data: [{ type: 'bar', x: [1, 2], y: [3, 4] }], layout: { title: { text: 'big' }, width: 900, height: 600, xaxis: { type: 'log' } } };
    const png = 'iVBORw0KGgo=';
    const nb = (outputs: Record<string, unknown>[][]): Notebook => ({
      cells: outputs.map((o) => ({ cell_type: 'code', metadata: {}, source: [], execution_count: 1, outputs: o.map((data) => ({ output_type: 'display_data', data, metadata: {} })) })),
      metadata: {},
      nbformat: 4,
      nbformat_minor: 5,
    } as unknown as Notebook);
    const lead = leadFigureHtml(nb([[{ 'image/png': png }], [{ [PLOTLY_MIME]: figure, 'text/plain': 'x' }]]));
    expect(lead, 'an earlier image wins').to.include(`<img src="data:image/png;base64,${png}"`);
    const plotted = leadFigureHtml(nb([[{ 'text/plain': 'no figure' }], [{ [PLOTLY_MIME]: figure }], [{ 'image/png': png }]]));
    const json = /var figure = (.*);\n/.exec(plotted)?.[1];
    expect(json, 'the Plotly figure is drawn by plotHtml').to.be.a('string');
    const drawn = JSON.parse(json!.replace(/\\u003c/g, '<'));
    expect(drawn.data).to.deep.equal(figure.data);
    expect(drawn.layout).to.deep.include({ height: 220, showlegend: false, xaxis: { type: 'log' } });
    expect(drawn.layout).to.not.have.any.keys('title', 'width');
    expect(drawn.config).to.deep.include({ staticPlot: true });
    expect(leadFigureHtml(nb([[{ 'text/plain': 'none' }]]))).to.equal('');
  });

  it('the index gives every chapter a card: a link to its page and notebook, its title with math typeset, its lead figure', async () => {
    const b = await quickWorkbook();
    const index = fs.readFileSync(b.index, 'utf8');
    const cards = index.split('<article class="chapter').slice(1);
    expect(cards).to.have.length(b.notebooks.length);
    for (const [k, n] of b.notebooks.entries()) {
      expect(cards[k]).to.include(`id="chapter-${n.name}"`).and.include(`href="${n.name}.html"`).and.include(`href="${n.name}.ipynb"`);
      expect(cards[k], `${n.name} has a figure`).to.match(/class="ddpm-plot"|<img src="data:image\//);
    }
    const fixture = cards[b.notebooks.findIndex((n) => n.name === 'workbook')];
    expect(fixture, "the fixture's title math is typeset").to.include('class="katex"');
  });
});
