/**
 * The workbook's statistics and figure helpers (lib/workbook/stats.ts, figures.ts) and the PNG grid
 * they draw with (lib/data/image.ts): values against hand-computed ones, figures by their fields,
 * the PNG decoded back to its pixel levels.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { PNG } from 'pngjs';
import { imageGrid, imageGridDataUri, imageGridPng } from '../lib/data/image';
import {
  DisplayMessage,
  PLOTLY_MIME,
  columns,
  densityHistogram,
  digitGridFigure,
  imageFigure,
  liveLossPlot,
  lossCurveFigure,
  meanOf,
  meanStdErr,
  lossTenths,
  normalPdf,
  panelAxes,
  sampleMoments,
  scatterTrace,
  varianceStdErr,
} from '../lib/workbook';

type Jupyter = { lastWriteDisplayData: ((m: DisplayMessage, update: boolean) => void) | null };

/** Runs fn with tslab's display hook capturing every display message. */
function displayed(fn: () => void): [DisplayMessage, boolean][] {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const jupyter = require('tslab/dist/jupyter') as Jupyter;
  const messages: [DisplayMessage, boolean][] = [];
  jupyter.lastWriteDisplayData = (m, update) => messages.push([m, update]);
  try {
    fn();
  } finally {
    jupyter.lastWriteDisplayData = null;
  }
  return messages;
}

describe('statistics helpers (lib/workbook/stats.ts)', () => {
  // xs = 2, 4, 4, 4, 5, 5, 7, 9: sum 40, mean 5; squared deviations 9, 1, 1, 1, 0, 0, 4, 16 sum to 32,
  // so the (n - 1) variance is 32/7 and se = sqrt(32/7 / 8) = sqrt(4/7); fourth powers 81, 1, 1, 1, 0, 0, 16, 256
  // sum to 356, so m4/n - (m2/n)^2 = 44.5 - 16 = 28.5 and se(variance) = sqrt(28.5 / 8).
  const xs = Float32Array.from([2, 4, 4, 4, 5, 5, 7, 9]);

  it('meanStdErr gives the mean, the (n - 1) standard deviation and se = sd / sqrt(n) of a hand-computed sample', () => {
    const r = meanStdErr(xs);
    expect(r.n).to.equal(8);
    expect(r.mean).to.equal(5); // sums of small integers are exact in float64
    // float64 sums of 8 exact terms, then one sqrt: a few ulps
    expect(r.sd).to.be.closeTo(Math.sqrt(32 / 7), 1e-15);
    expect(r.se).to.be.closeTo(Math.sqrt(4 / 7), 1e-15);
    expect(meanOf(xs)).to.equal(5);
  });

  it('sampleMoments and varianceStdErr give the (n - 1) variance and its fourth-moment standard error', () => {
    const m = sampleMoments(xs);
    expect(m.variance).to.be.closeTo(32 / 7, 1e-15);
    expect(m.seMean).to.be.closeTo(Math.sqrt(4 / 7), 1e-15);
    expect(m.seVariance).to.be.closeTo(Math.sqrt(28.5 / 8), 1e-15);
    expect(varianceStdErr(xs)).to.deep.equal({ variance: m.variance, se: m.seVariance, n: 8 });
  });

  it('lossTenths compares the first and the last tenth of a run: windows of max(10, n / 10) steps, at most half the run', () => {
    // 300 losses: 1 for the first 30 steps, then 0.5 for the next 240, then 0.25 and 0.75 alternating: the
    // windows are exactly steps 1-30 (mean 1, se 0) and 271-300 (mean 0.5, sd of 15 x 0.25 and 15 x 0.75).
    const losses = Float32Array.from({ length: 300 }, (_, i) => (i < 30 ? 1 : i < 270 ? 0.5 : i % 2 ? 0.75 : 0.25));
    const r = lossTenths(losses);
    expect(r.window).to.equal(30);
    expect([r.first.mean, r.first.se, r.first.n]).to.deep.equal([1, 0, 30]);
    expect(r.last.mean).to.equal(0.5);
    expect(r.last.sd).to.be.closeTo(Math.sqrt((30 * 0.0625) / 29), 1e-15);
    expect(lossTenths(new Float32Array(50).fill(1)).window, '10 steps at least').to.equal(10);
    expect(lossTenths(new Float32Array(20).fill(1)).window, 'never more than half').to.equal(10);
    expect(() => lossTenths(new Float32Array(19))).to.throw('lossTenths: xs must hold at least 20 value(s), got 19');
  });

  it('refuses too few values and non-finite ones, naming the function and the entry', () => {
    expect(() => meanStdErr([1])).to.throw('meanStdErr: xs must hold at least 2 value(s), got 1');
    expect(() => meanOf([])).to.throw('meanOf: xs must hold at least 1 value(s), got 0');
    expect(() => sampleMoments([1, NaN, 2])).to.throw('sampleMoments: xs[1] = NaN; every value must be a finite number');
    expect(() => normalPdf(0, 0, 0)).to.throw('normalPdf: variance must be > 0, got 0');
  });

  it('normalPdf is the Gaussian density: 1/sqrt(2 pi) at the mean, e^{-1/2} of that one sd away', () => {
    expect(normalPdf(0, 0, 1)).to.be.closeTo(0.3989422804014327, 1e-16);
    expect(normalPdf(3, 1, 4)).to.be.closeTo(0.3989422804014327 * Math.exp(-0.5) / 2, 1e-16);
  });

  it('densityHistogram counts into equal bins and divides by n times the width, out-of-range values counted in n only', () => {
    const h = densityHistogram([0.1, 0.2, 0.6, 1.4, 5], 0, 2, 4);
    expect(h.width).to.equal(0.5);
    expect(h.centers).to.deep.equal([0.25, 0.75, 1.25, 1.75]);
    expect(h.counts).to.deep.equal([2, 1, 1, 0]);
    expect(h.density).to.deep.equal([2 / 2.5, 1 / 2.5, 1 / 2.5, 0]);
    expect(() => densityHistogram([1], 1, 1, 3)).to.throw('densityHistogram: need finite lo < hi, got lo = 1, hi = 1');
  });
});

