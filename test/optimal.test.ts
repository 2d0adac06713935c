import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { Rng, defaultMixture2d, gaussianOptimalEps, linearSchedule, mixtureOptimalEps, sampleMixture } from '../lib';
import { expectClose, expectNoLeak, take } from './support';

/** log N(x; mu, C) for 2x2 C, written out by hand in float64. */
function logN2(x: number[], mu: number[], C: number[][]): number {
  const det = C[0][0] * C[1][1] - C[0][1] * C[1][0];
  const dx = [x[0] - mu[0], x[1] - mu[1]];
  const q = (C[1][1] * dx[0] * dx[0] - 2 * C[0][1] * dx[0] * dx[1] + C[0][0] * dx[1] * dx[1]) / det;
  return -Math.log(2 * Math.PI) - 0.5 * Math.log(det) - 0.5 * q;
}

describe('exact optimal noise predictors', () => {
  const s = linearSchedule(100, 1e-3, 0.1);

  it('Gaussian eps* is E[eps | x_t]: residuals have mean 0, are uncorrelated with x_t, and have the closed-form size (Monte Carlo)', () => {
    const m = [0.5, -1];
    const S = [[0.3, 0.1], [0.1, 0.2]];
    const model = gaussianOptimalEps(m, S, s);
    const N = 50000;
    const x0 = sampleMixture({ weights: [1], means: [m], covs: [S] }, N, 3);
    const rng = new Rng(4);
    for (const t of [3, 40, 100]) {
      const a = Math.sqrt(s.alphaBars[t]);
      const b = Math.sqrt(1 - s.alphaBars[t]);
      const eps = Float64Array.from({ length: 2 * N }, () => rng.normal());
      const xt = x0.map((v, i) => a * v + b * eps[i]);
      const pred = take(model.predictEps(tf.tensor2d(Float32Array.from(xt), [N, 2]), t));
      const r = eps.map((e, i) => e - pred[i]);
      // E||eps - E[eps|x_t]||^2 = tr(I - (1 - abar) Sigma_t^{-1}), Sigma_t = abar S + (1 - abar) I.
      const abar = s.alphaBars[t];
      const St = [[abar * S[0][0] + 1 - abar, abar * S[0][1]], [abar * S[1][0], abar * S[1][1] + 1 - abar]];
      const det = St[0][0] * St[1][1] - St[0][1] ** 2;
      const trInv = (St[0][0] + St[1][1]) / det;
      const expectedMse = 2 - (1 - abar) * trInv;
      let mse = 0;
      let mse2 = 0;
      const mean = [0, 0];
      const cross = [[0, 0], [0, 0]];
      const xbar = [0, 0];
      for (let i = 0; i < N; i++) for (let j = 0; j < 2; j++) xbar[j] += xt[2 * i + j] / N;
      for (let i = 0; i < N; i++) {
        const e2 = r[2 * i] ** 2 + r[2 * i + 1] ** 2;
        mse += e2 / N;
        mse2 += (e2 * e2) / N;
        for (let j = 0; j < 2; j++) {
          mean[j] += r[2 * i + j] / N;
          for (let k = 0; k < 2; k++) cross[j][k] += (r[2 * i + j] * (xt[2 * i + k] - xbar[k])) / N;
        }
      }
      const seMse = Math.sqrt((mse2 - mse * mse) / N);
      expectClose(mse, expectedMse, 5 * seMse, 0, `E||eps - eps*||^2 at t=${t}`);
      // residual sd <= 1 and x_t sd <= ~1.3: 5 standard errors of each average
      const seMean = Math.sqrt(Math.max(expectedMse, 1e-12) / N);
      expectClose(mean, [0, 0], 5 * seMean, 0, `mean residual at t=${t}`);
      expectClose(cross.flat(), [0, 0, 0, 0], 5 * 1.3 * seMean, 0, `residual-x_t correlation at t=${t}`);
    }
  });

  it('mixture eps* is -sqrt(1 - abar_t) times the gradient of log p_t(x_t) (finite differences of the float64 density)', () => {
    const spec = defaultMixture2d();
    const model = mixtureOptimalEps(spec.weights, spec.means, spec.covs, s);
    const rng = new Rng(9);
    for (const t of [1, 5, 30, 100]) {
      const abar = s.alphaBars[t];
      const logp = (x: number[]) => {
        const terms = spec.weights.map((w, k) => {
          const C = spec.covs[k].map((row, i) => row.map((v, j) => abar * v + (i === j ? 1 - abar : 0)));
          return Math.log(w) + logN2(x, spec.means[k].map((v) => Math.sqrt(abar) * v), C);
        });
        const mx = Math.max(...terms);
        return mx + Math.log(terms.reduce((acc, v) => acc + Math.exp(v - mx), 0));
      };
      const points = Array.from({ length: 8 }, () => [rng.normal() * 1.3, rng.normal() * 1.3]);
      const pred = take(model.predictEps(tf.tensor2d(points), t));
      points.forEach((x, i) => {
        const h = 1e-5;
        const grad = [0, 1].map((j) => {
          const xp = [...x];
          const xm = [...x];
          xp[j] += h;
          xm[j] -= h;
          return (logp(xp) - logp(xm)) / (2 * h);
        });
        const expected = grad.map((g) => -Math.sqrt(1 - abar) * g);
        // float32 of values up to ~1/sqrt(1 - abar) ~ 20 at t = 1: 1e-5 relative, plus differencing error
        expectClose([pred[2 * i], pred[2 * i + 1]], expected, 2e-4, 1e-4, `eps* at t=${t}, x=${x}`);
      });
    }
  });

  it('a one-component mixture is the Gaussian eps*; tensor t equals number t; no tensors leak', async () => {
    const m = [0.2, 0.1];
    const S = [[0.5, -0.2], [-0.2, 0.4]];
    const g = gaussianOptimalEps(m, S, s);
    const mix = mixtureOptimalEps([1], [m], [S], s);
    const x = tf.randomNormal([5, 2], 0, 1, 'float32', 2);
    const t = tf.tensor1d([1, 2, 50, 99, 100], 'int32');
    const a = take(await expectNoLeak(() => g.predictEps(x, t)));
    const b = take(await expectNoLeak(() => mix.predictEps(x, t)));
    expectClose(a, b, 1e-5);
    const rows = [1, 2, 50, 99, 100].flatMap((ti, i) => Array.from(take(g.predictEps(x.slice(i, 1), ti))));
    expectClose(a, rows, 1e-6);
    tf.dispose([x, t]);
  });

  it('rejects bad specs and inputs, naming what is wrong', () => {
    expect(() => gaussianOptimalEps([0, 0], [[1, 0.5], [0.4, 1]], s)).to.throw(/symmetric/);
    expect(() => gaussianOptimalEps([0, 0], [[1, 2], [2, 1]], s)).to.throw(/positive-definite/);
    expect(() => gaussianOptimalEps([0, 0], [[1]], s)).to.throw(/2x2/);
    expect(() => mixtureOptimalEps([0.5, 0.6], [[0], [1]], [[[1]], [[1]]], s)).to.throw(/sum to 1/);
    const g = gaussianOptimalEps([0, 0], [[1, 0], [0, 1]], s);
    const x = tf.ones([2, 3]);
    expect(() => g.predictEps(x, 1)).to.throw(/xt must have shape \[batch, 2\], got \[2,3\]/);
    const x2 = tf.ones([2, 2]);
    expect(() => g.predictEps(x2, 101)).to.throw(/t must be an integer in \[1, 100\], got 101/);
    tf.dispose([x, x2]);
  });
});
