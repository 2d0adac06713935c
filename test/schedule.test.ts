import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  constantSchedule,
  cosineSchedule,
  extract,
  linearSchedule,
  scheduleFromBetas,
  scheduleFromConfig,
  checkTimestep,
  namedSchedule,
  checkReachesNoise,
  MAX_TERMINAL_ALPHA_BAR,
} from '../lib';
import { expectClose, expectNoLeak, take } from './support';

describe('schedules', () => {
  it('linear betas run from betaStart at t = 1 to betaEnd at t = T, index 0 is the data', () => {
    const s = linearSchedule(1000);
    expect(s.betas.length).to.equal(1001);
    expect(s.betas[0]).to.equal(0);
    expect(s.alphaBars[0]).to.equal(1);
    expectClose(s.betas[1], 1e-4, 1e-15);
    expectClose(s.betas[1000], 0.02, 1e-15);
    expectClose(s.betas[500] - s.betas[499], (0.02 - 1e-4) / 999, 1e-15);
  });

  it('alphaBars equal a naive float64 running product of 1 - beta', () => {
    for (const s of [linearSchedule(1000), cosineSchedule(1000), constantSchedule(300, 0.001)]) {
      let prod = 1;
      for (let t = 1; t <= s.T; t++) {
        prod *= 1 - s.betas[t];
        expectClose(s.alphaBars[t], prod, 0, 1e-12, `abar_${t}`);
      }
    }
  });

  it('matches published values: DDPM abar_T and the diffusers DDPMScheduler variance test', () => {
    const s = linearSchedule(1000, 1e-4, 0.02);
    // Ho et al.'s linear schedule: alphas_cumprod[-1] = 4.0358e-05 (sqrt = 0.00635).
    expectClose(s.alphaBars[1000], 4.0358e-5, 5e-9);
    // diffusers tests/schedulers/test_scheduler_ddpm.py test_variance (0-based t -> 1-based t + 1):
    // _get_variance(0) == 0, _get_variance(487) ~ 0.00979, _get_variance(999) ~ 0.02, each to 1e-5.
    expectClose(s.sigmaQ2[1], 0, 1e-20);
    expectClose(s.sigmaQ2[488], 0.00979, 1e-5);
    expectClose(s.sigmaQ2[1000], 0.02, 1e-5);
  });

  it('cosine abar_t is f(t)/f(0) in closed form wherever beta was not clipped, and clipped betas stop at maxBeta', () => {
    const T = 1000;
    const sc = 0.008;
    const s = cosineSchedule(T, sc, 0.999);
    const f = (t: number) => Math.cos((((t / T + sc) / (1 + sc)) * Math.PI) / 2) ** 2;
    let clipped = 0;
    for (let t = 1; t <= T; t++) {
      expect(s.betas[t]).to.be.at.most(0.999);
      if (s.betas[t] === 0.999) clipped++;
      else if (clipped === 0) expectClose(s.alphaBars[t], f(t) / f(0), 0, 1e-9, `abar_${t}`);
    }
    expect(clipped, 'f(T) = 0 makes the last beta 1, clipped to 0.999').to.equal(1);
    expect(s.betas[T]).to.equal(0.999);
  });

  it('constant schedule: abar_t = (1 - beta)^t; the text beta = 0.001 takes x_T near N(0, I) for large T', () => {
    const s = constantSchedule(5000, 0.001);
    for (const t of [1, 10, 1000, 5000]) expectClose(s.alphaBars[t], Math.pow(0.999, t), 0, 1e-12);
    // sqrt(abar_T) = e^{-2.5} ~ 0.082: the data's share in x_T is below 10%.
    expect(s.sqrtAlphaBars[5000]).to.be.below(0.085);
  });

  it('1 - abar_t keeps its digits for tiny betas (no cancellation)', () => {
    const s = constantSchedule(3, 1e-12);
    expectClose(s.oneMinusAlphaBars[1], 1e-12, 0, 1e-9);
    expectClose(s.oneMinusAlphaBars[3], 3e-12, 0, 1e-9);
    expect(Math.abs(1 - (1 - 1e-12) - 1e-12) / 1e-12, 'the naive formula would lose ~1e-4 relative').to.be.above(1e-6);
  });

  it('posterior variance and mean coefficients equal their defining formulas in float64', () => {
    const s = linearSchedule(200, 1e-3, 0.05);
    expect(s.sigmaQ2[1]).to.equal(0);
    for (let t = 1; t <= s.T; t++) {
      const abar = s.alphaBars[t];
      const abarPrev = s.alphaBars[t - 1];
      expectClose(s.sigmaQ2[t], ((1 - s.alphas[t]) * (1 - abarPrev)) / (1 - abar), 1e-15, 1e-10, 'sigmaQ2');
      expectClose(s.posteriorMeanCoefX0[t], (Math.sqrt(abarPrev) * s.betas[t]) / (1 - abar), 0, 1e-10, 'coefX0');
      expectClose(s.posteriorMeanCoefXt[t], (Math.sqrt(s.alphas[t]) * (1 - abarPrev)) / (1 - abar), 1e-15, 1e-10, 'coefXt');
      expectClose(s.epsCoef[t], (1 - s.alphas[t]) / Math.sqrt(1 - abar), 0, 1e-10, 'epsCoef');
      expect(s.sigmaQ2[t], 'sigma_q^2 <= beta_t').to.be.at.most(s.betas[t] + 1e-18);
    }
    expectClose(s.sigmaQ2LogClipped[1], Math.log(s.sigmaQ2[2]), 1e-12);
    expectClose(s.sigmaQ2LogClipped[7], Math.log(s.sigmaQ2[7]), 1e-12);
  });

  it('scheduleFromBetas and scheduleFromConfig rebuild the same schedule', () => {
    const a = linearSchedule(50, 1e-3, 0.1);
    const b = scheduleFromBetas(a.betas.slice(1));
    const c = scheduleFromConfig(a.config);
    expect(Array.from(b.alphaBars)).to.deep.equal(Array.from(a.alphaBars));
    expect(Array.from(c.sigmaQ2)).to.deep.equal(Array.from(a.sigmaQ2));
    expect(scheduleFromConfig(cosineSchedule(30).config).betas[30]).to.equal(cosineSchedule(30).betas[30]);
  });

  it('rejects bad T and betas with the parameter, the value and the range', () => {
    expect(() => linearSchedule(0)).to.throw(/T must be an integer >= 1, got 0/);
    expect(() => linearSchedule(2.5)).to.throw(/T must be an integer >= 1, got 2.5/);
    expect(() => cosineSchedule(NaN)).to.throw(/T must be/);
    expect(() => linearSchedule(10, 0, 0.02)).to.throw(/betaStart must be a finite number in \(0, 1\), got 0/);
    expect(() => linearSchedule(10, 1e-4, 1)).to.throw(/betaEnd .* got 1/);
    expect(() => constantSchedule(10, -0.1)).to.throw(/beta must be .* got -0.1/);
    expect(() => scheduleFromBetas([0.1, 1.5])).to.throw(/betas\[1\] \(beta_2\) must be in \(0, 1\), got 1.5/);
    expect(() => scheduleFromBetas([0.1, NaN])).to.throw(/finite/);
    expect(() => scheduleFromBetas([])).to.throw(/T \(number of betas\) must be an integer >= 1, got 0/);
    expect(() => cosineSchedule(10, 0.008, 1)).to.throw(/maxBeta/);
  });
});

