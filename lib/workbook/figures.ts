/**
 * Figure helpers the notebooks share instead of copying: a live loss curve fed by train()'s
 * onProgress, a loss-per-step figure, scatter traces of [n, 2] points, side-by-side square panels,
 * and image grids of digits (drawn by lib/data/image.ts). Each returns plain Plotly JSON or shows it
 * with plot().
 */
import type { Tensor } from '@tensorflow/tfjs';
import type { TrainProgress } from '../index';
import { library } from './library';
import { PlotHandle, plot } from './plot';
import type { Figure } from './report';

/** A row-major [n, 2] point set: a Float32Array (or any array-like of 2n numbers), or a [n, 2] tensor. */
export type Points2d = ArrayLike<number> | Tensor;

const isTensor = (p: unknown): p is Tensor => p !== null && typeof p === 'object' && typeof (p as Tensor).dataSync === 'function' && Array.isArray((p as Tensor).shape);

/** The values of a [n, 2] point set, row-major; a tensor is read with dataSync (figures are small, cpu-side). */
function pointValues(fn: string, points: Points2d): ArrayLike<number> {
  if (isTensor(points)) {
    if (points.shape.length !== 2 || points.shape[1] !== 2) throw new Error(`${fn}: points must be a [n, 2] tensor, got shape [${points.shape.join(', ')}]`);
    return points.dataSync();
  }
  if (points === null || typeof points !== 'object' || typeof points.length !== 'number') {
    throw new Error(`${fn}: points must be a [n, 2] tensor or a row-major array of 2n numbers, got ${points === null ? 'null' : typeof points}`);
  }
  if (points.length % 2 !== 0) throw new Error(`${fn}: a row-major [n, 2] array has an even length, got ${points.length}`);
  return points;
}

/** The first `max` (default: all) rows of a [n, 2] point set as the x and y lists of a trace. */
export function columns(points: Points2d, max = Infinity): { x: number[]; y: number[] } {
  const p = pointValues('columns', points);
  if (!(max >= 0)) throw new Error(`columns: max must be >= 0, got ${max}`);
  const n = Math.min(p.length / 2, max);
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    x.push(p[2 * i]);
    y.push(p[2 * i + 1]);
  }
  return { x, y };
}

/** What scatterTrace draws and where. */
export interface ScatterOptions {
  name?: string;
  color?: string;
  /** Panel suffix: '' for x/y, '2' for x2/y2, ... (see panelAxes). Default ''. */
  axis?: string;
  /** Rows drawn at most (the first ones); default 1,000. */
  max?: number;
  /** Marker size in pixels; default 3. */
  size?: number;
  /** Marker opacity; default 0.6. */
  opacity?: number;
  showlegend?: boolean;
}

/** A markers trace of the first `max` points of a [n, 2] tensor or row-major array. */
export function scatterTrace(points: Points2d, options: ScatterOptions = {}): Record<string, unknown> {
  const axis = options.axis ?? '';
  const trace: Record<string, unknown> = {
    type: 'scatter',
    mode: 'markers',
    ...columns(points, options.max ?? 1_000),
    xaxis: `x${axis}`,
    yaxis: `y${axis}`,
    marker: { size: options.size ?? 3, opacity: options.opacity ?? 0.6, ...(options.color ? { color: options.color } : {}) },
  };
  if (options.name !== undefined) trace.name = options.name;
  if (options.showlegend !== undefined) trace.showlegend = options.showlegend;
  return trace;
}

/**
 * Layout fields for `count` side-by-side panels (rows x columns, default one row), axes x, x2, ...
 * each over `range` on both coordinates with the y axis anchored to its x axis (squares stay square).
 * Spread it into a layout: `layout: { title, ...panelAxes({ count: 3, range: [-2.6, 2.6] }) }`.
 */