describe('figure helpers (lib/workbook/figures.ts)', () => {
  it('columns and scatterTrace split row-major [n, 2] points (array or tensor) into x and y, first `max` rows', () => {
    const p = Float32Array.from([1, 2, 3, 4, 5, 6]);
    expect(columns(p)).to.deep.equal({ x: [1, 3, 5], y: [2, 4, 6] });
    expect(columns(p, 2)).to.deep.equal({ x: [1, 3], y: [2, 4] });
    const before = tf.memory().numTensors;
    const t = tf.tensor2d(p, [3, 2]);
    expect(columns(t)).to.deep.equal({ x: [1, 3, 5], y: [2, 4, 6] });
    t.dispose();
    expect(tf.memory().numTensors).to.equal(before);
    expect(scatterTrace(p, { name: 'data', color: '#123', axis: '2', max: 1 })).to.deep.equal({
      type: 'scatter', mode: 'markers', x: [1], y: [2], xaxis: 'x2', yaxis: 'y2', name: 'data', marker: { size: 3, opacity: 0.6, color: '#123' },
    });
    expect(() => columns(Float32Array.from([1, 2, 3]))).to.throw('columns: a row-major [n, 2] array has an even length, got 3');
    const wrong = tf.zeros([2, 3]);
    expect(() => columns(wrong)).to.throw('columns: points must be a [n, 2] tensor, got shape [2, 3]');
    wrong.dispose();
  });

  it('panelAxes lays out independent square panels: x, x2, ... with each y anchored to its x', () => {
    expect(panelAxes({ count: 2, range: [-1, 1] })).to.deep.equal({
      grid: { rows: 1, columns: 2, pattern: 'independent' },
      xaxis: { range: [-1, 1] }, yaxis: { range: [-1, 1], scaleanchor: 'x' },
      xaxis2: { range: [-1, 1] }, yaxis2: { range: [-1, 1], scaleanchor: 'x2' },
    });
    const nine = panelAxes({ count: 9, rows: 3, range: [0, 1], ticks: false });
    expect(nine.grid).to.deep.equal({ rows: 3, columns: 3, pattern: 'independent' });
    expect(nine.yaxis9).to.deep.equal({ range: [0, 1], showticklabels: false, scaleanchor: 'x9' });
    expect(() => panelAxes({ count: 5, rows: 2, columns: 2, range: [0, 1] })).to.throw('panelAxes: 2 rows x 2 columns cannot hold 5 panels');
  });

  it('liveLossPlot shows one figure and redraws it in place with each report, then the final title', () => {
    let live!: ReturnType<typeof liveLossPlot>;
    const messages = displayed(() => {
      live = liveLossPlot({ title: 'Toy', steps: 100, reference: { y: 0.25, name: 'loss of eps*' } });
      live.onProgress({ step: 50, steps: 100, loss: 0.5, stepsPerSecond: 123.4, elapsedSeconds: 0.4 });
      live.onProgress({ step: 100, steps: 100, loss: 0.3, stepsPerSecond: 2.5, elapsedSeconds: 40 });
      live.finish({ seconds: 40.04 }, ' on cpu');
    });
    expect(messages.map(([, update]) => update)).to.deep.equal([false, true, true, true]);
    expect(new Set(messages.map(([m]) => m.transient.display_id)).size, 'one output, redrawn').to.equal(1);
    const titles = messages.map(([m]) => ((m.data[PLOTLY_MIME] as { layout: { title: { text: string } } }).layout.title.text));
    expect(titles).to.deep.equal([
      'Toy: training...',
      'Toy: step 50 / 100, loss 0.5000, 123 steps/s',
      'Toy: step 100 / 100, loss 0.3000, 2.50 steps/s',
      'Toy: 100 steps in 40.0 s on cpu',
    ]);
    const f = live.figure();
    expect(f.data[0]).to.include({ type: 'scatter', mode: 'lines+markers' });
    expect(f.data[0].x).to.deep.equal([50, 100]);
    expect(f.data[0].y).to.deep.equal([0.5, 0.3]);
    expect(f.data[1]).to.deep.include({ name: 'loss of eps*', x: [0, 100], y: [0.25, 0.25] });
    expect(f.layout).to.deep.include({ xaxis: { title: { text: 'step' }, range: [0, 100] }, yaxis: { title: { text: 'simple loss' }, type: 'log' } });
    expect(live.steps).to.deep.equal([50, 100]);
    expect(() => liveLossPlot({ title: 'x', steps: 0 })).to.throw('liveLossPlot: steps must be an integer >= 1, got 0');
    expect(() => liveLossPlot({ title: 'x', steps: 5, minRedrawSeconds: -1 })).to.throw('liveLossPlot: minRedrawSeconds must be a number >= 0, got -1');
  });

  it('liveLossPlot redraws at most once per minRedrawSeconds of training; the reports in between are drawn with the next redraw and by finish', () => {
    let live!: ReturnType<typeof liveLossPlot>;
    const report = (step: number, elapsedSeconds: number) => live.onProgress({ step, steps: 6, loss: 1 / step, stepsPerSecond: 10, elapsedSeconds });
    const messages = displayed(() => {
      live = liveLossPlot({ title: 'Fast', steps: 6 });
      report(1, 0.1); // the first report: drawn
      report(2, 0.2);
      report(3, 0.59); // 0.49 s after the last drawn: kept, not drawn
      report(4, 0.6); // 0.5 s: drawn, with 2 and 3
      report(5, 0.7);
      live.finish({ seconds: 0.8 });
    });
    const xsDrawn = messages.map(([m]) => (m.data[PLOTLY_MIME] as { data: { x: number[] }[] }).data[0].x);
    expect(xsDrawn).to.deep.equal([[], [1], [1, 2, 3, 4], [1, 2, 3, 4, 5]]);
    expect(live.steps).to.deep.equal([1, 2, 3, 4, 5]);
  });

  it('lossCurveFigure draws each step and the running mean over the window', () => {
    const f = lossCurveFigure(Float32Array.from([4, 2, 3, 1]), { title: 'L', window: 2 });
    expect(f.data[0]).to.deep.include({ name: 'per step', x: [1, 2, 3, 4], y: [4, 2, 3, 1] });
    // running means over at most 2 steps: 4, (4 + 2)/2, (2 + 3)/2, (3 + 1)/2
    expect(f.data[1]).to.deep.include({ name: 'mean of 2 steps', x: [1, 2, 3, 4], y: [4, 3, 2.5, 2] });
  });

  it('digitGridFigure is an axis-free image trace whose PNG is the dark-on-white digit grid', () => {
    const pixels = Float32Array.from({ length: 2 * 2 * 2 }, (_, i) => (i < 4 ? -1 : 1)); // digit 0 all -1, digit 1 all +1
    const f = digitGridFigure(pixels, { n: 2, cols: 2, size: 2, scale: 1, title: 'two' });
    expect(f.data).to.have.length(1);
    expect(f.data[0].type).to.equal('image');
    expect(f.layout).to.deep.include({ title: { text: 'two' }, xaxis: { visible: false } });
    const png = PNG.sync.read(Buffer.from(String(f.data[0].source).replace(/^data:image\/png;base64,/, ''), 'base64'));
    // 2 images of 2 px with 2-px gaps: 2 + 2 + 2 + 2 + 2 = 10 wide, 6 high
    expect([png.width, png.height]).to.deep.equal([10, 6]);
    const at = (x: number, y: number) => png.data[4 * (y * png.width + x)];
    expect(at(2, 2), 'x = -1 inverted is white').to.equal(255);
    expect(at(6, 2), 'x = +1 inverted is black').to.equal(0);
    expect(() => imageFigure('x.png', 't')).to.throw(/imageFigure: source must be a data:image\/\.\.\. URI/);
  });
});

