/**
 * Seeded 2-D toy data sets for x_0, and exact sampling from Gaussian mixtures in any dimension.
 * Every generator draws iid points from a fixed distribution (unlike sklearn's make_moons, which
 * spaces the arc angles evenly), so that two samples can be compared with lib/data/metrics.ts. Points
 * are generated in float64 from one `Rng` stream and cast to float32 once, so the same seed gives
 * the same tensor; the default seed is 0.
 * Notebooks: 01_forward_diffusion, 05_training_2d.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../diffusion/random';
import { checkInteger, checkNumber } from '../diffusion/validate';
import { cholesky, checkSymmetric } from '../diffusion/linalg';

/** Options shared by the 2-D toy sets: `seed` (default 0) and `noise`, a Gaussian jitter sd. */
export interface ToyDataOptions {
  seed?: number;
  noise?: number;
}

/**
 * A Gaussian mixture sum_k weights[k] N(means[k], covs[k]) in D dimensions: K weights, K mean
 * vectors of length D and K symmetric positive-definite D x D covariances.
 */
export interface MixtureSpec {
  weights: number[];
  means: number[][];
  covs: number[][][];
}

/** Divisor that brings sklearn's swiss roll (radius t in [1.5 pi, 4.5 pi]) to an sd of about 0.9. */
export const SWISS_ROLL_SCALE = 7.5;

/**
 * Swiss roll as sklearn's make_swiss_roll projected on (x, z): t ~ U[1.5 pi, 4.5 pi],
 * (x, z) = (t cos t, t sin t) + noise N(0, I), all divided by SWISS_ROLL_SCALE = 7.5. `noise`
 * (default 0.5) is in sklearn's units, i.e. before the division. Population mean (2, 2/(3 pi))/7.5
 * ≈ (0.27, 0.03), sd ≈ (0.89, 0.93) (not centred: the roll keeps sklearn's coordinates).
 */
export function swissRoll(n: number, opts: ToyDataOptions = {}): tf.Tensor2D {
  const { rng, noise } = toyArgs(n, opts, 0.5);
  const out = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const t = 1.5 * Math.PI * (1 + 2 * rng.uniform());
    out[2 * i] = (t * Math.cos(t) + noise * rng.normal()) / SWISS_ROLL_SCALE;
    out[2 * i + 1] = (t * Math.sin(t) + noise * rng.normal()) / SWISS_ROLL_SCALE;
  }
  return toTensor(out, n);
}

/**
 * Two interleaving half circles as in sklearn's make_moons, shifted by -(0.5, 0.25) to be zero-mean:
 * each point picks a moon with probability 1/2 and an angle theta ~ U[0, pi]; the upper moon is
 * (cos theta, sin theta), the lower (1 - cos theta, 0.5 - sin theta), plus noise N(0, I) (default
 * 0.05). sd ≈ (0.87, 0.50) without noise.
 */
export function moons(n: number, opts: ToyDataOptions = {}): tf.Tensor2D {
  const { rng, noise } = toyArgs(n, opts, 0.05);
  const out = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const lower = rng.uniform() < 0.5;
    const theta = Math.PI * rng.uniform();
    const x = lower ? 1 - Math.cos(theta) : Math.cos(theta);
    const y = lower ? 0.5 - Math.sin(theta) : Math.sin(theta);
    out[2 * i] = x - 0.5 + noise * rng.normal();
    out[2 * i + 1] = y - 0.25 + noise * rng.normal();
  }
  return toTensor(out, n);
}

/**
 * The 4 x 4 checkerboard on [-2, 2]^2 with unit cells, the 8 cells whose column + row index
 * (counted from -2) is even filled uniformly, plus noise N(0, I) (default 0). Exactly zero-mean;
 * each coordinate is marginally U[-2, 2] (sd 2/sqrt(3) ≈ 1.15).
 */
export function checkerboard(n: number, opts: ToyDataOptions = {}): tf.Tensor2D {
  const { rng, noise } = toyArgs(n, opts, 0);
  const out = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const cell = rng.int(0, 7);
    const col = cell >> 1; // each column holds 2 filled cells: rows of the same parity as the column
    const row = 2 * (cell & 1) + (col & 1);
    out[2 * i] = col - 2 + rng.uniform() + noise * rng.normal();
    out[2 * i + 1] = row - 2 + rng.uniform() + noise * rng.normal();
  }
  return toTensor(out, n);
}

/**
 * The default 2-D mixture: three well-separated components with different weights and full
 * covariances, mean ≈ (-0.06, -0.15) and spread of order 1 — easy for an MLP to learn in a few
 * hundred steps, yet exercising every term of the exact mixture eps*. A fresh copy on each call.
 */
export function defaultMixture2d(): MixtureSpec {
  return {
    weights: [0.4, 0.35, 0.25],
    means: [
      [-1.2, -0.6],
      [1.2, -0.6],
      [0, 1.2],
    ],
    covs: [
      [
        [0.15, 0.08],
        [0.08, 0.1],
      ],
      [
        [0.1, -0.06],
        [-0.06, 0.15],
      ],
      [
        [0.2, 0],
        [0, 0.05],
      ],
    ],
  };
}

