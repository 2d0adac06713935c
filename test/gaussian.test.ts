import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import { Rng, bitsPerDim, discretizedGaussianLogLikelihood, normalKL, normalLogPdf } from '../lib';
import { expectClose, expectNoLeak, take } from './support';

/** The standard normal CDF in float64 by Simpson quadrature of the density from the far tail. */
function phi(z: number): number {
  if (z < -12) return 0;
  const n = 20000;
  const a = -12;
  const h = (z - a) / n;
  const f = (x: number) => Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI);
  let sum = f(a) + f(z);
  for (let i = 1; i < n; i++) sum += f(a + i * h) * (i % 2 ? 4 : 2);
  return (sum * h) / 3;
}

/** Debian's python3 (the one with python3-mpmath); the first python3 on PATH may not see its modules. */
const PYTHON = '/usr/bin/python3';

/** True when PYTHON can import mpmath. */
function haveMpmath(): boolean {
  return spawnSync(PYTHON, ['-c', 'import mpmath'], { encoding: 'utf8' }).status === 0;
}

/** mpmath's answer for one bin: log P and its two derivatives, with the magnitudes they are differences of. */
interface BinReference {
  logP: number;
  dMean: number;
  dLogScale: number;
  /** (phi(hi) + phi(lo)) / (s P) and (|hi phi(hi)| + |lo phi(lo)|) / P: the terms dMean and dLogScale subtract. */
  dMeanScale: number;
  dLogScaleScale: number;
}

/**
 * The exact log-probability of each (x, mean, logScale) bin, from mpmath at 60 significant digits:
 * the Gaussian mass over [x - 1/255, x + 1/255] (edge bins open), each tail through erfc so that no
 * digit is lost, with d log P / d mean = -(phi(hi) - phi(lo))/(s P) and
 * d log P / d logScale = -(hi phi(hi) - lo phi(lo))/P, returned as float64.
 */
