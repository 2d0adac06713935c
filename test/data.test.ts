import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { Rng } from '../lib';
// Deep imports until lib/index.ts re-exports these modules.
import {
  checkerboard,
  defaultMixture2d,
  gaussianMixture2d,
  MixtureSpec,
  moons,
  sampleMixture,
  swissRoll,
  SWISS_ROLL_SCALE,
  validateMixtureSpec,
} from '../lib';
import { cholesky, choleskySolve, invertSpd, logDetSpd, matMul, matVec, solveSpd, transpose } from '../lib';
import { loadMnist } from '../lib';
import { expectClose, take } from './support';

/** Every statistical check below allows Z standard errors: a false failure has probability < 1e-5 per check. */
const Z = 5;

/** A random SPD matrix M Mᵀ with M lower triangular and a known diagonal, so det = Π M_ii² independently. */
function randomSpd(d: number, seed: number): { a: number[][]; logDet: number } {
  const rng = new Rng(seed);
  const m = Array.from({ length: d }, (_, i) =>
    Array.from({ length: d }, (_, j) => (j < i ? rng.normal() : j === i ? 0.5 + rng.uniform() : 0)),
  );
  let logDet = 0;
  for (let i = 0; i < d; i++) logDet += 2 * Math.log(m[i][i]);
  return { a: matMulPlain(m, transposePlain(m)), logDet };
}

// Plain loops, so the checks on matMul/transpose do not rest on themselves.
function matMulPlain(a: number[][], b: number[][]): number[][] {
  return a.map((row) => b[0].map((_, j) => row.reduce((s, v, k) => s + v * b[k][j], 0)));
}
function transposePlain(a: number[][]): number[][] {
  return a[0].map((_, j) => a.map((row) => row[j]));
}

/** Sample mean and the standard error of each coordinate's mean, sd / sqrt(n), from row-major data. */
function meanAndSe(data: ArrayLike<number>, dim: number): { mean: number[]; se: number[] } {
  const n = data.length / dim;
  const mean = new Array<number>(dim).fill(0);
  const sq = new Array<number>(dim).fill(0);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += data[i * dim + j] / n;
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) sq[j] += (data[i * dim + j] - mean[j]) ** 2;
  return { mean, se: sq.map((s) => Math.sqrt(s / (n - 1) / n)) };
}