export function panelAxes(options: { count: number; range: [number, number]; rows?: number; columns?: number; ticks?: boolean }): Record<string, unknown> {
  const { count, range } = options;
  if (!Number.isInteger(count) || count < 1) throw new Error(`panelAxes: count must be an integer >= 1, got ${count}`);
  if (!Array.isArray(range) || range.length !== 2 || !(range[0] < range[1])) throw new Error(`panelAxes: range must be [lo, hi] with lo < hi, got ${JSON.stringify(range)}`);
  const rows = options.rows ?? 1;
  const cols = options.columns ?? Math.ceil(count / rows);
  if (rows * cols < count) throw new Error(`panelAxes: ${rows} rows x ${cols} columns cannot hold ${count} panels`);
  const ticks = options.ticks ?? true;
  const layout: Record<string, unknown> = {};
  if (count > 1) layout.grid = { rows, columns: cols, pattern: 'independent' };
  for (let k = 1; k <= count; k++) {
    const suffix = k === 1 ? '' : String(k);
    layout[`xaxis${suffix}`] = { range: [...range], ...(ticks ? {} : { showticklabels: false }) };
    layout[`yaxis${suffix}`] = { range: [...range], ...(ticks ? {} : { showticklabels: false }), scaleanchor: `x${suffix}` };
  }
  return layout;
}

/** A live loss plot: pass onProgress to train(), call finish() after it. */
export interface LiveLossPlot {
  /**
   * train()'s onProgress: records the report and redraws the curve with the step, loss and speed in
   * the title: the first report, then one whose elapsedSeconds is minRedrawSeconds past the last drawn.
   */
  onProgress(p: TrainProgress): void;
  /** Redraws once more, every report included, with the final title `${title}: ${steps} steps in ${seconds} s${note}`. */
  finish(run: { seconds: number }, note?: string): void;
  /** The figure as drawn last (for tests, or to plot it again). */
  figure(): Figure;
  /** Steps and mean losses of the reports so far. */
  readonly steps: number[];
  readonly losses: number[];
  readonly handle: PlotHandle;
}

/** Options of liveLossPlot. */
export interface LiveLossOptions {
  /** What is trained, e.g. 'Swiss roll'; the titles start with it. */
  title: string;
  /** Training steps: the x axis spans [0, steps]. */
  steps: number;
  /** A horizontal reference line, e.g. the loss of the exact eps* (drawn dashed). */
  reference?: { y: number; name: string };
  yTitle?: string;
  height?: number;
  /**
   * Seconds of training (the reports' elapsedSeconds) between two redraws; reports in between are
   * kept and drawn with the next one. Default 0.5: a fast run redraws a few times, not at every
   * report (each redraw re-renders the whole figure in the reader's browser).
   */
  minRedrawSeconds?: number;
}

const rate = (stepsPerSecond: number) => (stepsPerSecond >= 10 ? stepsPerSecond.toFixed(0) : stepsPerSecond.toFixed(2));

/**
 * Shows a loss curve that train()'s onProgress redraws in place (one output: plot's update), on a
 * log y axis: the mean loss of each report, and optionally a dashed reference level.
 */