describe('PNG image grids (lib/data/image.ts)', () => {
  it('imageGrid writes each pixel as round((v + 1)/2 * 255), clipped, in its cell, with white 2-px gaps', () => {
    // one 2 x 2 image: -1, -0.5, 0.5, 3 (clipped to 1)
    const png = PNG.sync.read(imageGrid(Float32Array.from([-1, -0.5, 0.5, 3]), { n: 1, size: 2, scale: 2 }));
    expect([png.width, png.height]).to.deep.equal([2 + 4 + 2, 2 + 4 + 2]);
    const level = (x: number, y: number) => Array.from(png.data.subarray(4 * (y * png.width + x), 4 * (y * png.width + x) + 4));
    expect(level(0, 0), 'gap').to.deep.equal([255, 255, 255, 255]);
    // round(0.25 * 255) = round(63.75) = 64; round(0.75 * 255) = round(191.25) = 191
    expect([level(2, 2), level(3, 3), level(4, 2), level(2, 4), level(5, 5)].map((p) => p[0])).to.deep.equal([0, 0, 64, 191, 255]);
    expect(level(4, 2)).to.deep.equal([64, 64, 64, 255]);
  });

  it('imageGridPng (the CLI and GPU check writer) and imageGridDataUri draw the same PNG as imageGrid', () => {
    const pixels = Float32Array.from({ length: 3 * 4 * 4 * 3 }, (_, i) => Math.sin(i));
    const png = imageGrid(pixels, { n: 3, size: 4, channels: 3, scale: 2 });
    expect(imageGridPng(pixels, 3, 4, 3, 2).equals(png)).to.equal(true);
    expect(imageGridDataUri(pixels, { n: 3, size: 4, channels: 3, scale: 2 })).to.equal(`data:image/png;base64,${png.toString('base64')}`);
    // 3 images: ceil(sqrt 3) = 2 columns, 2 rows
    const decoded = PNG.sync.read(png);
    expect([decoded.width, decoded.height]).to.deep.equal([2 * 8 + 3 * 2, 2 * 8 + 3 * 2]);
  });

  it('refuses too few pixels and bad sizes, naming the parameter', () => {
    expect(() => imageGrid(new Float32Array(3), { n: 1, size: 2 })).to.throw('imageGrid: pixels holds 3 values, fewer than n * size * size * channels = 1 * 2 * 2 * 1 = 4');
    expect(() => imageGrid(new Float32Array(4), { n: 1, size: 2, channels: 2 })).to.throw('imageGrid: channels must be 1 or 3, got 2');
    expect(() => imageGrid(new Float32Array(4), { n: 0, size: 2 })).to.throw('imageGrid: n must be an integer >= 1, got 0');
  });
});