describe('linalg (float64, small SPD matrices)', () => {
  it('cholesky of [[4, 2], [2, 3]] is the hand-computed [[2, 0], [1, sqrt 2]]', () => {
    expectClose(cholesky([[4, 2], [2, 3]]).flat(), [2, 0, 1, Math.SQRT2], 1e-15, 0, 'L');
  });

  it('cholesky: L is lower triangular with a positive diagonal and L Lᵀ reproduces A (D = 6)', () => {
    const { a } = randomSpd(6, 1);
    const L = cholesky(a);
    for (let i = 0; i < 6; i++) {
      expect(L[i][i]).to.be.greaterThan(0);
      for (let j = i + 1; j < 6; j++) expect(L[i][j]).to.equal(0);
    }
    const scale = Math.max(...a.flat().map(Math.abs));
    expectClose(matMulPlain(L, transposePlain(L)).flat(), a.flat(), 1e-13 * scale, 0, 'L Lᵀ');
  });

  it('invertSpd: A A⁻¹ = I (D = 6) and the 2x2 inverse matches [[d, -b], [-b, a]] / det', () => {
    const { a } = randomSpd(6, 2);
    const eye = Array.from({ length: 6 }, (_, i) => Array.from({ length: 6 }, (_, j) => (i === j ? 1 : 0)));
    expectClose(matMulPlain(a, invertSpd(a)).flat(), eye.flat(), 1e-10, 0, 'A A⁻¹');
    const [p, q, r] = [2.5, -0.7, 1.3];
    const det = p * r - q * q;
    expectClose(invertSpd([[p, q], [q, r]]).flat(), [r / det, -q / det, -q / det, p / det], 1e-15, 1e-14, 'inverse');
  });

  it('logDetSpd: 2x2 equals log λ1 + log λ2 from the closed-form eigenvalues; D = 6 equals Σ log M_ii²', () => {
    const [p, q, r] = [3, 1.2, 0.8];
    const tr = p + r;
    const disc = Math.sqrt(tr * tr - 4 * (p * r - q * q));
    expectClose(logDetSpd([[p, q], [q, r]]), Math.log((tr + disc) / 2) + Math.log((tr - disc) / 2), 1e-14, 0, 'log det 2x2');
    const { a, logDet } = randomSpd(6, 3);
    expectClose(logDetSpd(a), logDet, 1e-12, 0, 'log det 6x6');
  });

  it('solveSpd and choleskySolve: A x = b', () => {
    const { a } = randomSpd(5, 4);
    const b = [1, -2, 0.5, 3, -1];
    const x = solveSpd(a, b);
    const ax = a.map((row) => row.reduce((s, v, k) => s + v * x[k], 0));
    expectClose(ax, b, 1e-11, 0, 'A x');
    expect(choleskySolve(cholesky(a), b)).to.deep.equal(x);
  });

  it('matVec, matMul and transpose on a hand example', () => {
    const a = [
      [1, 2, 3],
      [4, 5, 6],
    ];
    expect(matVec(a, [1, 0, -1])).to.deep.equal([-2, -2]);
    expect(transpose(a)).to.deep.equal([
      [1, 4],
      [2, 5],
      [3, 6],
    ]);
    expect(matMul(a, transpose(a))).to.deep.equal([
      [14, 32],
      [32, 77],
    ]);
  });

  it('cholesky rejects indefinite, non-square and non-finite matrices, naming what failed', () => {
    expect(() => cholesky([[1, 2], [2, 1]], 'S')).to.throw(/S must be symmetric positive-definite.*pivot 1/);
    expect(() => cholesky([[0]], 'S')).to.throw(/pivot 0/);
    expect(() => cholesky([[1, 0]], 'S')).to.throw(/S must be a 1x1 square matrix/);
    expect(() => cholesky([], 'S')).to.throw(/S must be a non-empty square matrix/);
    expect(() => cholesky([[1, NaN], [NaN, 1]], 'S')).to.throw(/S must contain only finite numbers, got NaN at \[0\]\[1\]/);
    expect(() => invertSpd([[-1]])).to.throw(/a must be symmetric positive-definite/);
  });
});

