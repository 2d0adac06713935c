import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  Denoiser,
  elboFirstForm,
  elboTerms,
  gaussianOptimalEps,
  klNoiseWeight,
  linearSchedule,
  normalKL,
  pMeanVariance,
  qPosterior,
  qSample,
} from '../lib';
import { expectClose, expectNoLeak, take, expectRejects } from './support';

const mean = (a: ArrayLike<number>) => Array.from(a).reduce((p, c) => p + c, 0) / a.length;
const se = (a: ArrayLike<number>) => {
  const mu = mean(a);
  return Math.sqrt(Array.from(a).reduce((p, c) => p + (c - mu) ** 2, 0) / (a.length - 1) / a.length);
};

describe('ELBO', () => {
  // 1-D Gaussian data N(m, sd^2): log p(x0) is exact, and eps* is the optimal model.
  const m = 0.5;
  const sd = 0.3;
  const N = 3000;
  const exactLogP = (x: Float32Array) => Array.from(x, (v) => -0.5 * Math.log(2 * Math.PI * sd * sd) - (v - m) ** 2 / (2 * sd * sd));

  it('with the optimal eps*, -ELBO stays above -log p(x0) and the gap shrinks as T grows', async () => {
    const x0 = tf.randomNormal([N, 1], m, sd, 'float32', 11);
    const logp = exactLogP(x0.dataSync() as Float32Array);
    const gaps: number[] = [];
    for (const T of [10, 50, 200]) {
      // beta_T = 10 / T keeps abar_T small (prior term ~ 0) for every T
      const s = linearSchedule(T, 1e-3, Math.min(0.999, 10 / T));
      const terms = await elboTerms(gaussianOptimalEps([m], [[sd * sd]], s), s, x0, { seed: T });
      // paired difference per example: -ELBO - (-log p) >= 0 in expectation (Jensen, and E log p_theta <= E log p)
      const gap = Array.from(terms.total, (v, i) => v + logp[i]);
      expect(mean(gap) + 5 * se(gap), `gap at T=${T}`).to.be.above(0);
      gaps.push(mean(gap));
      if (gaps.length > 1) {
        expect(gaps[gaps.length - 1], `gap shrinks from T=${[10, 50, 200][gaps.length - 2]} to T=${T}`).to.be.below(gaps[gaps.length - 2] - 5 * se(gap));
      }
    }
    x0.dispose();
  });

  it("the text's first form (one trajectory, T samplings) has the second form's expectation", async () => {
    const s = linearSchedule(20, 1e-3, 0.5);
    const model = gaussianOptimalEps([m], [[sd * sd]], s);
    const x0 = tf.randomNormal([N, 1], m, sd, 'float32', 12);
    const second = (await elboTerms(model, s, x0, { seed: 1 })).total;
    const first = (await elboFirstForm(model, s, x0, { seed: 2 })).total;
    const tol = 5 * Math.sqrt(se(first) ** 2 + se(second) ** 2);
    expectClose(mean(first), mean(second), tol, 0, 'E[first form] vs E[second form]');
    // Luo's analytic-KL version of the first form is not the ELBO: it grows with T (see its doc comment).
    const luo = (await elboFirstForm(model, s, x0, { seed: 2, estimator: 'analyticKL' })).total;
    expect(mean(luo)).to.be.above(mean(second) + 5 * Math.sqrt(se(luo) ** 2 + se(second) ** 2));
    x0.dispose();
  });

  it('each L_{t-1} is KL(q(x_{t-1}|x_t,x_0) || p_theta) = klNoiseWeight(t) ||eps - eps_theta||^2 (shared variance)', async () => {
    const s = linearSchedule(100, 1e-3, 0.05);
    // a deliberately imperfect model, so that eps - eps_theta is not 0
    const model: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(0.7).add(0.1)) };
    const x0 = tf.randomNormal([16, 3], 0, 1, 'float32', 3);
    const eps = tf.randomNormal([16, 3], 0, 1, 'float32', 4);
    for (const t of [2, 17, 100]) {
      const xt = qSample(s, x0, t, eps);
      const q = qPosterior(s, x0, xt, t);
      const p = pMeanVariance(model, s, xt, t);
      const kl = take(normalKL(q.mean, q.logVariance, p.mean, p.logVariance).sum(1));
      const sq = take(tf.squaredDifference(eps, p.eps).sum(1));
      const w = klNoiseWeight(s, t);
      // float32 KL of O(1e-3..1) values: 1e-4 relative
      expectClose(kl, sq.map((v) => w * v), 1e-6, 1e-4, `t=${t}`);
      // and the weight itself from its definition with sigma_q(t)^2 (float64)
      const expectedW = s.betas[t] ** 2 / (2 * s.sigmaQ2[t] * s.alphas[t] * (1 - s.alphaBars[t]));
      expectClose(w, expectedW, 0, 1e-10);
      tf.dispose([xt, q.mean, q.variance, q.logVariance, p.mean, p.variance, p.logVariance, p.eps, p.x0]);
    }
    tf.dispose([x0, eps]);
  });

  it('the prior term L_T is KL(q(x_T|x_0) || N(0, I)) in closed form; terms add up to the total; bits per dim', async () => {
    const s = linearSchedule(30, 1e-3, 0.2);
    const x0 = tf.tensor2d([[0.5, -1], [2, 0]]);
    const r = await elboTerms(gaussianOptimalEps([0, 0], [[1, 0], [0, 1]], s), s, x0);
    const abar = s.alphaBars[30];
    const v = 1 - abar;
    const klDim = (x: number) => 0.5 * (-1 - Math.log(v) + v + abar * x * x);
    expectClose(r.prior, [klDim(0.5) + klDim(-1), klDim(2) + klDim(0)], 1e-6, 1e-5);
    expect(r.L.length).to.equal(31);
    const sum = r.L.reduce((acc, term) => acc.map((a, i) => a + term[i]), [0, 0]);
    expectClose(r.total, sum, 1e-9);
    expectClose(r.bitsPerDim, mean(r.total) / (2 * Math.LN2), 1e-12);
    x0.dispose();
  });

  it('the discretized decoder scores 8-bit images; an ELBO evaluation leaks no tensors', async () => {
    const s = linearSchedule(8, 1e-3, 0.5);
    const model: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(0.5)) };
    const levels = tf.randomUniform([4, 6, 6, 1], 0, 256, 'int32', 5);
    const x0 = levels.toFloat().mul(2 / 255).sub(1);
    const r = await expectNoLeak(() => elboTerms(model, s, x0, { decoder: 'discretized' }));
    // -log P of a discrete outcome is >= 0
    expect(Math.min(...r.decoder)).to.be.at.least(0);
    expect(Number.isFinite(r.bitsPerDim)).to.equal(true);
    await expectNoLeak(() => elboFirstForm(model, s, x0, { decoder: 'discretized' }));
    tf.dispose([levels, x0]);
  });

  it('rejects a bad decoder, variance and data, and a model that returns NaN', async () => {
    const s = linearSchedule(5);
    const model: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(0)) };
    const x0 = tf.zeros([2, 2]);
    await expectRejects(() => elboTerms(model, s, x0, { decoder: 'bernoulli' as never }), /decoder must be 'discretized' or 'gaussian', got bernoulli/);
    await expectRejects(() => elboTerms(model, s, x0, { variance: 'x' as never }), /variance must be one of/);
    const nan = tf.tensor2d([[NaN, 0], [0, 0]]);
    await expectRejects(() => elboTerms(model, s, nan), /x0 must contain only finite numbers/);
    const broken: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(NaN)) };
    await expectRejects(() => elboTerms(broken, s, x0), /example 0 got a non-finite ELBO/);
    tf.dispose([x0, nan]);
  });
});