describe('timestep gathering', () => {
  it('extract gathers per-example constants for an int32 t and broadcasts them', async () => {
    const s = linearSchedule(10, 0.01, 0.2);
    const t = tf.tensor1d([1, 10, 4], 'int32');
    const g = await expectNoLeak(() => extract(s.sqrtAlphaBars, t, 3));
    expect(g.shape).to.deep.equal([3, 1, 1]);
    expectClose(take(g), [s.sqrtAlphaBars[1], s.sqrtAlphaBars[10], s.sqrtAlphaBars[4]], 1e-7);
    expectClose(take(extract(s.betas, 7, 2)), [s.betas[7]], 1e-8); // float32 rounding of ~0.14: 6e-9
    t.dispose();
  });

  it('checkTimestep rejects t outside [1, T], non-integers, wrong dtype and wrong length', () => {
    const s = linearSchedule(10);
    expect(() => checkTimestep(s, 0, 3)).to.throw(/t must be an integer in \[1, 10\], got 0/);
    expect(() => checkTimestep(s, 11, 3)).to.throw(/got 11/);
    expect(() => checkTimestep(s, 1.5, 3)).to.throw(/got 1.5/);
    const bad = tf.tensor1d([1, 11], 'int32');
    expect(() => checkTimestep(s, bad, 2)).to.throw(/t\[1\] must be an integer in \[1, 10\], got 11/);
    expect(() => checkTimestep(s, bad, 3)).to.throw(/shape \[3\]/);
    const f = tf.tensor1d([1, 2], 'float32');
    expect(() => checkTimestep(s, f as tf.Tensor1D, 2)).to.throw(/int32/);
    tf.dispose([bad, f]);
  });
});

