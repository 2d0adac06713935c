import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { Rng } from '../lib';
// Deep import until lib/index.ts re-exports this module.
import { energyDistance, meanAndCovariance, mmdRbf } from '../lib';
import { expectClose } from './support';

/**
 * Statistical checks allow Z standard errors of a mean over R independent replicates: P(|t_63| > 5)
 * ≈ 5e-6 per check. R is large enough that the skew of the null distributions (a weighted chi-square
 * for MMD² at mu = 0) does not make the replicate sd an underestimate.
 */
const Z = 5;
const R = 64;

/** Standard normal cdf via Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, far below the tolerances here). */
function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * z);
  const poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  const erf = 1 - poly * Math.exp(-z * z);
  return x >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
}

/** E|W| for W ~ N(mu, s^2): s sqrt(2/π) exp(-mu²/(2s²)) + mu (1 - 2 Φ(-mu/s)). */
function meanAbsNormal(mu: number, s: number): number {
  return s * Math.sqrt(2 / Math.PI) * Math.exp((-mu * mu) / (2 * s * s)) + mu * (1 - 2 * normalCdf(-mu / s));
}

/** n draws of N(mu, 1) as 1-D points. */
function normalPoints(rng: Rng, n: number, mu: number): number[][] {
  return Array.from({ length: n }, () => [mu + rng.normal()]);
}

/** Mean and standard error sd / sqrt(R) of replicate values. */
function replicateMean(values: number[]): { mean: number; se: number } {
  const r = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / r;
  const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / (r - 1);
  return { mean, se: Math.sqrt(variance / r) };
}

describe('energyDistance (V-statistic)', () => {
  it('matches hand-computed tiny examples in 1-D and 2-D', () => {
    // x = {0, 1}, y = {0, 3}: E|X-Y| = (0+3+1+2)/4 = 1.5, E|X-X'| = 2/4, E|Y-Y'| = 6/4 → 3 - 0.5 - 1.5 = 1.
    expect(energyDistance([[0], [1]], [[0], [3]])).to.equal(1);
    // x = {(0,0), (3,4)}, y = {(0,0), (0,0)}: E|X-Y| = 10/4, E|X-X'| = 10/4, E|Y-Y'| = 0 → 2.5.
    expectClose(energyDistance([[0, 0], [3, 4]], [[0, 0], [0, 0]]), 2.5, 1e-15, 0, 'energy distance 2-D');
  });

  it('is 0 for identical sets, symmetric, and > 0 for different sets', () => {
    const rng = new Rng(1);
    const x = Array.from({ length: 40 }, () => [rng.normal(), rng.normal(), rng.normal()]);
    const y = Array.from({ length: 30 }, () => [rng.normal() + 0.3, rng.normal(), rng.normal()]);
    expect(energyDistance(x, x)).to.equal(0);
    expect(energyDistance(x, y)).to.be.greaterThan(0);
    expectClose(energyDistance(x, y), energyDistance(y, x), 1e-14, 0, 'symmetry');
  });

  it('averages to the population energy distance of N(0,1) vs N(mu,1) plus the V-statistic bias', () => {
    // D = 2 E|X-Y| - E|X-X'| - E|Y-Y'| with X - Y ~ N(-mu, 2) and X - X' ~ N(0, 2), so E|X-X'| = 2/√π.
    // The V-statistic's self-pairs (distance 0) make its mean D + (1/n + 1/m) · 2/√π exactly.
    const [n, m] = [300, 200];
    for (const mu of [0, 1]) {
      const exxPop = 2 / Math.sqrt(Math.PI);
      const pop = 2 * meanAbsNormal(-mu, Math.SQRT2) - 2 * exxPop;
      const expected = pop + (1 / n + 1 / m) * exxPop;
      const rng = new Rng(100 + mu);
      const values = Array.from({ length: R }, () => energyDistance(normalPoints(rng, n, 0), normalPoints(rng, m, mu)));
      const { mean, se } = replicateMean(values);
      expectClose(mean, expected, Z * se, 0, `mean energy distance, mu = ${mu}`);
    }
  });

  it('accepts a tensor, rows, or flat Float32/Float64 data with dim, giving the same value; leaves the tensor alone', () => {
    const x = [
      [0.5, -1],
      [2, 0.25],
      [1, 1],
    ];
    const y = [
      [0, 0],
      [-1.5, 2],
    ];
    const expected = energyDistance(x, y);
    const tx = tf.tensor2d(x);
    const before = tf.memory().numTensors;
    expect(energyDistance(tx, y)).to.equal(expected);
    expect(tf.memory().numTensors).to.equal(before);
    expect(tx.isDisposed).to.equal(false);
    tx.dispose();
    expect(energyDistance({ data: Float64Array.from(x.flat()), dim: 2 }, { data: Float32Array.from(y.flat()), dim: 2 })).to.equal(expected);
  });
});