describe('2-D toy data sets', () => {
  const n = 4000;

  it('each returns a float32 [n, 2] tensor; same seed gives identical points, another seed different ones', () => {
    for (const [name, gen] of [
      ['swissRoll', swissRoll],
      ['moons', moons],
      ['checkerboard', checkerboard],
      ['gaussianMixture2d', gaussianMixture2d],
    ] as const) {
      const a = gen(50, { seed: 7 });
      expect(a.shape, name).to.deep.equal([50, 2]);
      expect(a.dtype, name).to.equal('float32');
      const va = take(a);
      expect(take(gen(50, { seed: 7 })), `${name} same seed`).to.deep.equal(va);
      expect(take(gen(50)), `${name} default seed is 0`).to.deep.equal(take(gen(50, { seed: 0 })));
      const vb = take(gen(50, { seed: 8 }));
      expect(vb.some((v, i) => v !== va[i]), `${name} different seed`).to.equal(true);
    }
  });

  it('swissRoll without noise: every point is t (cos t, sin t) / 7.5 with t = its radius in [1.5π, 4.5π]', () => {
    const p = take(swissRoll(n, { seed: 1, noise: 0 }));
    const ts: number[] = [];
    for (let i = 0; i < n; i++) {
      const x = p[2 * i] * SWISS_ROLL_SCALE;
      const z = p[2 * i + 1] * SWISS_ROLL_SCALE;
      const t = Math.hypot(x, z);
      ts.push(t);
      // float32 storage: relative error ~6e-8 in x, z and t, so t cos t is off by ~ t · 14 · 6e-8 ≈ 1e-5.
      expectClose([x, z], [t * Math.cos(t), t * Math.sin(t)], 1e-4, 0, `point ${i}`);
      expect(t).to.be.within(1.5 * Math.PI - 1e-5, 4.5 * Math.PI + 1e-5);
    }
    // t ~ U[1.5π, 4.5π]: mean 3π, sd 3π / sqrt(12).
    const tMean = ts.reduce((s, v) => s + v, 0) / n;
    expectClose(tMean, 3 * Math.PI, (Z * 3 * Math.PI) / Math.sqrt(12 * n), 0, 'mean of t');
  });

  it('swissRoll: sample mean matches the population mean (2, 2/(3π)) / 7.5 within 5 standard errors', () => {
    // E[t cos t] = [t sin t + cos t] / 3π over [1.5π, 4.5π] = 6π / 3π = 2; E[t sin t] = [sin t - t cos t] / 3π = 2 / 3π.
    const { mean, se } = meanAndSe(take(swissRoll(n, { seed: 2 })), 2);
    expectClose(mean[0], 2 / SWISS_ROLL_SCALE, Z * se[0], 0, 'mean x');
    expectClose(mean[1], 2 / (3 * Math.PI) / SWISS_ROLL_SCALE, Z * se[1], 0, 'mean z');
  });

  it('moons: without noise every point lies on one of the two half circles; with noise within 6 sd of its arc', () => {
    // Undo the -(0.5, 0.25) shift; upper arc: centre (0, 0), angle in [0, π]; lower: centre (1, 0.5), angle in [-π, 0].
    const arcDistance = (x: number, y: number, cx: number, cy: number, upper: boolean): number => {
      const ang = Math.atan2(y - cy, x - cx);
      if (upper ? ang >= 0 : ang <= 0) return Math.abs(Math.hypot(x - cx, y - cy) - 1);
      return Math.min(Math.hypot(x - cx - 1, y - cy), Math.hypot(x - cx + 1, y - cy)); // nearest end of the arc
    };
    const nearest = (x: number, y: number): [number, boolean] => {
      const du = arcDistance(x, y, 0, 0, true);
      const dl = arcDistance(x, y, 1, 0.5, false);
      return du <= dl ? [du, false] : [dl, true];
    };
    const clean = take(moons(n, { seed: 3, noise: 0 }));
    let lower = 0;
    for (let i = 0; i < n; i++) {
      const [d, isLower] = nearest(clean[2 * i] + 0.5, clean[2 * i + 1] + 0.25);
      expect(d, `point ${i}`).to.be.below(1e-6);
      if (isLower) lower++;
    }
    // Each moon has probability 1/2: binomial standard error 0.5 / sqrt(n).
    expectClose(lower / n, 0.5, (Z * 0.5) / Math.sqrt(n), 0, 'fraction on the lower moon');
    // |noise| for 2-D N(0, σ² I) exceeds 6σ with probability exp(-18) ≈ 1.5e-8 per point.
    const sigma = 0.1;
    const noisy = take(moons(n, { seed: 3, noise: sigma }));
    for (let i = 0; i < n; i++) {
      expect(nearest(noisy[2 * i] + 0.5, noisy[2 * i + 1] + 0.25)[0], `noisy point ${i}`).to.be.below(6 * sigma);
    }
    const { mean, se } = meanAndSe(noisy, 2);
    expectClose(mean, [0, 0], Z * Math.max(...se), 0, 'moons mean');
  });

  it('checkerboard: points fall only in the 8 filled cells, each hit n/8 times and uniform inside', () => {
    const p = take(checkerboard(n, { seed: 4 }));
    const counts = new Map<string, number>();
    const frac: number[] = [];
    for (let i = 0; i < n; i++) {
      const [x, y] = [p[2 * i], p[2 * i + 1]];
      expect(x).to.be.within(-2, 2);
      expect(y).to.be.within(-2, 2);
      const [col, row] = [Math.floor(x + 2), Math.floor(y + 2)];
      expect((col + row) % 2, `point ${i} (${x}, ${y}) in an empty cell`).to.equal(0);
      counts.set(`${col},${row}`, (counts.get(`${col},${row}`) ?? 0) + 1);
      frac.push(x + 2 - col, y + 2 - row);
    }
    expect(counts.size).to.equal(8);
    // Binomial(n, 1/8): sd sqrt(n · 1/8 · 7/8).
    for (const [cell, c] of counts) expectClose(c, n / 8, Z * Math.sqrt((n * 7) / 64), 0, `count of cell ${cell}`);
    // Position inside a cell ~ U[0, 1]: mean 1/2, sd 1/sqrt(12).
    const { mean } = meanAndSe(frac, 2);
    expectClose(mean, [0.5, 0.5], Z / Math.sqrt(12 * n), 0, 'mean position inside the cell');
  });

  it('checkerboard noise jitters the points off the cells', () => {
    const p = take(checkerboard(n, { seed: 4, noise: 0.2 }));
    let outside = 0;
    for (let i = 0; i < n; i++) if ((Math.floor(p[2 * i] + 2) + Math.floor(p[2 * i + 1] + 2)) % 2 !== 0) outside++;
    expect(outside).to.be.greaterThan(0);
  });

  it('rejects bad n, seed and noise, naming the parameter and the range', () => {
    for (const gen of [swissRoll, moons, checkerboard, gaussianMixture2d]) {
      expect(() => gen(0)).to.throw(/n must be an integer >= 1, got 0/);
      expect(() => gen(2.5)).to.throw(/n must be an integer >= 1, got 2.5/);
      expect(() => gen(10, { seed: NaN })).to.throw(/seed must be a finite number/);
    }
    for (const gen of [swissRoll, moons, checkerboard]) {
      expect(() => gen(10, { noise: -0.1 })).to.throw(/noise must be a finite number in \[0, Infinity\], got -0.1/);
      expect(() => gen(10, { noise: Infinity })).to.throw(/noise must be a finite number/);
    }
  });
});

