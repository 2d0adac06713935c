/**
 * plot(figure): shows one Plotly figure in a notebook as ONE output holding a MIME bundle:
 *  - application/vnd.plotly.v1+json ({data, layout, config}) for JupyterLab's plotly renderer and VS Code;
 *  - text/html for the classic notebook and nbconvert's HTML export, which ignore the Plotly type:
 *    a div and a small script that draws with window.Plotly, loading plotly.js-dist-min once per page
 *    (see plotlyLoaderScript for where it looks);
 *  - text/plain, a one-line summary (what a terminal or a failed renderer shows).
 * tslab's public display API sends one MIME type per call, so the bundle goes through its
 * lower-level hook (tslab/dist/jupyter's lastWriteDisplayData), the same one the kernel and the
 * in-process runner (lib/workbook) install. Outside a kernel plot() prints the summary.
 */
import type { Figure } from './report';

export type { Figure } from './report';

/** The MIME type JupyterLab's and VS Code's Plotly renderers read. */
export const PLOTLY_MIME = 'application/vnd.plotly.v1+json';

/** What a display message carries (tslab's DisplayData, with the Plotly object allowed as a value). */
export interface DisplayMessage {
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  transient: { display_id?: string };
}

/** tslab's hook: (message, update) -> a display_data (update false) or update_display_data (true) message. */
export type DisplayHook = (message: DisplayMessage, update: boolean) => void;

/** A shown figure; update() redraws the same output in place (display_id / update_display_data). */
export interface PlotHandle {
  readonly displayId: string;
  update(figure: Figure): void;
}

/**
 * The display hook of the running tslab kernel (or of the in-process runner), or null outside one.
 * tslab is a devDependency and loading it pulls in zeromq, so plot() never loads it: it only looks
 * for the copy a kernel or runner already loaded (require.cache), first at the path this package
 * resolves, then any tslab/dist/jupyter.js (a globally installed kernel).
 */
export function findDisplayHook(): DisplayHook | null {
  const hookOf = (mod: NodeJS.Module | undefined): DisplayHook | null => {
    const hook = (mod?.exports as { lastWriteDisplayData?: unknown } | undefined)?.lastWriteDisplayData;
    return typeof hook === 'function' ? (hook as DisplayHook) : null;
  };
  try {
    const own = hookOf(require.cache[require.resolve('tslab/dist/jupyter')]);
    if (own) return own;
  } catch {
    // tslab is not installed (a production install): look for another copy below
  }
  for (const [file, mod] of Object.entries(require.cache)) {
    if (/[\\/]tslab[\\/]dist[\\/]jupyter\.js$/.test(file)) {
      const hook = hookOf(mod);
      if (hook) return hook;
    }
  }
  return null;
}

function checkFigure(figure: unknown): asserts figure is Figure {
  if (figure === null || typeof figure !== 'object') {
    throw new Error(`plot: figure must be an object {data, layout?, config?}, got ${figure === null ? 'null' : typeof figure}`);
  }
  const f = figure as Partial<Figure>;
  if (!Array.isArray(f.data)) {
    throw new Error(`plot: figure.data must be an array of Plotly traces, got ${f.data === undefined ? 'undefined' : typeof f.data}`);
  }
  f.data.forEach((trace, i) => {
    if (trace === null || typeof trace !== 'object' || Array.isArray(trace)) {
      throw new Error(`plot: figure.data[${i}] must be a trace object, got ${JSON.stringify(trace)}`);
    }
  });
  for (const key of ['layout', 'config'] as const) {
    const v = f[key];
    if (v !== undefined && (v === null || typeof v !== 'object' || Array.isArray(v))) {
      throw new Error(`plot: figure.${key} must be an object when given, got ${JSON.stringify(v)}`);
    }
  }
}

/** The figure as the Plotly MIME type wants it: {data, layout, config}, with plain-JSON values. */
export function plotlyJson(figure: Figure): { data: unknown[]; layout: Record<string, unknown>; config: Record<string, unknown> } {
  checkFigure(figure);
  // typed arrays (Float32Array from tensors) become plain arrays; a bare JSON round trip would make them {"0": ...} objects
  const plain = JSON.parse(
    JSON.stringify({ data: figure.data, layout: figure.layout ?? {}, config: { responsive: true, ...(figure.config ?? {}) } }, (_k, v) =>
      ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<number>) : v,
    ),
  );
  return plain;
}

const title = (layout: Record<string, unknown>): string | null => {
  const t = layout.title;
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof (t as { text?: unknown }).text === 'string') return (t as { text: string }).text;
  return null;
};

/** Number of points a trace draws: the length of its longest data array (x, y, z, values...). */
function tracePoints(trace: Record<string, unknown>): number {
  let n = 0;
  for (const key of ['x', 'y', 'z', 'values', 'lat', 'lon', 'r', 'theta']) {
    const v = trace[key];
    if (Array.isArray(v)) n = Math.max(n, key === 'z' && Array.isArray(v[0]) ? v.reduce((s: number, row: unknown[]) => s + row.length, 0) : v.length);
  }
  return n;
}

