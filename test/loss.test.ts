import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  Decoder,
  Denoiser,
  MlpDenoiser,
  ReverseVariance,
  Rng,
  Timestep,
  elboTermAt,
  gaussianOptimalEps,
  hybridLoss,
  klNoiseWeight,
  linearSchedule,
  minSnrWeight,
  sampleMixture,
  sampleTimesteps,
  simpleLoss,
  vlbLoss,
} from '../lib';
import { batchLoss } from '../lib/training/train';
import { expectClose, expectNoLeak, take } from './support';

/** A denoiser that depends on t (per example when t is a tensor) and counts its calls. */
function countingModel(T: number): Denoiser & { calls: number } {
  const m = {
    calls: 0,
    predictEps(xt: tf.Tensor, t: Timestep): tf.Tensor {
      m.calls++;
      return tf.tidy(() => {
        const tt = typeof t === 'number' ? tf.scalar(t) : t.cast('float32').reshape([-1, ...new Array(xt.rank - 1).fill(1)]);
        return xt.mul(0.8).add(tt.div(T).mul(0.3)).sub(0.1);
      });
    },
  };
  return m;
}

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

  it('minsnr: each example\'s simple loss times min(SNR_t, 5) / SNR_t, with SNR_t from the betas in float64', async () => {
    const s = linearSchedule(10, 0.01, 0.2);
    // abar_t as the product of 1 - beta_k over the betas linearly spaced from 0.01 to 0.2
    const abar = (t: number) => Array.from({ length: t }, (_, k) => 1 - (0.01 + (k * 0.19) / 9)).reduce((a, b) => a * b, 1);
    const weight = (t: number) => Math.min(abar(t) / (1 - abar(t)), 5) / (abar(t) / (1 - abar(t)));
    for (const t of [1, 3, 9]) expect(minSnrWeight(s, t), `t = ${t}`).to.be.closeTo(weight(t), 1e-12);
    expect(minSnrWeight(s, 1)).to.be.below(0.06); // SNR_1 = 99
    expect(minSnrWeight(s, 9)).to.equal(1); // SNR_9 < 5
    const model: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(2).sub(0.5)) };
    const x0v = [0.2, -0.4, 1.0, 0.5];
    const epsv = [1, -1, 0.5, 0.25];
    const x0 = tf.tensor2d(x0v, [2, 2]);
    const eps = tf.tensor2d(epsv, [2, 2]);
    const loss = take(await expectNoLeak(() => tf.tidy(() => batchLoss(model, s, 'minsnr', x0, eps, Int32Array.from([3, 9]), null))))[0];
    let expected = 0;
    [3, 3, 9, 9].forEach((ti, i) => {
      const xt = Math.sqrt(abar(ti)) * x0v[i] + Math.sqrt(1 - abar(ti)) * epsv[i];
      expected += (weight(ti) * (2 * xt - 0.5 - epsv[i]) ** 2) / 4;
    });
    expectClose(loss, expected, 1e-6, 1e-6);
    expect(() => minSnrWeight(s, 0)).to.throw('t must be an integer in [1, 10], got 0');
    expect(() => minSnrWeight(s, 2, 0)).to.throw(/gamma/);
    tf.dispose([x0, eps]);
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

  it('vlbLoss and hybridLoss make exactly one model call per evaluation, whatever the batch timesteps', () => {
    const s = linearSchedule(20, 0.01, 0.2);
    const x0 = tf.randomUniform([8, 3], -1, 1, 'float32', 3);
    const eps = tf.randomNormal([8, 3], 0, 1, 'float32', 4);
    const t = tf.tensor1d([1, 2, 5, 5, 20, 7, 1, 13], 'int32'); // 6 distinct timesteps, t = 1 twice
    for (const decoder of ['gaussian', 'discretized'] as Decoder[]) {
      const model = countingModel(s.T);
      take(vlbLoss(model, s, x0, { t, eps, decoder }));
      expect(model.calls, `vlbLoss (${decoder})`).to.equal(1);
      take(hybridLoss(model, s, x0, { t, eps, decoder }));
      expect(model.calls, `hybridLoss (${decoder})`).to.equal(2);
      take(vlbLoss(model, s, x0, { seed: 5, decoder })); // t drawn from U[1, 20]
      expect(model.calls, `vlbLoss with drawn t (${decoder})`).to.equal(3);
    }
    tf.dispose([x0, eps, t]);
  });

  it('vlbLoss with per-example t equals T/D times the mean of elboTermAt computed one example at a time (every variance and decoder)', async () => {
    const s = linearSchedule(20, 0.01, 0.2);
    const batch = 8;
    const D = 3;
    const rng = new Rng(31);
    const ts = [1, 2, 5, 5, 20, 7, 1, 13];
    // x0 on the 8-bit grid (the discretized decoder's domain), eps standard normal
    const x0v = Array.from({ length: batch * D }, () => -1 + (2 * rng.int(0, 255)) / 255);
    const epsv = Array.from({ length: batch * D }, () => rng.normal());
    const x0 = tf.tensor2d(x0v, [batch, D]);
    const eps = tf.tensor2d(epsv, [batch, D]);
    const t = tf.tensor1d(ts, 'int32');
    for (const variance of ['sigmaQ', 'beta', 'one'] as ReverseVariance[]) {
      for (const decoder of ['gaussian', 'discretized'] as Decoder[]) {
        const model = countingModel(s.T);
        const got = take(await expectNoLeak(() => vlbLoss(model, s, x0, { t, eps, variance, decoder })))[0];
        // the old per-t path, one example and one number t at a time
        const terms = ts.map((ti, i) =>
          take(tf.tidy(() => {
            const x0i = x0.slice([i, 0], [1, D]);
            const xt = x0i.mul(Math.sqrt(s.alphaBars[ti])).add(eps.slice([i, 0], [1, D]).mul(Math.sqrt(1 - s.alphaBars[ti])));
            return elboTermAt(model, s, x0i, xt, ti, { variance, decoder });
          }))[0]);
        const want = ((s.T / D) * terms.reduce((a, b) => a + b, 0)) / batch;
        // same float32 formulas, summed in another order: each of ~D + batch additions rounds by 2^-24
        // of the running magnitude, so 16 * 2^-24 of sum |term| (times T/(D batch)) bounds the difference
        const scale = ((s.T / D) * terms.reduce((a, b) => a + Math.abs(b), 0)) / batch;
        expectClose(got, want, 16 * 2 ** -24 * scale + 1e-7, 0, `vlbLoss ${variance}/${decoder}`);
        expect(terms.some((v, i) => ts[i] === 1 && v !== 0) && terms.some((v, i) => ts[i] > 1 && v !== 0)).to.equal(true);
      }
    }
    tf.dispose([x0, eps, t]);
  });

  it('hybridLoss is simple + lambda vlb with the same draws, from one model call, and its gradient is finite (MLP, discretized decoder)', () => {
    const s = linearSchedule(20, 0.01, 0.2);
    const mlp = new MlpDenoiser({ dataDim: 3, hidden: 16, depth: 2, embedDim: 8, seed: 2 });
    let calls = 0;
    const model: Denoiser = { predictEps: (xt, t) => { calls++; return mlp.predictEps(xt, t); } };
    const x0 = tf.tensor2d([[-1, 1, 0.2], [1, 1, -1], [-1, -1, -1], [0.6, -0.2, 1]].map((r) => r.map((v) => Math.round(((v + 1) * 255) / 2) * (2 / 255) - 1)));
    const eps = tf.randomNormal([4, 3], 0, 1, 'float32', 6);
    const t = tf.tensor1d([1, 1, 9, 20], 'int32');
    const opts = { t, eps, decoder: 'discretized' as Decoder };
    const simple = take(simpleLoss(model, s, x0, { t, eps }))[0];
    const vlb = take(vlbLoss(model, s, x0, opts))[0];
    calls = 0;
    const before = tf.memory().numTensors;
    const { value, grads } = tf.variableGrads(() => hybridLoss(model, s, x0, { ...opts, lambda: 0.01 }), mlp.trainableVariables);
    expect(calls, 'one model call for the hybrid loss and its gradient').to.equal(1);
    // simple and vlb are each formed in float32 from the same terms: 1e-6 relative covers their rounding
    expectClose(take(value)[0], simple + 0.01 * vlb, 1e-6 * (Math.abs(simple) + 0.01 * Math.abs(vlb)), 0, 'hybrid');
    const g = Object.values(grads).map((x) => take(x));
    expect(g.every((a) => a.every(Number.isFinite)), 'finite gradients').to.equal(true);
    expect(tf.memory().numTensors).to.equal(before);
    tf.dispose([x0, eps, t]);
    mlp.dispose();
  });

  it('the losses leak no tensor on success or on a refusal', () => {
    const s = linearSchedule(10);
    const model = countingModel(s.T);
    const x0 = tf.zeros([2, 2]);
    const out = tf.tensor2d([[0, 1.5], [0, 0]]);
    const t = tf.tensor1d([1, 4], 'int32');
    const before = tf.memory().numTensors;
    for (const f of [simpleLoss, vlbLoss, hybridLoss]) {
      take(f(model, s, x0, { t, seed: 2 }));
      take(f(model, s, x0, { seed: 2 }));
    }
    const refusals: [() => unknown, RegExp][] = [
      [() => vlbLoss(model, s, out, { decoder: 'discretized' }), /x0 must lie in \[-1, 1\] \(8-bit data scaled\), got values in \[0, 1.5\]/],
      [() => hybridLoss(model, s, x0, { decoder: 'bits' as never }), /decoder must be 'discretized' or 'gaussian', got bits/],
      [() => vlbLoss(model, s, x0, { variance: 'big' as never }), /variance must be one of sigmaQ, beta, one, got big/],
      [() => vlbLoss(model, s, x0, { t: tf.tensor1d([1, 11], 'int32') }), /t\[1\] must be an integer in \[1, 10\], got 11/],
    ];
    for (const [fn, pattern] of refusals) expect(fn).to.throw(pattern);
    // the t tensor built inline for the last refusal is the caller's; everything else is gone
    expect(tf.memory().numTensors).to.equal(before + 1);
    tf.dispose([x0, out, t]);
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
