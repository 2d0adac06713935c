import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  Denoiser,
  Rng,
  gaussianOptimalEps,
  hybridLoss,
  klNoiseWeight,
  linearSchedule,
  sampleMixture,
  sampleTimesteps,
  simpleLoss,
  vlbLoss,
} from '../lib';
import { expectClose, expectNoLeak, take } from './support';

describe('training losses', () => {
  it("simpleLoss with eps* has the closed-form minimum (1/D) E_t tr(I - (1 - abar_t) Sigma_t^{-1}) (Monte Carlo)", async () => {
    const s = linearSchedule(50, 1e-3, 0.15);
    const m = [0.3, -0.2];
    const S = [[0.4, 0.15], [0.15, 0.3]];
    const model = gaussianOptimalEps(m, S, s);
    let expected = 0;
    for (let t = 1; t <= s.T; t++) {
      const a = s.alphaBars[t];
      const St = [[a * S[0][0] + 1 - a, a * S[0][1]], [a * S[1][0], a * S[1][1] + 1 - a]];
      const trInv = (St[0][0] + St[1][1]) / (St[0][0] * St[1][1] - St[0][1] * St[1][0]);
      expected += (2 - (1 - a) * trInv) / 2 / s.T;
    }
    // 40 independent batches of 2000: the spread of the batch losses gives the standard error
    const values: number[] = [];
    for (let k = 0; k < 40; k++) {
      const x0 = tf.tensor2d(Float32Array.from(sampleMixture({ weights: [1], means: [m], covs: [S] }, 2000, 100 + k)), [2000, 2]);
      values.push(take(simpleLoss(model, s, x0, { seed: k }))[0]);
      x0.dispose();
    }
    const mu = values.reduce((a, b) => a + b, 0) / values.length;
    const sd = Math.sqrt(values.reduce((a, b) => a + (b - mu) ** 2, 0) / (values.length - 1));
    expectClose(mu, expected, 5 * sd / Math.sqrt(values.length), 0, 'mean simple loss of eps*');
  });

  it('simpleLoss for given t and eps is the mean of (eps_theta(x_t, t) - eps)^2, computed in float64', async () => {
    const s = linearSchedule(10, 0.01, 0.2);
    const model: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(2).sub(0.5)) };
    const x0v = [0.2, -0.4, 1.0, 0.5];
    const epsv = [1, -1, 0.5, 0.25];
    const x0 = tf.tensor2d(x0v, [2, 2]);
    const eps = tf.tensor2d(epsv, [2, 2]);
    const t = tf.tensor1d([3, 9], 'int32');
    const loss = take(await expectNoLeak(() => simpleLoss(model, s, x0, { t, eps })))[0];
    let expected = 0;
    [3, 3, 9, 9].forEach((ti, i) => {
      const xt = Math.sqrt(s.alphaBars[ti]) * x0v[i] + Math.sqrt(1 - s.alphaBars[ti]) * epsv[i];
      expected += (2 * xt - 0.5 - epsv[i]) ** 2 / 4;
    });
    expectClose(loss, expected, 1e-6, 1e-6);
    tf.dispose([x0, eps, t]);
  });

  it('vlbLoss is T/D times the KL term klNoiseWeight ||eps - eps_theta||^2 (t >= 2), and -log p(x0|x1) at t = 1', async () => {
    const s = linearSchedule(20, 0.01, 0.2);
    const model: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(0.8)) };
    const x0v = [0.2, -0.4, 1.0, 0.5];
    const epsv = [1, -1, 0.5, 0.25];
    const x0 = tf.tensor2d(x0v, [2, 2]);
    const eps = tf.tensor2d(epsv, [2, 2]);
    for (const t of [2, 11, 20]) {
      const got = take(vlbLoss(model, s, x0, { t, eps }))[0];
      let sq = 0;
      x0v.forEach((v, i) => {
        const xt = Math.sqrt(s.alphaBars[t]) * v + Math.sqrt(1 - s.alphaBars[t]) * epsv[i];
        sq += (epsv[i] - 0.8 * xt) ** 2;
      });
      expectClose(got, (s.T / 2) * klNoiseWeight(s, t) * (sq / 2), 1e-6, 1e-4, `t=${t}`);
    }
    // t = 1: the decoder -log N(x0; mu_theta(x1, 1), sigma^2) with the clipped variance sigma_q(2)^2
    const got1 = take(vlbLoss(model, s, x0, { t: 1, eps }))[0];
    let nll = 0;
    const v = s.sigmaQ2[2];
    x0v.forEach((x, i) => {
      const x1 = Math.sqrt(s.alphaBars[1]) * x + Math.sqrt(1 - s.alphaBars[1]) * epsv[i];
      const mu = (x1 - (s.betas[1] / Math.sqrt(1 - s.alphaBars[1])) * 0.8 * x1) / Math.sqrt(s.alphas[1]);
      nll += 0.5 * Math.log(2 * Math.PI * v) + (x - mu) ** 2 / (2 * v);
    });
    expectClose(got1, (s.T / 2) * (nll / 2), 1e-4, 1e-4, 't=1');
    tf.dispose([x0, eps]);
  });

  it('vlbLoss with per-example t is the batch mean of the per-example terms; hybrid = simple + lambda vlb', async () => {
    const s = linearSchedule(20, 0.01, 0.2);
    const model: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(0.8)) };
    const x0 = tf.randomNormal([6, 2], 0, 1, 'float32', 1);
    const eps = tf.randomNormal([6, 2], 0, 1, 'float32', 2);
    const ts = [1, 5, 5, 20, 7, 1];
    const t = tf.tensor1d(ts, 'int32');
    const batched = take(vlbLoss(model, s, x0, { t, eps }))[0];
    const single = ts.map((ti, i) => take(vlbLoss(model, s, x0.slice(i, 1), { t: ti, eps: eps.slice(i, 1) }))[0]);
    expectClose(batched, single.reduce((a, b) => a + b, 0) / 6, 1e-5, 1e-5);
    const simple = take(simpleLoss(model, s, x0, { t, eps }))[0];
    const hybrid = take(hybridLoss(model, s, x0, { t, eps, lambda: 0.01 }))[0];
    expectClose(hybrid, simple + 0.01 * batched, 1e-5, 1e-5);
    tf.dispose([x0, eps, t]);
  });

  it('sampleTimesteps draws t uniformly from [1, T] (counts within 5 binomial standard errors)', async () => {
    const T = 10;
    const N = 50000;
    const t = take(sampleTimesteps(T, N, new Rng(3)));
    const counts = new Array(T + 1).fill(0);
    t.forEach((v) => counts[v]++);
    expect(counts[0]).to.equal(0);
    const p = 1 / T;
    for (let k = 1; k <= T; k++) expectClose(counts[k], N * p, 5 * Math.sqrt(N * p * (1 - p)), 0, `count of t=${k}`);
  });

  it('rejects bad input, naming the parameter', async () => {
    const s = linearSchedule(10);
    const model: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(0)) };
    const x0 = tf.zeros([2, 2]);
    const nan = tf.tensor2d([[NaN, 0], [0, 0]]);
    const eps3 = tf.zeros([2, 3]);
    expect(() => simpleLoss(model, s, nan)).to.throw(/x0 must contain only finite numbers/);
    expect(() => simpleLoss(model, s, x0, { eps: eps3 })).to.throw(/x0 and eps must have the same shape/);
    expect(() => simpleLoss(model, s, x0, { t: 11 })).to.throw(/t must be an integer in \[1, 10\], got 11/);
    expect(() => hybridLoss(model, s, x0, { lambda: -1 })).to.throw(/lambda must be a finite number in \[0, Infinity\), got -1/);
    expect(() => klNoiseWeight(s, 0)).to.throw(/t must be an integer in \[1, 10\], got 0/);
    tf.dispose([x0, nan, eps3]);
  });
});