/** One line that says what the figure holds, e.g. `Plotly figure "Loss": 2 traces (scatter, scattergl), 4,000 points`. */
export function plotSummary(figure: Figure): string {
  checkFigure(figure);
  const types = [...new Set(figure.data.map((t) => (typeof t.type === 'string' ? t.type : 'scatter')))];
  const points = figure.data.reduce((s, t) => s + tracePoints(t), 0);
  const name = title(figure.layout ?? {});
  const traces = figure.data.length === 1 ? '1 trace' : `${figure.data.length} traces`;
  return `Plotly figure${name ? ` "${name}"` : ''}: ${traces} (${types.join(', ')}), ${points.toLocaleString('en-US')} points`;
}

/**
 * JSON that is safe inside an inline <script>: '<' as \u003c cannot close the tag, and U+2028/9
 * (line terminators to older JavaScript parsers, legal inside JSON strings) are escaped too.
 */
export const scriptJson = (value: unknown): string =>
  JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');

/**
 * Where the text/html rendering finds plotly.js when the page has no window.Plotly yet, tried in
 * order, once per page (later plots queue behind the first load):
 *  1. a live Jupyter server (classic notebook or JupyterLab) started in the project root, as
 *     `npm run lab` does: <base_url>files/node_modules/plotly.js-dist-min/plotly.min.js;
 *  2. vendor/plotly.min.js beside the page: the static export (npm start writes out/vendor/, and an
 *     nbconvert HTML export written into out/ finds it too) works offline, from file://.
 * With require.js on the page (the classic notebook, nbconvert's templates) plotly's UMD bundle
 * registers as an AMD module instead of window.Plotly, so it is loaded through require().
 */
export const PLOTLY_SOURCES_DOC = 'files/node_modules/plotly.js-dist-min/plotly.min.js (live server), vendor/plotly.min.js (static export)';

const LOADER = `
var w = window, st = w.__ddpmPlotly || (w.__ddpmPlotly = { queue: [], state: 'idle' });
function flush() { var q = st.queue; st.queue = []; q.forEach(function (f) { f(); }); }
if (w.Plotly) { st.state = 'ready'; }
if (st.state === 'ready') { draw(); return; }
st.queue.push(draw);
if (st.state === 'loading') return;
if (st.state === 'failed') { flush(); return; }
st.state = 'loading';
var sources = [], base = document.body && document.body.getAttribute('data-base-url');
var cfg = document.getElementById('jupyter-config-data');
if (!base && cfg) { try { base = JSON.parse(cfg.textContent).baseUrl; } catch (e) {} }
if (base) sources.push(base.replace(/\\/?$/, '/') + 'files/node_modules/plotly.js-dist-min/plotly.min.js');
sources.push('vendor/plotly.min.js');
function done(P) { if (P && !w.Plotly) w.Plotly = P; st.state = w.Plotly ? 'ready' : 'failed'; flush(); }
function next(i) {
  if (i >= sources.length) { done(null); return; }
  if (typeof w.define === 'function' && w.define.amd && typeof w.require === 'function') {
    w.require([sources[i]], function (P) { done(P || w.Plotly); }, function () { next(i + 1); });
    return;
  }
  var s = document.createElement('script');
  s.src = sources[i];
  s.onload = function () { if (w.Plotly) done(w.Plotly); else next(i + 1); };
  s.onerror = function () { next(i + 1); };
  document.head.appendChild(s);
}
next(0);`;

let serial = 0;
const newId = () => `ddpm-plot-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${++serial}`;

/** The text/html rendering: a sized div and a script that draws into it (plotly.js loaded once per page). */
export function plotHtml(figure: Figure, elementId: string = newId()): string {
  const json = plotlyJson(figure);
  const height = typeof json.layout.height === 'number' ? json.layout.height : 450;
  return `<div id="${elementId}" class="ddpm-plot" style="width:100%;height:${height}px;"></div>
<script type="text/javascript">
(function () {
var figure = ${scriptJson(json)};
function draw() {
  var el = document.getElementById(${JSON.stringify(elementId)});
  if (!el) return;
  if (!window.Plotly) { el.textContent = 'plotly.js could not be loaded (looked for ${PLOTLY_SOURCES_DOC})'; return; }
  window.Plotly.newPlot(el, figure.data, figure.layout, figure.config);
}${LOADER}
})();
</script>`;
}

/** The three-type bundle of one figure. */
export function plotBundle(figure: Figure): Record<string, unknown> {
  return { [PLOTLY_MIME]: plotlyJson(figure), 'text/html': plotHtml(figure), 'text/plain': plotSummary(figure) };
}

/**
 * Shows figure as one output (a MIME bundle: Plotly JSON + HTML + text) and returns a handle whose
 * update(figure) redraws that same output (live loss curves). Outside a kernel it prints the
 * one-line summary instead.
 */
export function plot(figure: Figure): PlotHandle {
  const displayId = newId();
  const show = (f: Figure, update: boolean) => {
    const bundle = plotBundle(f);
    const hook = findDisplayHook();
    if (hook) hook({ data: bundle, metadata: {}, transient: { display_id: displayId } }, update);
    else console.log(`${update ? '(updated) ' : ''}${bundle['text/plain']}`);
  };
  show(figure, false);
  // tslab prints a cell's last expression: `plot(...)` at the end of a cell shows this line, not the object
  return {
    displayId,
    update: (f: Figure) => show(f, true),
    [Symbol.for('nodejs.util.inspect.custom')]: () => `(plot ${displayId}: handle.update(figure) redraws it)`,
  } as PlotHandle;
}