describe('mmdRbf (V-statistic of squared MMD)', () => {
  it('matches the hand-computed value (1 - e^{-4g}) / 2 for x = {0, 1}, y = {0, 3}, g = 1 / (2h²)', () => {
    // Kxx = (2 + 2e^{-g})/4, Kyy = (2 + 2e^{-9g})/4, Kxy = (1 + e^{-9g} + e^{-g} + e^{-4g})/4.
    const x = [[0], [1]];
    const y = [[0], [3]];
    expectClose(mmdRbf(x, y, 1), (1 - Math.exp(-2)) / 2, 1e-15, 0, 'h = 1');
    // Pooled distances over distinct pairs of {0, 1, 0, 3}: 0, 1, 1, 2, 3, 3 → median 1.5.
    expectClose(mmdRbf(x, y), (1 - Math.exp(-4 / (2 * 1.5 * 1.5))) / 2, 1e-15, 0, 'median heuristic');
  });

  it('is 0 for identical sets and > 0 for different ones', () => {
    const rng = new Rng(2);
    const x = normalPoints(rng, 50, 0);
    expect(mmdRbf(x, x)).to.equal(0);
    expect(mmdRbf(x, normalPoints(rng, 50, 2))).to.be.greaterThan(0);
  });

  it('averages to the population MMD² of N(0,1) vs N(mu,1) plus the V-statistic bias', () => {
    // With a = E k(X, X') = h/√(h²+2) and E k(X, Y) = a exp(-mu²/(2(h²+2))): MMD² = 2a (1 - exp(-mu²/(2(h²+2)))),
    // and the self-pairs (k = 1) add exactly (1/n + 1/m)(1 - a) to the mean of the V-statistic.
    const [n, m, h] = [250, 200, 1.3];
    for (const mu of [0, 0.8]) {
      const a = h / Math.sqrt(h * h + 2);
      const expected = 2 * a * (1 - Math.exp((-mu * mu) / (2 * (h * h + 2)))) + (1 / n + 1 / m) * (1 - a);
      const rng = new Rng(200 + mu * 10);
      const values = Array.from({ length: R }, () => mmdRbf(normalPoints(rng, n, 0), normalPoints(rng, m, mu), h));
      const { mean, se } = replicateMean(values);
      expectClose(mean, expected, Z * se, 0, `mean MMD², mu = ${mu}`);
    }
  });

  it('rejects a bad bandwidth, and a median of 0 when no bandwidth is given', () => {
    expect(() => mmdRbf([[0], [1]], [[2], [3]], 0)).to.throw(/bandwidth must be a finite number in \(0, Infinity\], got 0/);
    expect(() => mmdRbf([[0], [1]], [[2], [3]], NaN)).to.throw(/bandwidth must be a finite number/);
    expect(() => mmdRbf([[0], [0], [0]], [[0], [1]])).to.throw(/median pairwise distance is 0.*pass a bandwidth/);
  });
});

