/**
 * The main job (`npm start`): executes the whole workbook headlessly, one notebook after another,
 * and writes into out/: the executed notebooks, a static HTML page for each, vendor/ (plotly.js,
 * KaTeX's CSS and fonts: the pages open offline, from file://), index.html, summary.json; prints
 * progress per notebook and, at the end, every check.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CheckResult } from '../check';
import { library } from '../library';
import { escapeHtml } from '../report';
import { MathError, leadFigureHtml, notebookHeading, notebookTitle, renderInlineMath, renderPage, renderPlainPage, writeVendor } from './html';
import { RunOptions, checkMode, runInProcess } from '../runners/inprocess';
import { runWithKernel } from '../runners/kernel';
import { readNotebook } from '../runners/nbformat';
import { signNotebooks } from '../runners/sign';
import { projectRoot, workbookNotebooks } from '../runners/project';
import { NotebookRun, RunnerName, WorkbookMode, describeFailure } from '../runners/types';

export interface BuildOptions {
  mode: WorkbookMode;
  outDir: string;
  /** Default: notebooks/*.ipynb in order. */
  notebooks?: string[];
  /** Default 'in-process' (no Python needed). */
  runner?: RunnerName;
  /** Where progress and the summary go; null for silence. */
  log?: NodeJS.WritableStream | null;
  /** Copy each notebook's own output to the log as it runs. */
  echo?: boolean;
  timeoutSeconds?: number;
}

export interface BuiltNotebook {
  name: string;
  title: string;
  /** The title as HTML, its math typeset (the index's chapter cards). */
  titleHtml: string;
  /** The first figure of the executed notebook, small, for the index ('' when none). */
  leadHtml: string;
  html: string;
  run: NotebookRun;
  mathErrors: MathError[];
}

export interface BuildResult {
  ok: boolean;
  mode: WorkbookMode;
  outDir: string;
  index: string;
  notebooks: BuiltNotebook[];
  seconds: number;
}

const RUNNERS: Record<RunnerName, (nb: string, o: RunOptions) => Promise<NotebookRun>> = { 'in-process': runInProcess, nbclient: runWithKernel };

/** The end-of-run summary: every check of every notebook, and the failures named by notebook and cell. */
export function summaryText(built: BuiltNotebook[]): string {
  const lines: string[] = ['', 'Checks:'];
  let passed = 0;
  let failed = 0;
  for (const b of built) {
    lines.push(`  ${b.name}${b.run.ok ? '' : '  (FAILED)'}`);
    for (const c of b.run.checks) {
      lines.push(`    ${c.ok ? '✓' : '✗'} ${c.description}`);
      if (c.ok) passed++;
      else failed++;
    }
    if (b.run.checks.length === 0) lines.push('    (no checks)');
  }
  const bad = built.filter((b) => !b.run.ok);
  lines.push('', `${built.length} notebooks, ${passed} checks passed, ${failed} failed; ${bad.length} notebook(s) failed`);
  for (const b of bad) lines.push(`  ${describeFailure(b.run, true).replace('\n', '\n    ')}`);
  for (const b of built) for (const e of b.mathErrors) lines.push(`  ${b.name}: KaTeX could not typeset ${JSON.stringify(e.tex)}: ${e.message}`);
  return lines.join('\n') + '\n';
}

