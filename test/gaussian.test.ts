import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
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
