/**
 * Static HTML reports with interactive Plotly figures: the main job writes its results with these.
 * plotly.js-dist-min is inlined, so the page opens offline and from file://.
 */
import * as fs from 'fs';
import { scriptJson } from './plot';

/** A Plotly figure as plain JSON (the application/vnd.plotly.v1+json shape). */
export interface Figure {
  data: Record<string, unknown>[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

/** One block of a report: a heading, a paragraph of HTML, and optionally a figure. */
export interface ReportSection {
  heading: string;
  html?: string;
  figure?: Figure;
}

/** Text as HTML text or an attribute value: & < > " ' escaped. The workbook's one escaper (reports and the static pages). */
export const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

/** The minified plotly.js bundle's source, read from node_modules. */
export function plotlySource(): string {
  return fs.readFileSync(require.resolve('plotly.js-dist-min'), 'utf8');
}

/** A self-contained HTML page: title, sections, each figure drawn by the inlined plotly.js. */
export function renderReport(title: string, sections: ReportSection[]): string {
  const blocks = sections.map((s, i) => {
    const fig = s.figure
      ? `<div id="fig${i}" class="figure"></div>\n<script>Plotly.newPlot('fig${i}', ${scriptJson(s.figure.data)}, ${scriptJson(
          s.figure.layout ?? {},
        )}, ${scriptJson({ responsive: true, ...(s.figure.config ?? {}) })});</script>`
      : '';
    return `<section>\n<h2>${escapeHtml(s.heading)}</h2>\n${s.html ?? ''}\n${fig}\n</section>`;
  });
  // '</script' cannot appear inside an inline script: plotly's bundle does not contain it, but guard anyway.
  const plotly = plotlySource().replace(/<\/script/gi, '<\\/script');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
.figure { width: 100%; height: 480px; }
table { border-collapse: collapse; } td, th { padding: 0.2rem 0.8rem; border-bottom: 1px solid #ddd; text-align: right; }
</style>
<script>${plotly}</script>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${blocks.join('\n')}
</body>
</html>
`;
}