describe('meanAndCovariance', () => {
  it('matches a hand computation and divides by n - 1', () => {
    // Points (1,2), (3,4), (5,0): mean (3, 2); centred (-2,0), (0,2), (2,-2) → cov [[8, -4], [-4, 8]] / 2.
    const { mean, cov } = meanAndCovariance([
      [1, 2],
      [3, 4],
      [5, 0],
    ]);
    expect(mean).to.deep.equal([3, 2]);
    expect(cov).to.deep.equal([
      [4, -2],
      [-2, 4],
    ]);
    expect(meanAndCovariance([[0], [2]]).cov).to.deep.equal([[2]]); // the biased version would give 1
  });

  it('keeps the variance of points far from the origin (no E[x²] - E[x]² cancellation)', () => {
    expectClose(meanAndCovariance([[1e8], [1e8 + 1], [1e8 + 2]]).cov[0][0], 1, 1e-9, 0, 'variance');
  });

  it('recovers the mean and covariance of N(m, L Lᵀ) within 5 standard errors', () => {
    // x = m + L z: mean m, cov S = L Lᵀ; se of mean_i = sqrt(S_ii / n); se of cov_ij = sqrt((S_ii S_jj + S_ij²) / n) (Gaussian).
    const n = 20000;
    const m = [1, -2];
    const L = [
      [1.5, 0],
      [-0.6, 0.8],
    ];
    const S = [
      [2.25, -0.9],
      [-0.9, 1],
    ];
    const rng = new Rng(3);
    const data = new Float64Array(2 * n);
    for (let i = 0; i < n; i++) {
      const [z0, z1] = [rng.normal(), rng.normal()];
      data[2 * i] = m[0] + L[0][0] * z0;
      data[2 * i + 1] = m[1] + L[1][0] * z0 + L[1][1] * z1;
    }
    const { mean, cov } = meanAndCovariance({ data, dim: 2 });
    for (let i = 0; i < 2; i++) {
      expectClose(mean[i], m[i], Z * Math.sqrt(S[i][i] / n), 0, `mean[${i}]`);
      for (let j = 0; j < 2; j++) {
        expectClose(cov[i][j], S[i][j], Z * Math.sqrt((S[i][i] * S[j][j] + S[i][j] ** 2) / n), 0, `cov[${i}][${j}]`);
      }
    }
    expect(cov[0][1]).to.equal(cov[1][0]);
  });
});

describe('metric inputs are validated', () => {
  const ok = [
    [0, 0],
    [1, 1],
  ];
  it('rejects mismatched dimensions, fewer than 2 points, non-finite values and malformed sets', () => {
    expect(() => energyDistance(ok, [[0], [1]])).to.throw(/x and y must have the same dimension, got 2 and 1/);
    expect(() => mmdRbf(ok, [[0, 0]])).to.throw(/y must hold at least 2 points, got 1/);
    expect(() => energyDistance([], ok)).to.throw(/x must hold at least 2 points, got 0/);
    expect(() => meanAndCovariance({ data: new Float64Array(3), dim: 3 })).to.throw(/x must hold at least 2 points, got 1/);
    expect(() => energyDistance(ok, [[0, 0], [NaN, 1]])).to.throw(/y must contain only finite numbers, got NaN at point 1, coordinate 0/);
    expect(() => meanAndCovariance({ data: Float64Array.from([0, 1, 2, Infinity]), dim: 2 })).to.throw(/x must contain only finite numbers, got Infinity/);
    expect(() => energyDistance([[0, 0], [1]], ok)).to.throw(/x must be rows of equal length 2, but row 1 has 1/);
    expect(() => energyDistance([[], []], [[], []])).to.throw(/x must have dimension >= 1, got 0/);
    expect(() => energyDistance({ data: new Float64Array(5), dim: 2 }, ok)).to.throw(/x.data length must be a multiple of x.dim = 2, got 5/);
    expect(() => energyDistance({ data: new Float64Array(4), dim: 0 }, ok)).to.throw(/x.dim must be an integer >= 1, got 0/);
    expect(() => energyDistance('points' as unknown as number[][], ok)).to.throw(/x must be a tf.Tensor2D, a number\[\]\[\]/);
    const t3 = tf.zeros([2, 2, 1]) as unknown as tf.Tensor2D;
    expect(() => meanAndCovariance(t3)).to.throw(/x must be a rank-2 tensor \[n, D\], got shape \[2,2,1\]/);
    t3.dispose();
  });
});
