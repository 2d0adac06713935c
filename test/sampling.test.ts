import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  Denoiser,
  ReverseVariance,
  cosineSchedule,
  ddimEtaMax,
  ddimStep,
  ddimTimesteps,
  ddpmStep,
  gaussianOptimalEps,
  linearSchedule,
  meanAndCovariance,
  namedSchedule,
  Rng,
  sampleDDIM,
  sampleDDPM,
  sampleLoop,
  Schedule,
} from '../lib';
import { expectClose, expectNoLeak, take, expectRejects } from './support';

type M2 = number[][];
const mul = (A: M2, B: M2): M2 => A.map((r) => B[0].map((_, j) => r.reduce((acc, v, k) => acc + v * B[k][j], 0)));
const tr = (A: M2): M2 => A[0].map((_, j) => A.map((r) => r[j]));
const inv2 = (A: M2): M2 => {
  const d = A[0][0] * A[1][1] - A[0][1] * A[1][0];
  return [[A[1][1] / d, -A[0][1] / d], [-A[1][0] / d, A[0][0] / d]];
};

/**
 * The exact law of the text's sampler driven by the Gaussian eps*, in float64: every step is affine,
 * x_{t-1} = A_t x_t + c_t + sigma_q(t) z, so the mean and covariance follow a recursion from N(0, I).
 */
function ddpmLawForGaussian(s: Schedule, m: number[], S: M2): { mean: number[]; cov: M2 } {
  let mean = [0, 0];
  let cov: M2 = [[1, 0], [0, 1]];
  for (let t = s.T; t >= 1; t--) {
    const abar = s.alphaBars[t];
    const beta = s.betas[t];
    const sqrtAlpha = Math.sqrt(1 - beta);
    // eps*(x) = sqrt(1 - abar) P (x - sqrt(abar) m), P = (abar S + (1 - abar) I)^{-1}, so with
    // (1 - alpha)/sqrt(1 - abar) eps* = beta P (x - sqrt(abar) m): A = (I - beta P)/sqrt(alpha), c = beta P sqrt(abar) m / sqrt(alpha)
    const P = inv2(S.map((r, i) => r.map((v, j) => abar * v + (i === j ? 1 - abar : 0))));
    const A = P.map((r, i) => r.map((v, j) => ((i === j ? 1 : 0) - beta * v) / sqrtAlpha));
    const c = P.map((r) => (beta * Math.sqrt(abar) * (r[0] * m[0] + r[1] * m[1])) / sqrtAlpha);
    mean = A.map((r, i) => r[0] * mean[0] + r[1] * mean[1] + c[i]);
    const sig2 = t === 1 ? 0 : s.sigmaQ2[t];
    cov = mul(mul(A, cov), tr(A)).map((r, i) => r.map((v, j) => v + (i === j ? sig2 : 0)));
  }
  return { mean, cov };
}

/** The law of DDIM with eta = 0 and the Gaussian eps*: each step is affine in x, so moments map exactly. */
function ddimLawForGaussian(s: Schedule, m: number[], S: M2, steps: number, mean0: number[], cov0: M2): { mean: number[]; cov: M2 } {
  const taus = ddimTimesteps(s.T, steps);
  let mean = mean0;
  let cov = cov0;
  for (let i = taus.length - 1; i >= 0; i--) {
    const abar = s.alphaBars[taus[i]];
    const abarPrev = s.alphaBars[i > 0 ? taus[i - 1] : 0];
    // eps* = E (x - sqrt(abar) m) with E = sqrt(1 - abar) P; x' = sqrt(abarPrev) x0_hat + sqrt(1 - abarPrev) eps*
    //      = sqrt(abarPrev/abar) x + g eps*, g = sqrt(1 - abarPrev) - sqrt(abarPrev/abar) sqrt(1 - abar)
    const P = inv2(S.map((r, a) => r.map((v, b) => abar * v + (a === b ? 1 - abar : 0))));
    const g = Math.sqrt(1 - abarPrev) - Math.sqrt(abarPrev / abar) * Math.sqrt(1 - abar);
    const E = P.map((r) => r.map((v) => Math.sqrt(1 - abar) * v));
    const A = E.map((r, a) => r.map((v, b) => (a === b ? Math.sqrt(abarPrev / abar) : 0) + g * v));
    const c = E.map((r) => -g * Math.sqrt(abar) * (r[0] * m[0] + r[1] * m[1]));
    mean = A.map((r, a) => r[0] * mean[0] + r[1] * mean[1] + c[a]);
    cov = mul(mul(A, cov), tr(A));
  }
  return { mean, cov };
}

