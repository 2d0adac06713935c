/**
 * Static HTML rendering of executed notebooks, for out/: markdown through marked, math typeset at
 * build time by KaTeX (no script, no CDN: the page needs only vendor/katex/katex.min.css and its
 * fonts), code cells with their outputs, plots through the text/html of their MIME bundle (which
 * loads vendor/plotly.min.js once per page, see lib/workbook/plot.ts).
 */
import * as fs from 'fs';
import * as path from 'path';
import katex from 'katex';
import { marked } from 'marked';
import { PLOTLY_MIME, plotHtml } from '../plot';
import { Figure, escapeHtml } from '../report';
import { library } from '../library';
import { Cell, Notebook, Output, joinSource } from '../runners/nbformat';

/** A KaTeX error found while rendering (the page shows it in red; the build reports it). */
export interface MathError {
  tex: string;
  message: string;
}

/**
 * Markdown with $...$ and $$...$$ math to HTML. Math is cut out before marked sees it (so its
 * underscores and backslashes stay TeX), code spans and fences are left alone, and each piece is
 * typeset by KaTeX into HTML + MathML.
 */
export function renderMarkdown(source: string, errors: MathError[] = []): string {
  const math: string[] = [];
  const keep = (html: string) => `\u0000MATH${math.push(html) - 1}\u0000`;
  const typeset = (tex: string, displayMode: boolean) => {
    try {
      return katex.renderToString(tex, { displayMode, throwOnError: true, output: 'htmlAndMathml' });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      errors.push({ tex, message });
      return `<span class="katex-error" title="${escapeHtml(message)}">${escapeHtml(tex)}</span>`;
    }
  };
  let out = '';
  let i = 0;
  const s = source;
  while (i < s.length) {
    // fenced code block at a line start
    if ((i === 0 || s[i - 1] === '\n') && /^ {0,3}(```|~~~)/.test(s.slice(i, i + 6))) {
      const fence = /^ {0,3}(```|~~~)/.exec(s.slice(i))![1];
      const end = s.indexOf(`\n${fence}`, i + 3);
      const stop = end < 0 ? s.length : s.indexOf('\n', end + 1) < 0 ? s.length : s.indexOf('\n', end + 1);
      out += s.slice(i, stop);
      i = stop;
      continue;
    }
    const c = s[i];
    if (c === '\\' && s[i + 1] === '$') {
      out += '\\$';
      i += 2;
      continue;
    }
    if (c === '`') {
      const ticks = /^`+/.exec(s.slice(i))![0];
      const end = s.indexOf(ticks, i + ticks.length);
      if (end > 0) {
        out += s.slice(i, end + ticks.length);
        i = end + ticks.length;
        continue;
      }
    }
    if (c === '$' && s[i + 1] === '$') {
      const end = s.indexOf('$$', i + 2);
      if (end > 0) {
        out += keep(typeset(s.slice(i + 2, end).trim(), true));
        i = end + 2;
        continue;
      }
    }
    if (c === '$') {
      // inline: closes at a $ not preceded by a backslash, within the paragraph (a single line break
      // may fall inside the math, as Jupyter's renderers allow; a blank line ends the attempt)
      const m = /^\$((?:\\.|[^$\\\n]|\n(?![ \t]*\n))+?)\$/.exec(s.slice(i));
      if (m && m[1].trim() !== '') {
        out += keep(typeset(m[1], false));
        i += m[0].length;
        continue;
      }
    }
    out += c;
    i++;
  }
  const html = marked.parse(out, { async: false, gfm: true }) as string;
  return html.replace(/\u0000MATH(\d+)\u0000/g, (_m, k: string) => math[Number(k)]);
}

const text = (v: unknown) => (Array.isArray(v) ? v.join('') : String(v ?? ''));

/** One output as HTML, by the richest MIME type this page can show. */
export function renderOutput(o: Output): string {
  if (o.output_type === 'stream') return `<pre class="output stream ${o.name}">${escapeHtml(joinSource(o.text))}</pre>`;
  if (o.output_type === 'error') return `<pre class="output error">${escapeHtml(`${o.ename}: ${o.evalue}\n${o.traceback.join('\n')}`)}</pre>`;
  const d = o.data;
  if (d['text/html'] !== undefined) return `<div class="output html">${text(d['text/html'])}</div>`;
  if (d[PLOTLY_MIME] !== undefined) return `<div class="output html">${plotHtml(d[PLOTLY_MIME] as Figure)}</div>`;
  if (d['image/svg+xml'] !== undefined) return `<div class="output image">${text(d['image/svg+xml'])}</div>`;
  for (const t of ['image/png', 'image/jpeg', 'image/gif']) {
    if (d[t] !== undefined) return `<div class="output image"><img src="data:${t};base64,${text(d[t]).replace(/\s/g, '')}" alt=""></div>`;
  }
  if (d['text/markdown'] !== undefined) return `<div class="output markdown">${renderMarkdown(text(d['text/markdown']))}</div>`;
  if (d['text/plain'] !== undefined) return `<pre class="output plain">${escapeHtml(text(d['text/plain']))}</pre>`;
  return `<pre class="output plain">(${escapeHtml(Object.keys(d).join(', '))})</pre>`;
}

function renderCell(cell: Cell, index: number, errors: MathError[]): string {
  const source = joinSource(cell.source);
  if (cell.cell_type === 'markdown') return `<div class="cell markdown" id="cell-${index + 1}">${renderMarkdown(source, errors)}</div>`;
  if (cell.cell_type === 'raw') return `<pre class="cell raw" id="cell-${index + 1}">${escapeHtml(source)}</pre>`;
  const prompt = cell.execution_count ? `[${cell.execution_count}]` : '[ ]';
  const outputs = (cell.outputs ?? []).map(renderOutput).join('\n');
  return `<div class="cell code" id="cell-${index + 1}">
<div class="input"><span class="prompt">${prompt}</span><pre><code class="language-typescript">${escapeHtml(source)}</code></pre></div>
${outputs ? `<div class="outputs">${outputs}</div>` : ''}
</div>`;
}

/** A notebook's first markdown heading as written (TeX and all), else the fallback. */
export function notebookHeading(nb: Notebook, fallback: string): string {
  for (const c of nb.cells) {
    if (c.cell_type !== 'markdown') continue;
    const m = /^#+\s+(.+)$/m.exec(joinSource(c.source));
    if (m) return m[1].trim();
  }
  return fallback;
}

/** The title of a notebook as plain text (for <title>): its first markdown heading with the $ signs dropped, else the file name. */
export function notebookTitle(nb: Notebook, fallback: string): string {
  return notebookHeading(nb, fallback).replace(/\$([^$]*)\$/g, '$1').trim();
}

/** One line of text with $...$ math (a chapter title) as HTML: the text escaped, the math typeset by KaTeX at build time. */
export function renderInlineMath(text: string, errors: MathError[] = []): string {
  let out = '';
  let last = 0;
  for (const m of text.matchAll(/\$((?:\\.|[^$\\])+?)\$/g)) {
    out += escapeHtml(text.slice(last, m.index));
    try {
      out += katex.renderToString(m[1], { displayMode: false, throwOnError: true, output: 'htmlAndMathml' });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      errors.push({ tex: m[1], message });
      out += `<span class="katex-error" title="${escapeHtml(message)}">${escapeHtml(m[1])}</span>`;
    }
    last = (m.index ?? 0) + m[0].length;
  }
  return out + escapeHtml(text.slice(last));
}

/**
 * A notebook's lead figure for the index: its first Plotly figure, redrawn small and static (no
 * title, legend or toolbar: the card names it), or else its first PNG/JPEG/SVG image; '' when it has neither.
 */
export function leadFigureHtml(nb: Notebook): string {
  for (const cell of nb.cells) {
    for (const o of cell.outputs ?? []) {
      if (o.output_type !== 'display_data' && o.output_type !== 'execute_result') continue;
      const d = o.data;
      if (d[PLOTLY_MIME] !== undefined) {
        const f = d[PLOTLY_MIME] as Figure;
        const { title: _title, width: _width, height: _height, ...layout } = f.layout ?? {};
        // axis titles crowd a 220-pixel thumbnail: the chapter's page has them
        for (const [key, axis] of Object.entries(layout)) {
          if (/^[xy]axis\d*$/.test(key) && axis && typeof axis === 'object') {
            const { title: _axisTitle, ...rest } = axis as Record<string, unknown>;
            layout[key] = rest;
          }
        }
        const small: Figure = {
          data: f.data,
          layout: { ...layout, height: 220, autosize: true, showlegend: false, margin: { l: 36, r: 8, t: 8, b: 28 } },
          config: { staticPlot: true, displayModeBar: false },
        };
        return `<div class="lead">${plotHtml(small)}</div>`;
      }
      for (const t of ['image/png', 'image/jpeg']) {
        if (d[t] !== undefined) return `<div class="lead"><img src="data:${t};base64,${text(d[t]).replace(/\s/g, '')}" alt="lead figure"></div>`;
      }
      if (d['image/svg+xml'] !== undefined) return `<div class="lead">${text(d['image/svg+xml'])}</div>`;
    }
  }
  return '';
}

const STYLE = `
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; line-height: 1.45; }
nav { display: flex; gap: 1.5rem; font-size: 0.9rem; border-bottom: 1px solid #ddd; padding-bottom: 0.5rem; }
.cell { margin: 1rem 0; }
.cell.code .input { display: flex; gap: 0.5rem; }
.cell.code .input pre { min-width: 0; }
.outputs { min-width: 0; overflow-x: auto; }
.prompt { color: #307fc1; font-family: monospace; min-width: 3rem; padding-top: 0.5rem; }
pre { background: #f7f7f7; padding: 0.5rem; overflow-x: auto; margin: 0; flex: 1; }
.outputs { margin-left: 3.5rem; }
.output { margin: 0.3rem 0; }
pre.output { background: none; border-left: 3px solid #ddd; }
pre.stderr, pre.error { background: #fdd; border-left-color: #c00; }
.katex-display { overflow-x: auto; overflow-y: hidden; }
.katex-error { color: #c00; }
.banner { padding: 0.5rem 1rem; border-radius: 4px; }
.banner.ok { background: #e6f4ea; } .banner.failed { background: #fdd; }
table { border-collapse: collapse; } td, th { padding: 0.2rem 0.8rem; border-bottom: 1px solid #ddd; text-align: left; }
.chapters { display: grid; grid-template-columns: repeat(auto-fill, minmax(18rem, 1fr)); gap: 1rem; margin: 1rem 0; }
.chapter { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 0.8rem; min-width: 0; display: flex; flex-direction: column; gap: 0.4rem; }
.chapter.failed { border-color: #c00; background: #fff6f6; }
.chapter-title { font-weight: 600; font-size: 1.05rem; }
.chapter-title a { color: inherit; text-decoration: none; } .chapter-title a:hover { text-decoration: underline; }
.chapter .meta { font-size: 0.85rem; color: #555; }
.chapter .lead { min-height: 220px; } .chapter .lead img { max-width: 100%; max-height: 220px; display: block; margin: 0 auto; }
`;

/** A whole page: head (KaTeX CSS from vendor/), navigation, a status banner, then the cells. */
export function renderPage(options: {
  nb: Notebook;
  title: string;
  banner?: { ok: boolean; html: string };
  nav?: string;
  errors?: MathError[];
}): string {
  const errors = options.errors ?? [];
  const cells = options.nb.cells.map((c, i) => renderCell(c, i, errors)).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(options.title)}</title>
<link rel="stylesheet" href="vendor/katex/katex.min.css">
<style>${STYLE}</style>
</head>
<body>
${options.nav ? `<nav>${options.nav}</nav>` : ''}
${options.banner ? `<p class="banner ${options.banner.ok ? 'ok' : 'failed'}">${options.banner.html}</p>` : ''}
${cells}
</body>
</html>
`;
}

/** A page that is not a notebook (the index), same look. */
export function renderPlainPage(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="vendor/katex/katex.min.css">
<style>${STYLE}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

/** Copies what the pages load into outDir/vendor: plotly.min.js and KaTeX's CSS and fonts (offline, file:// friendly). */
export function writeVendor(outDir: string): void {
  const vendor = path.join(outDir, 'vendor');
  const copy = (from: string, to: string) => {
    const dest = path.join(vendor, to);
    // unchanged files are not rewritten (npm start runs often; the fonts and plotly.js are 6 MB)
    if (fs.existsSync(dest) && fs.statSync(dest).size === fs.statSync(from).size) return;
    library().writeFileAtomic(dest, fs.readFileSync(from));
  };
  copy(require.resolve('plotly.js-dist-min'), 'plotly.min.js');
  const katexDist = path.dirname(require.resolve('katex/dist/katex.min.css'));
  copy(path.join(katexDist, 'katex.min.css'), path.join('katex', 'katex.min.css'));
  for (const f of fs.readdirSync(path.join(katexDist, 'fonts'))) copy(path.join(katexDist, 'fonts', f), path.join('katex', 'fonts', f));
}
