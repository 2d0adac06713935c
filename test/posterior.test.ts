import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  linearSchedule,
  posteriorMeanFromEps,
  predictEpsFromV,
  predictEpsFromX0,
  predictV,
  predictX0FromEps,
  predictX0FromV,
  qPosterior,
  qSample,
  qStep,
} from '../lib';
import { expectClose, expectNoLeak, take } from './support';

/** Simpson's rule over [a, b] with n (even) intervals, float64. */
function simpson(f: (x: number) => number, a: number, b: number, n = 4000): number {
  const h = (b - a) / n;
  let sum = f(a) + f(b);
  for (let i = 1; i < n; i++) sum += f(a + i * h) * (i % 2 ? 4 : 2);
  return (sum * h) / 3;
}

describe('posterior q(x_{t-1} | x_t, x_0)', () => {
  it('mean and variance equal the 1-D Bayes posterior q(x_t|x_{t-1}) q(x_{t-1}|x_0) / q(x_t|x_0) integrated numerically', () => {
    const s = linearSchedule(100, 1e-3, 0.05);
    for (const [t, x0v, xtv] of [[2, 0.8, 0.5], [30, -1.2, 0.4], [100, 0.3, -1.7]] as const) {
      const a = s.alphas[t];
      const abarPrev = s.alphaBars[t - 1];
      const unnorm = (y: number) =>
        Math.exp(-((xtv - Math.sqrt(a) * y) ** 2) / (2 * (1 - a)) - (y - Math.sqrt(abarPrev) * x0v) ** 2 / (2 * (1 - abarPrev)));
      // The posterior has sd <= sqrt(beta_t) < 0.23; integrate +-12 of it around a rough centre.
      const c = Math.sqrt(abarPrev) * x0v;
      const w = 12 * Math.sqrt(Math.min(1 - abarPrev, 1));
      const Z = simpson(unnorm, c - w, c + w);
      const mean = simpson((y) => y * unnorm(y), c - w, c + w) / Z;
      const variance = simpson((y) => (y - mean) ** 2 * unnorm(y), c - w, c + w) / Z;
      const x0 = tf.tensor2d([[x0v]]);
      const xt = tf.tensor2d([[xtv]]);
      const q = qPosterior(s, x0, xt, t);
      // float32 arithmetic of O(1) numbers: ~1e-6; quadrature error is far below it.
      expectClose(take(q.mean), mean, 2e-6, 0, `mu_q at t=${t}`);
      expectClose(take(q.variance), variance, 1e-9, 1e-5, `sigma_q^2 at t=${t}`);
      expectClose(take(q.logVariance), Math.log(variance), 1e-5, 0, 'log-variance');
      tf.dispose([x0, xt]);
    }
  });

  it('Monte Carlo conditioning: regressing x_{t-1} on x_t over forward draws gives mu_q slope, intercept and sigma_q^2', () => {
    const s = linearSchedule(20, 0.01, 0.2);
    const t = 12;
    const N = 40000;
    const x0v = 0.9;
    const x0 = tf.fill([N, 1], x0v);
    const xPrev = qSample(s, x0, t - 1, tf.randomNormal([N, 1], 0, 1, 'float32', 5));
    const xt = qStep(s, xPrev, t, tf.randomNormal([N, 1], 0, 1, 'float32', 6));
    const X = take(xt);
    const Y = take(xPrev);
    let mx = 0, my = 0;
    for (let i = 0; i < N; i++) { mx += X[i]; my += Y[i]; }
    mx /= N; my /= N;
    let sxx = 0, sxy = 0;
    for (let i = 0; i < N; i++) { sxx += (X[i] - mx) ** 2; sxy += (X[i] - mx) * (Y[i] - my); }
    const slope = sxy / sxx;
    const intercept = my - slope * mx;
    let rss = 0;
    for (let i = 0; i < N; i++) rss += (Y[i] - intercept - slope * X[i]) ** 2;
    const residualVar = rss / (N - 2);
    const sigma2 = s.sigmaQ2[t];
    // OLS standard errors: slope sqrt(sigma2 / sxx); intercept ~ sqrt(sigma2 (1/N + mx^2/sxx)); variance sigma2 sqrt(2/N).
    expectClose(slope, s.posteriorMeanCoefXt[t], 5 * Math.sqrt(sigma2 / sxx), 0, 'slope');
    expectClose(intercept, s.posteriorMeanCoefX0[t] * x0v, 5 * Math.sqrt(sigma2 * (1 / N + (mx * mx) / sxx)), 0, 'intercept');
    expectClose(residualVar, sigma2, 5 * sigma2 * Math.sqrt(2 / N), 0, 'residual variance');
    tf.dispose([x0]);
  });

  it('at t = 1 the posterior is the point mass at x0: variance 0, mean x0', () => {
    const s = linearSchedule(10);
    const x0 = tf.tensor2d([[0.25, -0.5]]);
    const xt = tf.tensor2d([[3, 3]]);
    const q = qPosterior(s, x0, xt, 1);
    expectClose(take(q.mean), [0.25, -0.5], 1e-7);
    expect(take(q.variance)[0]).to.equal(0);
    expect(Number.isFinite(take(q.logVariance)[0]), 'clipped log-variance is finite').to.equal(true);
    tf.dispose([x0, xt]);
  });

  it("the text's mu_theta form with the true eps equals mu_q(x_t, x_0)", async () => {
    const s = linearSchedule(100);
    const x0 = tf.randomNormal([64, 3], 0, 1, 'float32', 1);
    const eps = tf.randomNormal([64, 3], 0, 1, 'float32', 2);
    for (const t of [2, 10, 57, 100]) {
      const xt = qSample(s, x0, t, eps);
      const viaEps = await expectNoLeak(() => posteriorMeanFromEps(s, xt, t, eps));
      const q = qPosterior(s, x0, xt, t);
      // Both are O(3) sums of float32 products: agree to ~1e-5.
      expectClose(take(viaEps), take(q.mean), 2e-5, 0, `t=${t}`);
      tf.dispose([xt, q.variance, q.logVariance]);
    }
    tf.dispose([x0, eps]);
  });

  it('eps, x0 and v parameterisations convert into each other and back', () => {
    const s = linearSchedule(1000);
    const x0 = tf.randomUniform([32, 2], -1, 1, 'float32', 3);
    const eps = tf.randomNormal([32, 2], 0, 1, 'float32', 4);
    const t = tf.tensor1d(Array.from({ length: 32 }, (_, i) => 1 + i * 31), 'int32');
    const xt = qSample(s, x0, t, eps);
    const x0v = take(x0.clone());
    const epsv = take(eps.clone());
    // 1/sqrt(abar) reaches ~157 at t = 1000: float32 round-off of x_t is amplified by that much.
    expectClose(take(predictX0FromEps(s, xt, t, eps)), x0v, 1e-6 * 157);
    // sqrt(abar)/sqrt(1 - abar) reaches 100 at t = 1: x_t's round-off (~1e-7) amplified 100 times.
    expectClose(take(predictEpsFromX0(s, xt, t, x0)), epsv, 1e-7 * 100 * 4);
    const v = predictV(s, x0, t, eps);
    const vv = take(v.clone());
    // v = sqrt(abar) eps - sqrt(1 - abar) x0, checked elementwise in float64
    const tv = t.dataSync();
    for (let i = 0; i < 32; i++) {
      for (let j = 0; j < 2; j++) {
        const k = i * 2 + j;
        expectClose(vv[k], s.sqrtAlphaBars[tv[i]] * epsv[k] - s.sqrtOneMinusAlphaBars[tv[i]] * x0v[k], 1e-5);
      }
    }
    expectClose(take(predictX0FromV(s, xt, t, v)), x0v, 1e-5);
    expectClose(take(predictEpsFromV(s, xt, t, v)), epsv, 1e-5);
    tf.dispose([x0, eps, t, xt, v]);
  });

  it('rejects mismatched shapes and NaN, naming the parameter', () => {
    const s = linearSchedule(10);
    const a = tf.ones([2, 2]);
    const b = tf.ones([2, 3]);
    const nan = tf.tensor2d([[NaN, 1], [1, 1]]);
    expect(() => qPosterior(s, a, b, 2)).to.throw(/x0 and xt must have the same shape/);
    expect(() => qPosterior(s, a, nan, 2)).to.throw(/xt must contain only finite/);
    expect(() => predictX0FromEps(s, a, 0, a)).to.throw(/t must be an integer in \[1, 10\], got 0/);
    expect(() => posteriorMeanFromEps(s, nan, 2, a)).to.throw(/xt must contain only finite/);
    tf.dispose([a, b, nan]);
  });
});