/** Runs every notebook and writes out/; resolves with what happened (ok false when a notebook failed). */
export async function buildWorkbook(options: BuildOptions): Promise<BuildResult> {
  checkMode(options.mode, 'mode');
  const started = Date.now();
  const { formatDuration, writeFileAtomic } = library();
  const runner = options.runner ?? 'in-process';
  if (!(runner in RUNNERS)) throw new Error(`runner must be one of ${Object.keys(RUNNERS).join(', ')}, got ${JSON.stringify(runner)}`);
  const outDir = path.resolve(options.outDir);
  const notebooks = options.notebooks ?? workbookNotebooks(projectRoot());
  const log = options.log === undefined ? process.stdout : options.log;
  const say = (s: string) => log?.write(`${s}\n`);
  writeVendor(outDir);
  // pictures the markdown links as figures/... beside the notebooks keep working beside the pages
  for (const dir of new Set(notebooks.map((f) => path.join(path.dirname(path.resolve(f)), 'figures')))) {
    if (fs.existsSync(dir) && fs.statSync(dir).isDirectory()) fs.cpSync(dir, path.join(outDir, 'figures'), { recursive: true });
  }
  say(`Executing ${notebooks.length} notebook(s) in ${options.mode} mode (${runner} runner) into ${outDir}`);
  const built: BuiltNotebook[] = [];
  const names = notebooks.map((f) => path.basename(f, '.ipynb'));
  for (const [k, file] of notebooks.entries()) {
    const name = names[k];
    say(`[${k + 1}/${notebooks.length}] ${name} ...`);
    const executed = path.join(outDir, `${name}.ipynb`);
    const run = await RUNNERS[runner](file, { mode: options.mode, executed, echo: options.echo, timeoutSeconds: options.timeoutSeconds });
    let nb;
    try {
      nb = readNotebook(executed);
    } catch {
      nb = readNotebook(file); // the run died before writing: show the notebook without outputs
    }
    const title = notebookTitle(nb, name);
    const mathErrors: MathError[] = [];
    const nav = [
      '<a href="index.html">index</a>',
      k > 0 ? `<a href="${names[k - 1]}.html">← ${escapeHtml(names[k - 1])}</a>` : '',
      k + 1 < names.length ? `<a href="${names[k + 1]}.html">${escapeHtml(names[k + 1])} →</a>` : '',
      `<a href="${name}.ipynb">${escapeHtml(name)}.ipynb</a>`,
    ]
      .filter(Boolean)
      .join(' ');
    const passed = run.checks.filter((c) => c.ok).length;
    const banner = run.ok
      ? { ok: true, html: `Executed in ${options.mode} mode in ${formatDuration(run.seconds)}: ${passed} check(s) passed.` }
      : {
          ok: false,
          html: `<strong>Failed</strong> at <a href="#cell-${run.failure?.cell}">cell ${run.failure?.cell}</a>: <code>${escapeHtml(run.failure?.firstLine ?? '')}</code><pre>${escapeHtml(run.failure?.message ?? '')}</pre>`,
        };
    const html = path.join(outDir, `${name}.html`);
    writeFileAtomic(html, renderPage({ nb, title, banner, nav, errors: mathErrors }));
    // the heading's math was typeset (and any error recorded) on the page already
    const titleHtml = renderInlineMath(notebookHeading(nb, name));
    built.push({ name, title, titleHtml, leadHtml: leadFigureHtml(nb), html, run, mathErrors });
    say(`[${k + 1}/${notebooks.length}] ${name}: ${run.ok ? 'ok' : 'FAILED'} in ${formatDuration(run.seconds)}, ${passed}/${run.checks.length} checks${run.ok ? '' : `\n${describeFailure(run)}`}`);
  }
  // signed like `jupyter trust`, so Jupyter opens them trusted and their plots' HTML keeps its scripts
  const executedFiles = built.map((b) => path.join(outDir, `${b.name}.ipynb`)).filter((f) => fs.existsSync(f));
  const unsigned = signNotebooks(executedFiles);
  if (unsigned) say(`the executed notebooks are not signed (${unsigned}): Jupyter opens them untrusted, and without plotly's renderer their plots do not draw until you run them or 'jupyter trust' them`);
  const cards = built
    .map(
      (b) => `<article class="chapter${b.run.ok ? '' : ' failed'}" id="chapter-${b.name}">
<div class="chapter-title">${b.run.ok ? '✓' : '✗'} <a href="${b.name}.html">${b.titleHtml}</a></div>
${b.leadHtml || '<div class="lead">(no figure)</div>'}
<div class="meta">${b.run.checks.filter((c) => c.ok).length}/${b.run.checks.length} checks · ${formatDuration(b.run.seconds)} · <a href="${b.name}.ipynb">notebook</a></div>
</article>`,
    )
    .join('\n');
  const checkList = (checks: CheckResult[]) => checks.map((c) => `<li>${c.ok ? '✓' : '✗'} ${escapeHtml(c.description)}</li>`).join('');
  const index = path.join(outDir, 'index.html');
  writeFileAtomic(
    index,
    renderPlainPage(
      'DDPM workbook',
      `<h1>The DDPM workbook</h1>
<p>Executed headlessly in ${options.mode} mode (${runner} runner) on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, in ${formatDuration((Date.now() - started) / 1000)}.</p>
<div class="chapters">
${cards}
</div>
<h2>Every check</h2>
${built.map((b) => `<h3>${b.titleHtml}</h3><ul>${checkList(b.run.checks) || '<li>(none)</li>'}</ul>`).join('\n')}`,
    ),
  );
  const result: BuildResult = { ok: built.every((b) => b.run.ok), mode: options.mode, outDir, index, notebooks: built, seconds: (Date.now() - started) / 1000 };
  writeFileAtomic(
    path.join(outDir, 'summary.json'),
    JSON.stringify({ ok: result.ok, mode: result.mode, runner, seconds: result.seconds, notebooks: built.map((b) => ({ name: b.name, title: b.title, ...b.run })) }, null, 1) + '\n',
  );
  say(summaryText(built).trimEnd());
  say(`wrote ${index}`);
  return result;
}