function mpmathBins(cases: number[][]): BinReference[] {
  const script = [
    'import json, sys',
    'from mpmath import mp, mpf, erfc, exp, log, sqrt, pi, inf, isinf',
    'mp.dps = 60',
    'pdf = lambda z: mpf(0) if isinf(z) else exp(-z * z / 2) / sqrt(2 * pi)',
    'zpdf = lambda z: mpf(0) if isinf(z) else z * pdf(z)',
    'out = []',
    'for x, m, ls in json.load(sys.stdin):',
    '    x, m, s = mpf(x), mpf(m), exp(mpf(ls))',
    '    half = mpf(1) / 255',
    '    lo = -inf if x < -0.999 else (x - half - m) / s',
    '    hi = inf if x > 0.999 else (x + half - m) / s',
    '    r = sqrt(2)',
    '    if lo >= 0: p = (erfc(lo / r) - erfc(hi / r)) / 2',
    '    elif hi <= 0: p = (erfc(-hi / r) - erfc(-lo / r)) / 2',
    '    else: p = 1 - (erfc(-lo / r) + erfc(hi / r)) / 2',
    '    out.append([float(log(p)), float(-(pdf(hi) - pdf(lo)) / (s * p)), float(-(zpdf(hi) - zpdf(lo)) / p),',
    '                float((pdf(hi) + pdf(lo)) / (s * p)), float((abs(zpdf(hi)) + abs(zpdf(lo))) / p)])',
    'print(json.dumps(out))',
  ].join('\n');
  const r = spawnSync(PYTHON, ['-c', script], { input: JSON.stringify(cases), encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`mpmath reference failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as number[][]).map(([logP, dMean, dLogScale, dMeanScale, dLogScaleScale]) => ({ logP, dMean, dLogScale, dMeanScale, dLogScaleScale }));
}

let gridReference: BinReference[] | null = null;

/** mpmathBins of binGrid(), computed once for the tests that share it. */
function gridBins(): BinReference[] {
  gridReference ??= mpmathBins(binGrid());
  return gridReference;
}

/** Skips (or, under CI=true, fails) a test when mpmath is missing. */
function requireMpmath(ctx: Mocha.Context): void {
  if (haveMpmath()) return;
  if (process.env.CI === 'true') throw new Error(`${PYTHON} cannot import mpmath: apt-get install -y python3-mpmath`);
  console.warn(`      skipped: ${PYTHON} cannot import mpmath (apt-get install -y python3-mpmath)`);
  ctx.skip();
}

/**
 * Every level of the 8-bit grid under means inside, at and beyond the data range and scales from
 * 0.001 (a bin is 7.8 sd wide) to 30 (a bin is 2.6e-4 sd wide): the tails reach far below 1e-30.
 * Float32 values, so the reference sees exactly what the tensors hold.
 */
function binGrid(): number[][] {
  const levels = Array.from({ length: 256 }, (_, k) => Math.fround(-1 + (2 * k) / 255));
  const cases: number[][] = [];
  for (const mean of [-0.93, -0.2, 0, 0.37, 0.98, 1.3]) {
    for (const scale of [0.001, 0.004, 0.02, 0.1, 0.5, 3, 30]) {
      for (const x of levels) cases.push([x, Math.fround(mean), Math.fround(Math.log(scale))]);
    }
  }
  return cases;
}

describe('Gaussian densities and divergences', () => {
  it('normalKL equals a Monte Carlo average of log p1(x) - log p2(x) over x ~ p1', () => {
    const rng = new Rng(7);
    const cases = [[0.3, Math.log(0.5), -0.2, Math.log(2)], [1, 0, 0, 0], [0, Math.log(0.01), 0.05, Math.log(0.02)]];
    const N = 200000;
    for (const [m1, lv1, m2, lv2] of cases) {
      const kl = take(normalKL(tf.scalar(m1), tf.scalar(lv1), tf.scalar(m2), tf.scalar(lv2)))[0];
      let sum = 0;
      let sumSq = 0;
      for (let i = 0; i < N; i++) {
        const x = m1 + Math.exp(lv1 / 2) * rng.normal();
        const d = -0.5 * (lv1 + (x - m1) ** 2 / Math.exp(lv1)) + 0.5 * (lv2 + (x - m2) ** 2 / Math.exp(lv2));
        sum += d;
        sumSq += d * d;
      }
      const mean = sum / N;
      const se = Math.sqrt((sumSq / N - mean * mean) / N);
      expectClose(kl, mean, 5 * se + 1e-6, 0, `KL for ${[m1, lv1, m2, lv2]}`);
    }
  });

  it('normalKL is 0 for equal Gaussians and broadcasts a scalar log-variance', () => {
    const m = tf.tensor2d([[0.1, -2], [3, 4]]);
    const kl = take(normalKL(m, tf.scalar(-1), m, tf.scalar(-1)));
    expectClose(kl, [0, 0, 0, 0], 1e-7);
    m.dispose();
  });

  it('normalLogPdf integrates to 1 and matches the float64 formula', () => {
    const xs = tf.linspace(-8, 10, 18001);
    const p = take(tf.exp(normalLogPdf(xs, tf.scalar(1), tf.scalar(Math.log(2.25)))));
    let integral = 0;
    for (let i = 0; i < p.length - 1; i++) integral += (p[i] + p[i + 1]) * 0.0005;
    expectClose(integral, 1, 1e-5);
    const lp = take(normalLogPdf(tf.scalar(2.5), tf.scalar(1), tf.scalar(Math.log(2.25))))[0];
    expectClose(lp, -0.5 * Math.log(2 * Math.PI * 2.25) - (1.5 * 1.5) / (2 * 2.25), 1e-6);
    xs.dispose();
  });

  it('the discretized likelihood sums to 1 over all 256 bins, for centred, shifted, narrow and edge-heavy Gaussians', async () => {
    const levels = tf.linspace(-1, 1, 256);
    for (const [mean, scale] of [[0, 0.5], [0.37, 0.02], [-0.99, 0.3], [1.4, 0.8], [0, 3]]) {
      const [m, logScale] = [tf.scalar(mean), tf.scalar(Math.log(scale))];
      const ll = await expectNoLeak(() => discretizedGaussianLogLikelihood(levels, m, logScale));
      tf.dispose([m, logScale]);
      const p = take(tf.exp(ll));
      const total = p.reduce((a, b) => a + b, 0);
      // 256 float32 probabilities each with ~1e-7 error from erf and rounding
      expectClose(total, 1, 3e-5, 0, `sum over bins for N(${mean}, ${scale}^2)`);
    }
    levels.dispose();
  });

  it('each bin probability equals the Gaussian mass over the bin by quadrature (edge bins open-ended)', () => {
    const mean = 0.1;
    const scale = 0.25;
    const cases = [-1, -1 + 2 / 255, 0.1 - 1 / 255, 0.1 + 1 / 255 + 2 / 255 * 3, 1];
    const x = tf.tensor1d(cases);
    const p = take(tf.exp(discretizedGaussianLogLikelihood(x, tf.scalar(mean), tf.scalar(Math.log(scale)))));
    cases.forEach((xi, i) => {
      const lo = xi <= -1 + 1e-9 ? -Infinity : xi - 1 / 255;
      const hi = xi >= 1 - 1e-9 ? Infinity : xi + 1 / 255;
      const cdf = (v: number) => (v === -Infinity ? 0 : v === Infinity ? 1 : phi((v - mean) / scale));
      // erf in float32 is good to ~2e-7 absolute per CDF value
      expectClose(p[i], cdf(hi) - cdf(lo), 1e-6, 1e-4, `bin at x=${xi}`);
    });
    x.dispose();
  });

  it('every bin probability from ~1 down to 1e-30, edge bins included, is right to 1e-4 relative (mpmath at 60 digits)', function () {
    requireMpmath(this);
    const cases = binGrid();
    const column = (j: number) => tf.tensor1d(cases.map((c) => c[j]));
    const [x, mean, logScale] = [column(0), column(1), column(2)];
    const got = take(discretizedGaussianLogLikelihood(x, mean, logScale));
    tf.dispose([x, mean, logScale]);
    const ref = gridBins().map((b) => b.logP);
    const floor = Math.log(1e-30);
    let kept = 0;
    let smallest = 0;
    const edgesKept = { lower: 0, upper: 0 };
    cases.forEach((c, i) => {
      if (!(ref[i] >= floor)) {
        // Beyond the claim, the log stays right: z passes through <= 7 float32 roundings (2^-24 each),
        // z^2 through 15, and |d log P| ~ z^2/2 rel(z^2) ~ |log P| rel(z^2), plus erfc's 1.2e-7.
        const tol = 16 * 2 ** -24 * Math.abs(ref[i]) + 1e-6;
        if (!(Math.abs(got[i] - ref[i]) <= tol)) expect.fail(`far-tail bin x=${c[0]} mean=${c[1]} logScale=${c[2]}: log P = ${got[i]}, mpmath ${ref[i]}`);
        return;
      }
      kept++;
      smallest = Math.min(smallest, ref[i]);
      if (c[0] === -1 && ref[i] < Math.log(1e-20)) edgesKept.lower++;
      if (c[0] === 1 && ref[i] < Math.log(1e-20)) edgesKept.upper++;
      // relative error of the probability: |P_got / P_ref - 1| = |expm1(log P_got - log P_ref)|
      const rel = Math.abs(Math.expm1(got[i] - ref[i]));
      if (!(rel <= 1e-4)) expect.fail(`bin x=${c[0]} mean=${c[1]} logScale=${c[2]}: P = ${Math.exp(got[i])}, mpmath ${Math.exp(ref[i])} (relative error ${rel})`);
    });
    // the grid must really span the claim: from P ~ 1 to P ~ 1e-30, far-tail edge bins on both sides
    expect(kept).to.be.above(2000);
    expect(smallest).to.be.below(Math.log(1e-28));
    expect(Math.max(...ref)).to.be.above(Math.log(0.99));
    expect(edgesKept.lower, 'lower edge bins below 1e-20').to.be.above(0);
    expect(edgesKept.upper, 'upper edge bins below 1e-20').to.be.above(0);
  });

  it('the gradients of log P in mean and logScale match their closed forms (mpmath) for every bin down to 1e-30', function () {
    requireMpmath(this);
    const cases = binGrid();
    const ref = gridBins();
    const keep = cases.map((_, i) => i).filter((i) => ref[i].logP >= Math.log(1e-30));
    const column = (j: number) => tf.tensor1d(keep.map((i) => cases[i][j]));
    const [x, mean, logScale] = [column(0), column(1), column(2)];
    const [gMean, gLogScale] = tf.grads((m: tf.Tensor, l: tf.Tensor) => discretizedGaussianLogLikelihood(x, m, l).sum())([mean, logScale]).map(take);
    tf.dispose([x, mean, logScale]);
    // Each derivative is a difference of two edge terms; float32 rounding of z (~1e-7 relative) moves
    // each term by ~z^2 1e-7 (<= 1.4e-5 at P = 1e-30) and the tail form's log1p(-exp(d)) divides the
    // difference by 1 - e^d >= 1 - e^-0.4: 1e-4 of the terms' magnitudes bounds both with room.
    keep.forEach((i, k) => {
      const r = ref[i];
      const where = `bin x=${cases[i][0]} mean=${cases[i][1]} logScale=${cases[i][2]} (log P = ${r.logP})`;
      expectClose(gMean[k], r.dMean, 1e-4 * r.dMeanScale + 1e-6, 0, `d log P / d mean, ${where}`);
      expectClose(gLogScale[k], r.dLogScale, 1e-4 * r.dLogScaleScale + 1e-6, 0, `d log P / d logScale, ${where}`);
    });
  });

  it('the discretized likelihood has finite gradients in mean and logScale everywhere, far tails and edge bins included', () => {
    // Every branch is evaluated on safe inputs where tf.where does not select it: a NaN there would
    // still reach the gradient (0 * NaN), so this covers all 256 levels under near, far and wide Gaussians.
    const levels = tf.linspace(-1, 1, 256);
    for (const [mean, scale] of [[0, 0.5], [0.37, 0.001], [-0.99, 0.02], [1.4, 0.01], [0, 30], [0.5, 3e-5]]) {
      const [m, ls] = [tf.fill([256], mean), tf.fill([256], Math.log(scale))];
      const grads = tf.grads((mm: tf.Tensor, ll: tf.Tensor) => discretizedGaussianLogLikelihood(levels, mm, ll).sum())([m, ls]);
      const values = grads.map(take);
      values.forEach((g, j) => expect(g.every(Number.isFinite), `d/d${j ? 'logScale' : 'mean'} finite for N(${mean}, ${scale}^2)`).to.equal(true));
      tf.dispose([m, ls]);
    }
    levels.dispose();
  });

  it('rejects data outside [-1, 1] and incompatible shapes', () => {
    const x = tf.tensor1d([0, 1.5]);
    expect(() => discretizedGaussianLogLikelihood(x, tf.scalar(0), tf.scalar(0))).to.throw(/x must lie in \[-1, 1\].*got values in \[0, 1.5\]/);
    expect(() => normalKL(tf.ones([2]), tf.ones([3]), tf.ones([2]), tf.ones([2]))).to.throw(/broadcast-compatible shapes, got \[2\], \[3\]/);
    // variance 0 (log-variance -Infinity) or NaN input would give a silent NaN: both are errors
    expect(() => normalKL(tf.scalar(0), tf.scalar(-Infinity), tf.scalar(0), tf.scalar(0))).to.throw(/logVar1 must contain only finite numbers/);
    expect(() => normalLogPdf(tf.scalar(NaN), tf.scalar(0), tf.scalar(0))).to.throw(/x must contain only finite numbers/);
    expect(() => discretizedGaussianLogLikelihood(tf.scalar(0), tf.scalar(NaN), tf.scalar(0))).to.throw(/mean must contain only finite numbers/);
    x.dispose();
  });

  it('bitsPerDim converts nats summed over D dimensions', () => {
    expectClose(bitsPerDim(784 * Math.LN2 * 3.5, 784), 3.5, 1e-12);
    expect(() => bitsPerDim(NaN, 2)).to.throw(/nats must be a finite number, got NaN/);
    expect(() => bitsPerDim(1, 0)).to.throw(/D must be an integer >= 1, got 0/);
  });
});