describe('samplers', () => {
  const m = [0.6, -0.4];
  const S = [[0.25, 0.1], [0.1, 0.16]];

  it('the text sampler with the exact Gaussian eps* reproduces the data mean and covariance', async () => {
    const s = linearSchedule(1000);
    const model = gaussianOptimalEps(m, S, s);
    const N = 4000;
    const { x0 } = await expectNoLeak(() => sampleDDPM(model, s, [N, 2], { seed: 1 }));
    const { mean, cov } = meanAndCovariance(x0 as tf.Tensor2D);
    x0.dispose();
    // The sampler's exact law (float64 recursion) is the data's up to the discretisation of T = 1000 steps:
    const law = ddpmLawForGaussian(s, m, S);
    expectClose(law.mean, m, 1e-3, 0, 'exact sampler mean vs data mean');
    expectClose(law.cov.flat(), S.flat(), 0, 0.02, 'exact sampler covariance vs data covariance (2% discretisation)');
    // and the samples follow that law within 5 standard errors: mean sd/sqrt(N); cov entry sqrt((S_ii S_jj + S_ij^2)/N)
    [0, 1].forEach((i) => expectClose(mean[i], law.mean[i], 5 * Math.sqrt(law.cov[i][i] / N), 0, `mean[${i}]`));
    const se = (i: number, j: number) => Math.sqrt((law.cov[i][i] * law.cov[j][j] + law.cov[i][j] ** 2) / N);
    [[0, 0], [0, 1], [1, 1]].forEach(([i, j]) => expectClose(cov[i][j], law.cov[i][j], 5 * se(i, j), 0, `cov[${i}][${j}]`));
  });

  it('DDIM with eta = 1 over all T steps is the DDPM sampler (same noise draws)', async () => {
    const s = linearSchedule(50, 1e-3, 0.2);
    const model = gaussianOptimalEps(m, S, s);
    const a = await sampleDDPM(model, s, [16, 2], { seed: 5 });
    const b = await sampleDDIM(model, s, [16, 2], { seed: 5, eta: 1, steps: 50 });
    // two algebraically equal update formulas in float32 over 50 steps
    expectClose(take(b.x0), take(a.x0), 2e-5);
  });

  it('DDIM with eta = 0 is deterministic given x_T and moves x_T exactly as its float64 affine law says', async () => {
    const s = linearSchedule(1000);
    const model = gaussianOptimalEps(m, S, s);
    const N = 3000;
    const xT = tf.randomNormal([N, 2], 0, 1, 'float32', 8);
    const start = meanAndCovariance(xT as tf.Tensor2D);
    const a = await sampleDDIM(model, s, [N, 2], { seed: 1, steps: 50, eta: 0, xT });
    const b = await sampleDDIM(model, s, [N, 2], { seed: 2, steps: 50, eta: 0, xT });
    const va = take(a.x0.clone());
    expect(Array.from(va)).to.deep.equal(Array.from(take(b.x0)), 'the seed must not matter when eta = 0');
    const { mean, cov } = meanAndCovariance(a.x0 as tf.Tensor2D);
    a.x0.dispose();
    xT.dispose();
    // eta = 0 makes each step affine, so the samples' moments are the law pushed from x_T's own
    // empirical moments: no sampling error, only float32 round-off (1e-3 is generous for 50 steps).
    const law = ddimLawForGaussian(s, m, S, 50, start.mean, start.cov);
    expectClose(mean, law.mean, 1e-3, 0, 'mean');
    expectClose(cov.flat(), law.cov.flat(), 1e-3, 1e-3, 'cov');
    // From N(0, I) the DDIM ODE reaches the data law as steps grow: 1000 steps within 1%, and 50
    // steps undershoot the variance (measured: 0.223 for 0.25; a discretisation error, not noise).
    const exact = ddimLawForGaussian(s, m, S, 1000, [0, 0], [[1, 0], [0, 1]]);
    expectClose(exact.cov.flat(), S.flat(), 0, 0.01, 'DDIM-1000 law vs data');
    const coarse = ddimLawForGaussian(s, m, S, 50, [0, 0], [[1, 0], [0, 1]]);
    expect(Math.abs(coarse.cov[0][0] - S[0][0])).to.be.above(Math.abs(exact.cov[0][0] - S[0][0]));
  });

  it('the same seed gives the same samples; another seed gives others', async () => {
    const s = linearSchedule(20, 1e-3, 0.3);
    const model = gaussianOptimalEps(m, S, s);
    const a = take((await sampleDDPM(model, s, [8, 2], { seed: 3 })).x0);
    const b = take((await sampleDDPM(model, s, [8, 2], { seed: 3 })).x0);
    const c = take((await sampleDDPM(model, s, [8, 2], { seed: 4 })).x0);
    expect(Array.from(a)).to.deep.equal(Array.from(b));
    expect(Array.from(a)).to.not.deep.equal(Array.from(c));
  });

  it('records the trajectory and reports every step, with t counting down to 0', async () => {
    const s = linearSchedule(20, 1e-3, 0.3);
    const model = gaussianOptimalEps(m, S, s);
    const seen: number[] = [];
    const r = await sampleDDPM(model, s, [4, 2], { seed: 3, trajectoryEvery: 5, onStep: (i) => { seen.push(i.t); } });
    expect(seen).to.deep.equal(Array.from({ length: 20 }, (_, i) => 19 - i));
    expect(r.trajectory.map((p) => p.t)).to.deep.equal([20, 15, 10, 5, 0]);
    expect(Array.from(r.trajectory[4].x)).to.deep.equal(Array.from(take(r.x0)));
    expect(r.trajectory[0].x.length).to.equal(8);
    const at = await sampleDDPM(model, s, [4, 2], { seed: 3, trajectoryAt: [20, 13, 2, 0] });
    expect(at.trajectory.map((p) => p.t)).to.deep.equal([20, 13, 2, 0]);
    expect(Array.from(at.trajectory[3].x)).to.deep.equal(Array.from(r.trajectory[4].x), 'same seed, same path');
    at.x0.dispose();
    const d = await sampleDDIM(model, s, [4, 2], { steps: 4, trajectoryEvery: 1 });
    expect(d.trajectory.map((p) => p.t)).to.deep.equal([20, 14, 7, 1, 0]);
    d.x0.dispose();
  });

  it('ddimTimesteps spreads the steps over [1, T] and always ends at T', async () => {
    expect(ddimTimesteps(1000, 4)).to.deep.equal([1, 334, 667, 1000]);
    expect(ddimTimesteps(10, 10)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(ddimTimesteps(10, 1)).to.deep.equal([10]);
  });

  it('clipX0 keeps the generated data inside [-1, 1] for a model that predicts far outside it', async () => {
    const s = linearSchedule(30, 1e-3, 0.3);
    // eps = -x_t / sqrt(1 - abar) - 3 implies x0 far outside [-1, 1]
    const wild: Denoiser = { predictEps: (xt) => tf.tidy(() => xt.mul(-3).sub(3)) };
    const clipped = take((await sampleDDPM(wild, s, [64, 2], { seed: 1, clipX0: true })).x0);
    expect(Math.max(...clipped.map(Math.abs))).to.be.at.most(1 + 1e-6);
    const free = take((await sampleDDPM(wild, s, [64, 2], { seed: 1 })).x0);
    expect(Math.max(...free.map(Math.abs)), 'without clipping the same model leaves [-1, 1]').to.be.above(1.5);
    const ddim = take((await sampleDDIM(wild, s, [64, 2], { seed: 1, clipX0: true, steps: 10 })).x0);
    expect(Math.max(...ddim.map(Math.abs))).to.be.at.most(1 + 1e-6);
  });

  it('a sampling run leaks no tensors beyond the samples it returns', async () => {
    const s = linearSchedule(15, 1e-3, 0.3);
    const model = gaussianOptimalEps(m, S, s);
    const r = await expectNoLeak(() => sampleDDPM(model, s, [8, 2], { trajectoryEvery: 3 }));
    r.x0.dispose();
    const d = await expectNoLeak(() => sampleDDIM(model, s, [8, 2], { steps: 5, eta: 0.5 }));
    d.x0.dispose();
  });

  it('rejects bad shapes, steps, eta and xT with the parameter named', async () => {
    const s = linearSchedule(10);
    const model = gaussianOptimalEps(m, S, s);
    await expectRejects(() => sampleDDPM(model, s, []), /shape must be a non-empty array/);
    await expectRejects(() => sampleDDPM(model, s, [0, 2]), /shape\[0\] must be an integer >= 1, got 0/);
    await expectRejects(() => sampleDDIM(model, s, [2, 2], { steps: 11 }), /steps must be an integer in \[1, 10\], got 11/);
    await expectRejects(() => sampleDDIM(model, s, [2, 2], { eta: -1 }), /eta must be a finite number in \[0, Infinity\), got -1/);
    const xT = tf.ones([3, 2]);
    await expectRejects(() => sampleDDPM(model, s, [2, 2], { xT }), /xT must have shape \[2,2\], got \[3,2\]/);
    xT.dispose();
    await expectRejects(() => sampleDDPM(model, s, [2, 2], { trajectoryEvery: 0 }), /trajectoryEvery/);
    await expectRejects(() => sampleDDPM(model, s, [2, 2], { trajectoryAt: [3, -1] }), /trajectoryAt\[1\] must be an integer >= 0, got -1/);
    await expectRejects(() => sampleDDPM(model, s, [2, 2], { variance: 'big' as never }), /variance must be one of sigmaQ, beta, one, got big/);
  });
});

/** The schedule's constants re-derived in float64 from its betas alone (not from its tables). */
function float64Constants(s: Schedule): { beta: number[]; alpha: number[]; abar: number[] } {
  const beta = [0, ...Array.from(s.betas.subarray(1))];
  const alpha = beta.map((b) => 1 - b);
  const abar = [1];
  for (let t = 1; t <= s.T; t++) abar.push(abar[t - 1] * alpha[t]);
  return { beta, alpha, abar };
}

/** n float32-representable standard normals, so that tensors and the float64 reference see the same inputs. */
function normals(rng: Rng, n: number, scale = 1): number[] {
  return Array.from({ length: n }, () => Math.fround(scale * rng.normal()));
}

/**
 * |got - want| within float32 rounding: each of the step's ~10 float32 operations (and each float32
 * schedule constant) errs by at most 2^-24 relative to the magnitudes it combines, so 32 * 2^-24
 * times the sum of the terms' magnitudes (`scale`) bounds the total; nothing here is tuned.
 */
function expectFloat32Close(got: ArrayLike<number>, want: number[], scale: number[], what: string): void {
  want.forEach((w, i) => expectClose(got[i], w, 32 * 2 ** -24 * scale[i], 0, `${what}[${i}]`));
}

describe('sampler steps (ddpmStep, ddimStep) and the shared loop', () => {
  const m = [0.6, -0.4];
  const S = [[0.25, 0.1], [0.1, 0.16]];
  const s = linearSchedule(100, 1e-4, 0.05);
  const c = float64Constants(s);
  const n = 64;
  const shape: [number, number] = [32, 2];
  const clip = (v: number) => Math.min(1, Math.max(-1, v));

  it('ddpmStep alone is x_{t-1} = (x_t - beta_t/sqrt(1 - abar_t) eps)/sqrt(alpha_t) + sigma_t z (float64 re-computation), z = 0 at t = 1', async () => {
    const rng = new Rng(21);
    for (const variance of ['sigmaQ', 'beta', 'one'] as ReverseVariance[]) {
      for (const t of [1, 2, 37, 100]) {
        const [xv, ev, zv] = [normals(rng, n, 1.5), normals(rng, n), normals(rng, n)];
        const [xt, eps, z] = [tf.tensor2d(xv, shape), tf.tensor2d(ev, shape), tf.tensor2d(zv, shape)];
        const got = take(await expectNoLeak(() => ddpmStep(s, xt, t, eps, { variance, z })));
        tf.dispose([xt, eps, z]);
        const v = variance === 'sigmaQ' ? (c.beta[t] * (1 - c.abar[t - 1])) / (1 - c.abar[t]) : variance === 'beta' ? c.beta[t] : 1;
        const sd = t === 1 ? 0 : Math.sqrt(v);
        const k = c.beta[t] / Math.sqrt(1 - c.abar[t]);
        const want = xv.map((x, i) => (x - k * ev[i]) / Math.sqrt(c.alpha[t]) + sd * zv[i]);
        const scale = xv.map((x, i) => (Math.abs(x) + Math.abs(k * ev[i])) / Math.sqrt(c.alpha[t]) + Math.abs(sd * zv[i]));
        expectFloat32Close(got, want, scale, `ddpmStep ${variance} t=${t}`);
      }
    }
  });

  it('ddpmStep with clipX0 uses mu_q(x_t, clip(x0_hat)) (float64 re-computation)', async () => {
    const rng = new Rng(22);
    for (const t of [2, 37, 100]) {
      const [xv, ev, zv] = [normals(rng, n, 2), normals(rng, n), normals(rng, n)];
      const [xt, eps, z] = [tf.tensor2d(xv, shape), tf.tensor2d(ev, shape), tf.tensor2d(zv, shape)];
      const got = take(await expectNoLeak(() => ddpmStep(s, xt, t, eps, { clipX0: true, z })));
      tf.dispose([xt, eps, z]);
      const [ab, abp] = [c.abar[t], c.abar[t - 1]];
      const cx0 = (Math.sqrt(abp) * c.beta[t]) / (1 - ab);
      const cxt = (Math.sqrt(c.alpha[t]) * (1 - abp)) / (1 - ab);
      const sd = Math.sqrt((c.beta[t] * (1 - abp)) / (1 - ab));
      const x0 = xv.map((x, i) => clip((x - Math.sqrt(1 - ab) * ev[i]) / Math.sqrt(ab)));
      const want = xv.map((x, i) => cx0 * x0[i] + cxt * x + sd * zv[i]);
      // x0_hat's own terms, magnified by 1/sqrt(abar_t) before the clip, count towards the rounding
      const scale = xv.map((x, i) => cx0 * (Math.abs(x) + Math.sqrt(1 - ab) * Math.abs(ev[i])) / Math.sqrt(ab) + Math.abs(cxt * x) + Math.abs(sd * zv[i]));
      expectFloat32Close(got, want, scale, `ddpmStep clipX0 t=${t}`);
    }
  });

  it('ddimStep alone is sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - s^2) eps + s z with s from eta (float64 re-computation)', async () => {
    const rng = new Rng(23);
    const steps: [number, number][] = [[2, 1], [37, 12], [37, 0], [100, 99], [100, 1]];
    for (const clipX0 of [false, true]) {
      for (const eta of [0, 0.3, 1]) {
        for (const [t, tPrev] of steps) {
          const [xv, ev, zv] = [normals(rng, n, 1.5), normals(rng, n), normals(rng, n)];
          const [xt, eps, z] = [tf.tensor2d(xv, shape), tf.tensor2d(ev, shape), tf.tensor2d(zv, shape)];
          const got = take(await expectNoLeak(() => ddimStep(s, xt, t, tPrev, eps, { eta, z, clipX0 })));
          tf.dispose([xt, eps, z]);
          const [ab, abp] = [c.abar[t], c.abar[tPrev]];
          const s2 = eta ** 2 * ((1 - abp) / (1 - ab)) * (1 - ab / abp);
          let x0 = xv.map((x, i) => (x - Math.sqrt(1 - ab) * ev[i]) / Math.sqrt(ab));
          let e = ev;
          if (clipX0) {
            x0 = x0.map(clip);
            e = xv.map((x, i) => (x - Math.sqrt(ab) * x0[i]) / Math.sqrt(1 - ab));
          }
          const ce = Math.sqrt(1 - abp - s2);
          const want = x0.map((v, i) => Math.sqrt(abp) * v + ce * e[i] + Math.sqrt(s2) * zv[i]);
          const scale = xv.map((x, i) =>
            Math.sqrt(abp) * ((Math.abs(x) + Math.sqrt(1 - ab) * Math.abs(ev[i])) / Math.sqrt(ab)) +
            ce * (Math.abs(e[i]) + (clipX0 ? (Math.abs(x) + Math.sqrt(ab) * Math.abs(x0[i])) / Math.sqrt(1 - ab) : 0)) +
            Math.sqrt(s2) * Math.abs(zv[i]));
          expectFloat32Close(got, want, scale, `ddimStep eta=${eta} clipX0=${clipX0} ${t}->${tPrev}`);
        }
      }
    }
  });

  it('sampleLoop with ddpmStep or ddimStep as the step is sampleDDPM / sampleDDIM, bit for bit (same seeds)', async () => {
    const model = gaussianOptimalEps(m, S, s);
    const all = Array.from({ length: s.T }, (_, i) => i + 1);
    const a = take((await sampleDDPM(model, s, [8, 2], { seed: 9, variance: 'beta' })).x0);
    const b = take((await sampleLoop(model, s, [8, 2], all, (xt, t, _p, eps) => ddpmStep(s, xt, t, eps, { seed: 9, variance: 'beta' }), { seed: 9 })).x0);
    expect(Array.from(b)).to.deep.equal(Array.from(a));
    const taus = ddimTimesteps(s.T, 12);
    const d = take((await sampleDDIM(model, s, [8, 2], { seed: 9, steps: 12, eta: 0.6 })).x0);
    const e = take((await sampleLoop(model, s, [8, 2], taus, (xt, t, tPrev, eps) => ddimStep(s, xt, t, tPrev, eps, { seed: 9, eta: 0.6 }), { seed: 9 })).x0);
    expect(Array.from(e)).to.deep.equal(Array.from(d));
  });

  it('ddimEtaMax is where 1 - abar_prev - s^2 reaches 0 at the tightest step (float64), and is >= 1', () => {
    for (const sched of [linearSchedule(1000), cosineSchedule(1000), namedSchedule('linear', 200), s]) {
      const k = float64Constants(sched);
      for (const steps of [2, 10, 200, sched.T]) {
        const taus = ddimTimesteps(sched.T, Math.min(steps, sched.T));
        const etaMax = ddimEtaMax(sched, taus);
        expect(etaMax, `etaMax T=${sched.T} steps=${steps}`).to.be.at.least(1 - 1e-12);
        // the smallest sqrt argument over the steps with t' > 0, from the float64 re-derived abar
        const minArg = (eta: number) => Math.min(...taus.slice(1).map((t, i) => {
          const [ab, abp] = [k.abar[t], k.abar[taus[i]]];
          return 1 - abp - eta ** 2 * ((1 - abp) / (1 - ab)) * (1 - ab / abp);
        }));
        const smallest = Math.min(...taus.slice(1).map((_, i) => 1 - k.abar[taus[i]]));
        expectClose(minArg(etaMax), 0, 1e-9 * smallest, 0, `the tightest step at etaMax (T=${sched.T}, steps=${steps})`);
        expect(minArg(etaMax * 1.001), 'just above etaMax the argument is negative').to.be.below(0);
      }
    }
    expect(ddimEtaMax(s, [s.T])).to.equal(Infinity, 'one step straight to x_0 has s = 0 for any eta');
  });

  it('sampleDDIM refuses an eta above ddimEtaMax before any model call, naming eta, its value and the range', async () => {
    const sched = linearSchedule(1000);
    let calls = 0;
    const inner = gaussianOptimalEps(m, S, sched);
    const counting: Denoiser = { predictEps: (xt, t) => { calls++; return inner.predictEps(xt, t); } };
    const etaMax = ddimEtaMax(sched, ddimTimesteps(1000, 200));
    expect(etaMax).to.be.within(1, 1.2);
    const before = tf.memory().numTensors;
    await expectRejects(() => sampleDDIM(counting, sched, [4, 2], { steps: 200, eta: 1.2 }), new RegExp(`eta must be in \\[0, ${etaMax}\\] for these 200 DDIM timesteps.*got 1.2`));
    expect(calls, 'no model call before the refusal').to.equal(0);
    expect(tf.memory().numTensors).to.equal(before);
    // at etaMax itself (and at 1) every step's square root stays real: finite samples
    for (const eta of [1, etaMax]) {
      const r = take((await sampleDDIM(counting, sched, [4, 2], { steps: 200, eta, seed: 1 })).x0);
      expect(r.every(Number.isFinite), `finite samples at eta = ${eta}`).to.equal(true);
    }
    const [xt, eps] = [tf.zeros([2, 2]), tf.zeros([2, 2])];
    const one = ddimEtaMax(sched, [1, 6]);
    expect(() => ddimStep(sched, xt, 6, 1, eps, { eta: 1.2 })).to.throw(new RegExp(`eta must be in \\[0, ${one}\\] for these 2 DDIM timesteps.*t = 6 -> t' = 1.*got 1.2`));
    tf.dispose([xt, eps]);
  });

  it('the step functions reject bad input with the parameter named, and leak nothing either way', () => {
    const [xt, eps, bad, nan] = [tf.zeros([2, 2]), tf.zeros([2, 2]), tf.zeros([2, 3]), tf.tensor2d([[0, NaN], [0, 0]])];
    const before = tf.memory().numTensors;
    const cases: [() => unknown, RegExp][] = [
      [() => ddpmStep(s, xt, 0, eps), /t must be an integer in \[1, 100\], got 0/],
      [() => ddpmStep(s, xt, 101, eps), /t must be an integer in \[1, 100\], got 101/],
      [() => ddpmStep(s, xt, 5, bad), /xt and epsTheta must have the same shape, got \[2,2\] and \[2,3\]/],
      [() => ddpmStep(s, nan, 5, eps), /xt must contain only finite numbers/],
      [() => ddpmStep(s, xt, 5, nan), /epsTheta must contain only finite numbers/],
      [() => ddpmStep(s, xt, 5, eps, { z: bad }), /xt and z must have the same shape/],
      [() => ddpmStep(s, xt, 5, eps, { variance: 'big' as never }), /variance must be one of sigmaQ, beta, one, got big/],
      [() => ddimStep(s, xt, 5, 5, eps), /tPrev must be an integer in \[0, 4\], got 5/],
      [() => ddimStep(s, xt, 5, 2, eps, { eta: -0.1 }), /eta must be a finite number in \[0, Infinity\), got -0.1/],
      [() => ddimStep(s, xt, 5, 2, eps, { z: nan, eta: 1 }), /z must contain only finite numbers/],
    ];
    for (const [fn, pattern] of cases) {
      expect(fn).to.throw(pattern);
      expect(tf.memory().numTensors, `after ${pattern}`).to.equal(before);
    }
    tf.dispose([xt, eps, bad, nan]);
  });

  it('a sampler whose model or callback throws leaks nothing (wrong shape for the model, failing onStep)', async () => {
    const model = gaussianOptimalEps(m, S, s); // a 2-D model: shape [4, 3] makes predictEps throw
    const before = tf.memory().numTensors;
    await expectRejects(() => sampleDDPM(model, s, [4, 3]), /xt must have shape \[batch, 2\], got \[4,3\]/);
    await expectRejects(() => sampleDDIM(model, s, [4, 3], { steps: 5 }), /xt must have shape \[batch, 2\], got \[4,3\]/);
    const onStep = (i: { step: number }) => { if (i.step === 3) throw new Error('stop at step 3'); };
    await expectRejects(() => sampleDDPM(model, s, [4, 2], { onStep, trajectoryEvery: 1 }), /stop at step 3/);
    await expectRejects(() => sampleDDIM(model, s, [4, 2], { onStep, steps: 10, eta: 0.5 }), /stop at step 3/);
    await expectRejects(() => sampleLoop(model, s, [4, 2], [3, 2], (xt) => xt.clone()), /timesteps\[1\] must be an integer in \[4, 100\], got 2/);
    // a step that returns x_t itself must not have it disposed under it
    const xT = tf.ones([4, 2]);
    const same = await sampleLoop(model, s, [4, 2], [1, 5, 9], (xt) => xt, { xT });
    expect(Array.from(take(same.x0))).to.deep.equal([1, 1, 1, 1, 1, 1, 1, 1]);
    xT.dispose();
    await expectRejects(() => sampleLoop(model, s, [4, 2], [], (xt) => xt.clone()), /timesteps must be a non-empty ascending array/);
    expect(tf.memory().numTensors, 'tensors left after the failures').to.equal(before);
  });
});