describe('Gaussian mixtures', () => {
  /** Exact mixture moments: mean = Σ w m, cov = Σ w (S + m mᵀ) - mean meanᵀ. */
  function mixtureMoments(spec: MixtureSpec): { mean: number[]; cov: number[][] } {
    const d = spec.means[0].length;
    const mean = new Array<number>(d).fill(0);
    const second = Array.from({ length: d }, () => new Array<number>(d).fill(0));
    spec.weights.forEach((w, k) => {
      for (let i = 0; i < d; i++) {
        mean[i] += w * spec.means[k][i];
        for (let j = 0; j < d; j++) second[i][j] += w * (spec.covs[k][i][j] + spec.means[k][i] * spec.means[k][j]);
      }
    });
    return { mean, cov: second.map((row, i) => row.map((v, j) => v - mean[i] * mean[j])) };
  }

  /** Sample covariance entries with standard errors sd((xi - mi)(xj - mj)) / sqrt(n) (CLT for the products). */
  function checkMoments(spec: MixtureSpec, n: number, seed: number): void {
    const d = spec.means[0].length;
    const x = sampleMixture(spec, n, seed);
    expect(x.length).to.equal(n * d);
    const exact = mixtureMoments(spec);
    const { mean } = meanAndSe(x, d);
    for (let i = 0; i < d; i++) {
      expectClose(mean[i], exact.mean[i], (Z * Math.sqrt(exact.cov[i][i])) / Math.sqrt(n), 0, `mean[${i}]`);
    }
    for (let i = 0; i < d; i++) {
      for (let j = 0; j <= i; j++) {
        const prods = new Float64Array(n);
        for (let r = 0; r < n; r++) prods[r] = (x[r * d + i] - mean[i]) * (x[r * d + j] - mean[j]);
        const { mean: [c], se: [se] } = meanAndSe(prods, 1);
        expectClose(c, exact.cov[i][j], Z * se, 0, `cov[${i}][${j}]`);
      }
    }
  }

  it('defaultMixture2d is a valid 2-D spec', () => {
    expect(validateMixtureSpec(defaultMixture2d())).to.equal(2);
  });

  it('sampleMixture of the default 2-D spec matches the exact mixture mean and covariance within 5 standard errors', () => {
    checkMoments(defaultMixture2d(), 20000, 11);
  });

  it('sampleMixture in 3-D with correlated covariances matches the exact mixture moments', () => {
    const spec: MixtureSpec = {
      weights: [0.2, 0.5, 0.3],
      means: [
        [1, 0, -1],
        [-2, 1, 0.5],
        [0, -1.5, 2],
      ],
      covs: [randomSpd(3, 21).a, randomSpd(3, 22).a, randomSpd(3, 23).a],
    };
    checkMoments(spec, 20000, 12);
  });

  it('sampleMixture picks components by weight: 1-D modes at ±20 with sd 1 split 0.3 / 0.7', () => {
    const n = 20000;
    const x = sampleMixture({ weights: [0.3, 0.7], means: [[-20], [20]], covs: [[[1]], [[1]]] }, n, 5);
    const left = x.filter((v) => v < 0).length / n;
    expectClose(left, 0.3, Z * Math.sqrt((0.3 * 0.7) / n), 0, 'fraction of the first component');
  });

  it('gaussianMixture2d is sampleMixture cast to float32 once; it rejects a spec that is not 2-D', () => {
    const spec = defaultMixture2d();
    const t = gaussianMixture2d(100, { seed: 9, spec });
    expect(Array.from(t.dataSync())).to.deep.equal(Array.from(Float32Array.from(sampleMixture(spec, 100, 9))));
    t.dispose();
    expect(() => gaussianMixture2d(10, { spec: { weights: [1], means: [[0]], covs: [[[1]]] } })).to.throw(
      /spec must be 2-dimensional for gaussianMixture2d, got D = 1/,
    );
  });

  it('validateMixtureSpec names the bad field, the value and what is valid', () => {
    const good = (): MixtureSpec => defaultMixture2d();
    const bad = (edit: (s: MixtureSpec) => void): MixtureSpec => {
      const s = good();
      edit(s);
      return s;
    };
    expect(() => validateMixtureSpec(bad((s) => (s.weights = [])))).to.throw(/spec.weights must be a non-empty array/);
    expect(() => validateMixtureSpec(bad((s) => (s.weights = [0.5, 0.5, 0.1])))).to.throw(/spec.weights must sum to 1 within 1e-9, got sum 1.1/);
    expect(() => validateMixtureSpec(bad((s) => (s.weights = [1.2, -0.2, 0])))).to.throw(/spec.weights\[1\] must be a finite number in \(0, Infinity\], got -0.2/);
    expect(() => validateMixtureSpec(bad((s) => s.means.pop()))).to.throw(/spec.means must hold one mean per weight \(3\), got 2/);
    expect(() => validateMixtureSpec(bad((s) => (s.means[2] = [0, 1, 2])))).to.throw(/spec.means\[2\] must have length D = 2/);
    expect(() => validateMixtureSpec(bad((s) => (s.means[1][0] = NaN)))).to.throw(/spec.means\[1\]\[0\] must be a finite number/);
    expect(() => validateMixtureSpec(bad((s) => s.covs.pop()))).to.throw(/spec.covs must hold one covariance per weight/);
    expect(() => validateMixtureSpec(bad((s) => (s.covs[0] = [[1]])))).to.throw(/spec.covs\[0\] must be a 2x2 matrix/);
    expect(() => validateMixtureSpec(bad((s) => (s.covs[1][0][1] = 0.01)))).to.throw(/spec.covs\[1\] must be symmetric/);
    expect(() => validateMixtureSpec(bad((s) => (s.covs[2] = [[1, 2], [2, 1]])))).to.throw(/spec.covs\[2\] must be symmetric positive-definite/);
    expect(() => sampleMixture(good(), 0, 1)).to.throw(/n must be an integer >= 1, got 0/);
    expect(() => sampleMixture(good(), 5, Infinity)).to.throw(/seed must be a finite number/);
  });
});