describe('schedule constants for the eps <-> x0 conversions', () => {
  it('recipSqrtAlphaBars and sqrtRecipAlphaBarsMinusOne equal 1/sqrt(abar) and sqrt(1/abar - 1) for every t', () => {
    for (const s of [linearSchedule(1000), cosineSchedule(100), constantSchedule(10, 1e-9)]) {
      for (let t = 1; t <= s.T; t++) {
        const abar = s.alphaBars[t];
        expectClose(s.recipSqrtAlphaBars[t], 1 / Math.sqrt(abar), 0, 1e-10);
        // 1/abar - 1 in float64 loses digits for abar near 1 (t = 1 with beta = 1e-9): 1e-6 relative there
        expectClose(s.sqrtRecipAlphaBarsMinusOne[t], Math.sqrt(1 / abar - 1), 0, 1e-6);
        expect(Number.isFinite(s.sqrtRecipAlphaBarsMinusOne[t]), `finite at t=${t}`).to.equal(true);
      }
    }
  });
});

describe('named schedules (improved-diffusion: linear betas scaled by 1000 / T)', () => {
  it('the scaled linear schedule has betas 1e-4 * 1000/T .. 0.02 * 1000/T, and T = 1000 is DDPM unscaled', () => {
    const a = namedSchedule('linear', 1000);
    const b = linearSchedule(1000);
    expect(Array.from(a.betas)).to.deep.equal(Array.from(b.betas));
    const s = namedSchedule('linear', 100);
    expect(s.betas[1]).to.be.closeTo(1e-3, 1e-15);
    expect(s.betas[100]).to.be.closeTo(0.2, 1e-15);
  });

  it('every T from 2 to 1000 ends near noise: abar_T <= 1e-2, checked by a float64 product of (1 - beta_t)', () => {
    for (const T of [2, 5, 10, 20, 50, 100, 250, 1000]) {
      for (const name of ['linear', 'cosine'] as const) {
        const s = namedSchedule(name, T);
        let prod = 1;
        for (let t = 1; t <= T; t++) prod *= 1 - s.betas[t];
        expect(prod, `${name} T = ${T}`).to.be.at.most(MAX_TERMINAL_ALPHA_BAR);
        expect(Math.max(...Array.from(s.betas))).to.be.at.most(0.999);
      }
    }
  });

  it('refuses a schedule that leaves abar_T above 1e-2, naming T and abar_T', () => {
    expect(() => namedSchedule('linear', 1)).to.throw(/T = 1 leaves abar_T = 0\.900/);
    expect(() => checkReachesNoise(linearSchedule(100), 'the unscaled linear schedule')).to.throw(/unscaled linear schedule at T = 100 leaves abar_T = 0\.36/);
    expect(() => namedSchedule('bogus' as never, 10)).to.throw(/schedule must be one of linear, cosine, got "bogus"/);
  });

  it('scheduleFromConfig refuses an unknown kind instead of returning undefined', () => {
    expect(() => scheduleFromConfig({ kind: 'bogus' } as never)).to.throw(/kind must be one of linear, cosine, constant, betas, got "bogus"/);
    expect(() => scheduleFromConfig(null as never)).to.throw(/schedule config must be an object/);
  });
});