/**
 * Throws unless `spec` is a valid mixture: weights positive and summing to 1 within 1e-9, all means
 * of one length D >= 1, every cov D x D, finite, symmetric and positive-definite. Returns D.
 */
export function validateMixtureSpec(spec: MixtureSpec): number {
  if (spec === null || typeof spec !== 'object') throw new Error(`spec must be a MixtureSpec object, got ${String(spec)}`);
  const { weights, means, covs } = spec;
  if (!Array.isArray(weights) || weights.length === 0) {
    throw new Error(`spec.weights must be a non-empty array of positive numbers, got ${JSON.stringify(weights)}`);
  }
  const k = weights.length;
  let sum = 0;
  weights.forEach((w, i) => {
    checkNumber(`spec.weights[${i}]`, w, 0, Infinity, { lo: true });
    sum += w;
  });
  if (Math.abs(sum - 1) > 1e-9) throw new Error(`spec.weights must sum to 1 within 1e-9, got sum ${sum}`);
  if (!Array.isArray(means) || means.length !== k) {
    throw new Error(`spec.means must hold one mean per weight (${k}), got ${Array.isArray(means) ? means.length : String(means)}`);
  }
  if (!Array.isArray(covs) || covs.length !== k) {
    throw new Error(`spec.covs must hold one covariance per weight (${k}), got ${Array.isArray(covs) ? covs.length : String(covs)}`);
  }
  const d = Array.isArray(means[0]) ? means[0].length : 0;
  if (d < 1) throw new Error(`spec.means[0] must be a non-empty array of numbers, got ${JSON.stringify(means[0])}`);
  for (let c = 0; c < k; c++) {
    const m = means[c];
    if (!Array.isArray(m) || m.length !== d) {
      throw new Error(`spec.means[${c}] must have length D = ${d} (the length of spec.means[0]), got ${Array.isArray(m) ? m.length : String(m)}`);
    }
    m.forEach((v, j) => checkNumber(`spec.means[${c}][${j}]`, v, -Infinity, Infinity));
    const s = covs[c];
    if (!Array.isArray(s) || s.length !== d) {
      throw new Error(`spec.covs[${c}] must be a ${d}x${d} matrix (D = ${d} from spec.means), got ${Array.isArray(s) ? s.length : String(s)} rows`);
    }
    checkSymmetric(`spec.covs[${c}]`, s);
    cholesky(s, `spec.covs[${c}]`);
  }
  return d;
}

/**
 * n exact iid draws from the mixture, row-major [n, D] in float64: a component by its weight, then
 * m + L z with L the Cholesky factor of its covariance and z ~ N(0, I).
 */
export function sampleMixture(spec: MixtureSpec, n: number, seed: number): Float64Array {
  const d = validateMixtureSpec(spec);
  checkInteger('n', n, 1);
  checkNumber('seed', seed, -Infinity, Infinity);
  const factors = spec.covs.map((s, c) => cholesky(s, `spec.covs[${c}]`));
  const cumulative: number[] = [];
  let acc = 0;
  for (const w of spec.weights) cumulative.push((acc += w));
  const rng = new Rng(seed);
  const out = new Float64Array(n * d);
  const z = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    const u = rng.uniform() * acc; // scale by the actual sum so rounding in the weights never skips the last component
    let c = 0;
    while (c < cumulative.length - 1 && u >= cumulative[c]) c++;
    for (let j = 0; j < d; j++) z[j] = rng.normal();
    const L = factors[c];
    const m = spec.means[c];
    for (let r = 0; r < d; r++) {
      let s = m[r];
      for (let j = 0; j <= r; j++) s += L[r][j] * z[j];
      out[i * d + r] = s;
    }
  }
  return out;
}

/** n draws [n, 2] from a 2-D Gaussian mixture (default `defaultMixture2d()`, seed 0) as float32. */
export function gaussianMixture2d(n: number, opts: { seed?: number; spec?: MixtureSpec } = {}): tf.Tensor2D {
  const spec = opts.spec ?? defaultMixture2d();
  const d = validateMixtureSpec(spec);
  if (d !== 2) throw new Error(`spec must be 2-dimensional for gaussianMixture2d, got D = ${d} (use sampleMixture for other D)`);
  return toTensor(sampleMixture(spec, n, opts.seed ?? 0), n);
}

function toyArgs(n: number, opts: ToyDataOptions, defaultNoise: number): { rng: Rng; noise: number } {
  checkInteger('n', n, 1);
  const seed = opts.seed ?? 0;
  checkNumber('seed', seed, -Infinity, Infinity);
  const noise = opts.noise ?? defaultNoise;
  checkNumber('noise', noise, 0, Infinity);
  return { rng: new Rng(seed), noise };
}

function toTensor(values: Float64Array, n: number): tf.Tensor2D {
  return tf.tensor2d(Float32Array.from(values), [n, 2]);
}