describe('MNIST from the mnist package', function () {
  this.timeout(60000);
  const digitsDir = path.join(path.dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  // Read independently of lib/data/mnist.ts: the package's own float pixels, per digit.
  const raw: number[][] = [];
  let all: { images: Float32Array; labels: Int32Array };
  let train: { images: Float32Array; labels: Int32Array };
  let test: { images: Float32Array; labels: Int32Array };
  const read = (opts: Parameters<typeof loadMnist>[0]): { images: Float32Array; labels: Int32Array; shape: number[] } => {
    const { images, labels } = loadMnist(opts);
    const out = { images: images.dataSync() as Float32Array, labels, shape: images.shape };
    images.dispose();
    return out;
  };

  before(() => {
    for (let d = 0; d < 10; d++) raw.push(JSON.parse(fs.readFileSync(path.join(digitsDir, `${d}.json`), 'utf8')).data);
    all = read({ split: 'all' });
    train = read({ split: 'train' });
    test = read({ split: 'test' });
  });

  const countLabels = (labels: Int32Array): number[] => {
    const c = new Array<number>(10).fill(0);
    for (const l of labels) c[l]++;
    return c;
  };

  it("'all' holds every image of the package: [10000, 28, 28, 1], per-digit counts as in the files", () => {
    const { shape } = read({ split: 'all', digits: [0] });
    expect(shape).to.deep.equal([raw[0].length / 784, 28, 28, 1]);
    expect(all.images.length).to.equal(10000 * 784);
    expect(all.labels.length).to.equal(10000);
    expect(countLabels(all.labels)).to.deep.equal(raw.map((r) => r.length / 784));
    // The package's counts, pinned so that a different package version is noticed.
    expect(countLabels(all.labels)).to.deep.equal([1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]);
  });

  it('pixels span exactly [-1, 1] and every one lies on the 256-level grid 2k/255 - 1 (as float32)', () => {
    let min = Infinity;
    let max = -Infinity;
    for (const v of all.images) {
      if (v < min) min = v;
      if (v > max) max = v;
      const k = Math.round(((v + 1) * 255) / 2);
      if (v !== Math.fround((2 * k) / 255 - 1)) expect.fail(`pixel ${v} is not on the grid (nearest level ${k})`);
    }
    expect(min).to.equal(-1);
    expect(max).to.equal(1);
  });

  it("pixels agree with the package's floats (stored as k/255 to 3 decimals): the first image of each digit", () => {
    // 'all' interleaves digits in ascending order, so image d is the first image of digit d.
    for (let d = 0; d < 10; d++) {
      expect(all.labels[d]).to.equal(d);
      const ours = Array.from(all.images.subarray(d * 784, (d + 1) * 784), (v) => (v + 1) / 2);
      // 3-decimal rounding of the package: 5e-4; float32 of 2k/255 - 1: 6e-8.
      expectClose(ours, raw[d].slice(0, 784), 5e-4 + 1e-7, 0, `digit ${d} image 0`);
    }
  });

  it('train is the first floor(0.9 n_d) of each digit, test the rest; disjoint, and together they are all', () => {
    const counts = raw.map((r) => r.length / 784);
    expect(countLabels(train.labels)).to.deep.equal(counts.map((c) => Math.floor(0.9 * c + 1e-9)));
    expect(countLabels(test.labels)).to.deep.equal(counts.map((c) => c - Math.floor(0.9 * c + 1e-9)));
    const keys = (x: Float32Array): string[] => {
      const out: string[] = [];
      for (let i = 0; i < x.length / 784; i++) {
        const levels = Uint8Array.from(x.subarray(i * 784, (i + 1) * 784), (v) => Math.round(((v + 1) * 255) / 2));
        out.push(Buffer.from(levels).toString('base64'));
      }
      return out;
    };
    const trainKeys = new Set(keys(train.images));
    const testKeys = keys(test.images);
    expect(testKeys.filter((k) => trainKeys.has(k)).length, 'test images also in train').to.equal(0);
    expect([...trainKeys, ...testKeys].sort()).to.deep.equal(keys(all.images).sort());
  });

  it("pixel mean is MNIST's training mean 0.1307 within 4 standard errors of the per-image mean", () => {
    // The package's per-digit counts are not the MNIST test set's (980, 1135, 1032, ...), so these
    // 10,000 images are taken to be drawn from the training set (pixel mean 0.1307); se = sd(per-image
    // mean) / sqrt(N). Our 'test' split is NOT the MNIST test set (mean 0.1325): it is 10% of the same
    // images, so 0.1307 applies to it too.
    for (const [name, set] of [['all', () => all], ['train', () => train], ['test', () => test]] as const) {
      const images = set().images;
      const n = images.length / 784;
      const perImage = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let p = 0; p < 784; p++) s += (images[i * 784 + p] + 1) / 2;
        perImage[i] = s / 784;
      }
      const { mean: [m], se: [se] } = meanAndSe(perImage, 1);
      expectClose(m, 0.1307, 4 * se, 0, `${name} pixel mean in [0, 1]`);
    }
  });

  it('digits filters the labels; limit interleaves the digits round-robin in ascending order', () => {
    const some = read({ digits: [7, 2, 5], split: 'all' });
    expect(new Set(some.labels)).to.deep.equal(new Set([2, 5, 7]));
    expect(some.labels.length).to.equal(991 + 863 + 1070);
    expect(Array.from(read({ digits: [5, 3], limit: 7 }).labels)).to.deep.equal([3, 5, 3, 5, 3, 5, 3]);
    const ten = read({ limit: 10, split: 'test' });
    expect(Array.from(ten.labels)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(ten.shape).to.deep.equal([10, 28, 28, 1]);
    // The first of each digit in 'test' is image floor(0.9 n_d) of the digit's file.
    const d = 4;
    const first = Math.floor(0.9 * (raw[d].length / 784) + 1e-9);
    const ours = Array.from(ten.images.subarray(d * 784, (d + 1) * 784), (v) => (v + 1) / 2);
    expectClose(ours, raw[d].slice(first * 784, (first + 1) * 784), 5e-4 + 1e-7, 0, 'first test image of digit 4');
    // Once a digit runs out the others continue: 5 has 863 images, 1 has 1127.
    const tail = read({ digits: [1, 5], split: 'all' }).labels;
    expect(Array.from(tail.subarray(2 * 863))).to.deep.equal(new Array(1127 - 863).fill(1));
    expect(read({ limit: 20000, digits: [9] }).labels.length).to.equal(Math.floor(0.9 * 978));
  });

  it('rejects bad digits, limit and split, naming the parameter, value and valid range', () => {
    expect(() => loadMnist({ digits: [] })).to.throw(/digits must be a non-empty array of distinct integers in \[0, 9\]/);
    expect(() => loadMnist({ digits: [10] })).to.throw(/digits\[0\] must be an integer in \[0, 9\], got 10/);
    expect(() => loadMnist({ digits: [1, -1] })).to.throw(/digits\[1\] must be an integer in \[0, 9\], got -1/);
    expect(() => loadMnist({ digits: [1.5] })).to.throw(/digits\[0\] must be an integer in \[0, 9\], got 1.5/);
    expect(() => loadMnist({ digits: [3, 3] })).to.throw(/digits must not repeat a digit, got 3 twice/);
    expect(() => loadMnist({ limit: 0 })).to.throw(/limit must be an integer >= 1, got 0/);
    expect(() => loadMnist({ limit: 2.5 })).to.throw(/limit must be an integer >= 1, got 2.5/);
    expect(() => loadMnist({ limit: NaN })).to.throw(/limit must be an integer >= 1, got NaN/);
    expect(() => loadMnist({ split: 'val' as 'train' })).to.throw(/split must be one of 'train', 'test', 'all', got "val"/);
  });

  it('does not leak tensors beyond the returned images', () => {
    const before = tf.memory().numTensors;
    const { images } = loadMnist({ limit: 5 });
    expect(tf.memory().numTensors).to.equal(before + 1);
    images.dispose();
  });
});