export function liveLossPlot(options: LiveLossOptions): LiveLossPlot {
  const { title, steps } = options;
  if (typeof title !== 'string' || title.trim() === '') throw new Error(`liveLossPlot: title must be a non-empty string, got ${JSON.stringify(title)}`);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`liveLossPlot: steps must be an integer >= 1, got ${JSON.stringify(steps)}`);
  const minRedraw = options.minRedrawSeconds ?? 0.5;
  if (!(Number.isFinite(minRedraw) && minRedraw >= 0)) throw new Error(`liveLossPlot: minRedrawSeconds must be a number >= 0, got ${JSON.stringify(options.minRedrawSeconds)}`);
  const ref = options.reference;
  if (ref !== undefined && !Number.isFinite(ref.y)) throw new Error(`liveLossPlot: reference.y must be a finite number, got ${ref.y}`);
  const xs: number[] = [];
  const ys: number[] = [];
  let current: Figure;
  const build = (text: string): Figure => ({
    data: [
      { type: 'scatter', mode: 'lines+markers', name: 'mean loss per report', x: [...xs], y: [...ys], marker: { size: 4 } },
      ...(ref ? [{ type: 'scatter', mode: 'lines', name: ref.name, x: [0, steps], y: [ref.y, ref.y], line: { dash: 'dash', color: 'black' } }] : []),
    ],
    layout: {
      title: { text },
      height: options.height ?? 320,
      showlegend: ref !== undefined,
      xaxis: { title: { text: 'step' }, range: [0, steps] },
      yaxis: { title: { text: options.yTitle ?? 'simple loss' }, type: 'log' },
    },
  });
  current = build(`${title}: training...`);
  const handle = plot(current);
  /** elapsedSeconds of the report drawn last (null: none yet). */
  let drawnAt: number | null = null;
  const redraw = (text: string) => {
    current = build(text);
    handle.update(current);
  };
  return {
    onProgress(p: TrainProgress) {
      xs.push(p.step);
      ys.push(p.loss);
      if (drawnAt !== null && p.elapsedSeconds - drawnAt < minRedraw) return;
      drawnAt = p.elapsedSeconds;
      redraw(`${title}: step ${p.step} / ${p.steps}, loss ${p.loss.toFixed(4)}, ${rate(p.stepsPerSecond)} steps/s`);
    },
    finish(run: { seconds: number }, note = '') {
      redraw(`${title}: ${steps} steps in ${run.seconds.toFixed(1)} s${note}`);
    },
    figure: () => current,
    steps: xs,
    losses: ys,
    handle,
  };
}

/**
 * The loss of every step (every k-th when there are more than ~1,500) in grey, and its running mean
 * over `window` steps, on a log axis.
 */
export function lossCurveFigure(losses: ArrayLike<number>, options: { title: string; window: number; height?: number }): Figure {
  const { window } = options;
  if (!Number.isInteger(window) || window < 1) throw new Error(`lossCurveFigure: window must be an integer >= 1, got ${window}`);
  if (losses.length < 1) throw new Error('lossCurveFigure: losses is empty');
  const k = Math.max(1, Math.ceil(losses.length / 1_500));
  const steps: number[] = [];
  const raw: number[] = [];
  const smooth: number[] = [];
  let acc = 0;
  for (let i = 0; i < losses.length; i++) {
    acc += losses[i] - (i >= window ? losses[i - window] : 0);
    if (i % k === 0 || i === losses.length - 1) {
      steps.push(i + 1);
      raw.push(losses[i]);
      smooth.push(acc / Math.min(i + 1, window));
    }
  }
  return {
    data: [
      { type: 'scatter', mode: 'lines', name: 'per step', x: steps, y: raw, line: { color: '#bbb', width: 1 } },
      { type: 'scatter', mode: 'lines', name: `mean of ${window} steps`, x: steps, y: smooth, line: { color: '#1f77b4', width: 2 } },
    ],
    layout: { title: { text: options.title }, height: options.height ?? 340, xaxis: { title: { text: 'step' } }, yaxis: { title: { text: 'loss' }, type: 'log' } },
  };
}

/** A figure showing one image (a data: URI) without axes. */
export function imageFigure(source: string, title: string, height = 320): Figure {
  if (typeof source !== 'string' || !source.startsWith('data:image/')) throw new Error(`imageFigure: source must be a data:image/... URI, got ${JSON.stringify(String(source).slice(0, 40))}`);
  return {
    data: [{ type: 'image', source }],
    layout: { title: { text: title }, height, xaxis: { visible: false }, yaxis: { visible: false, scaleanchor: 'x' }, margin: { l: 10, r: 10, t: 40, b: 10 } },
  };
}

/**
 * Digits in [-1, 1] (row-major [n, size, size], one channel) as one image figure: `cols` per row,
 * dark ink on white, each pixel a scale x scale block (lib/data/image.ts imageGrid).
 */
export function digitGridFigure(pixels: ArrayLike<number>, options: { n: number; cols: number; title: string; size?: number; scale?: number; height?: number }): Figure {
  const uri = library().imageGridDataUri(pixels, { n: options.n, size: options.size ?? 28, cols: options.cols, scale: options.scale ?? 2, invert: true });
  return imageFigure(uri, options.title, options.height);
}
