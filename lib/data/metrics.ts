/**
 * Sample-quality metrics between two point sets in any dimension D, computed in float64 JS: the
 * energy distance, the RBF-kernel MMD and the sample mean and covariance. They compare generated
 * x_0 with data (or with draws from the exact distribution) without assuming a density. Both
 * distances are O((n + m)^2 D), fine up to a few thousand points per set.
 * Notebooks: 05_training_2d, 06_generation.
 */
import * as tf from '@tensorflow/tfjs';
import { canReadSync } from '../diffusion/validate';
import { checkInteger, checkNumber } from '../diffusion/validate';

/** A set of n points in D dimensions: a [n, D] tensor, rows of numbers, or row-major data with dim. */
export type PointSet = tf.Tensor2D | number[][] | { data: Float64Array | Float32Array; dim: number };

/** A point set read into float64, row-major [n, dim]. */
interface Points {
  data: Float64Array;
  n: number;
  dim: number;
}

/**
 * Energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| (Euclidean norms), as the V-statistic: every
 * mean runs over all pairs, self-pairs included. It is then the exact energy distance between the
 * two empirical distributions, so it is >= 0 and 0 for identical sets; its bias is
 * (1/n + 1/m) E|X - X'| when X and Y are equal in law.
 */
export function energyDistance(x: PointSet, y: PointSet): number {
  const [a, b] = readPair(x, y);
  const exy = meanPairwise(a, b, dist);
  const exx = meanPairwise(a, a, dist);
  const eyy = meanPairwise(b, b, dist);
  return Math.max(0, 2 * exy - exx - eyy); // >= 0 exactly; the max only absorbs rounding
}

/**
 * Squared MMD with the kernel exp(-|a - b|^2 / (2 h^2)), as the (biased, >= 0) V-statistic
 * mean k(X, X') + mean k(Y, Y') - 2 mean k(X, Y). Default h: the median heuristic, the median
 * Euclidean distance over distinct pairs of the pooled set.
 */
export function mmdRbf(x: PointSet, y: PointSet, bandwidth?: number): number {
  const [a, b] = readPair(x, y);
  const h = bandwidth ?? medianPooledDistance(a, b);
  checkNumber('bandwidth', h, 0, Infinity, { lo: true });
  const g = 1 / (2 * h * h);
  const k = (p: Float64Array, i: number, q: Float64Array, j: number, dim: number): number =>
    Math.exp(-g * dist2(p, i, q, j, dim));
  const kxx = meanPairwise(a, a, k);
  const kyy = meanPairwise(b, b, k);
  const kxy = meanPairwise(a, b, k);
  return Math.max(0, kxx + kyy - 2 * kxy);
}

/** Sample mean and unbiased (divide by n - 1) sample covariance of at least 2 points. */
export function meanAndCovariance(x: PointSet): { mean: number[]; cov: number[][] } {
  const { data, n, dim } = readPoints(x, 'x');
  const mean = new Array<number>(dim).fill(0);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) mean[j] += data[i * dim + j];
  for (let j = 0; j < dim; j++) mean[j] /= n;
  // Two passes (centre, then multiply) avoid the cancellation of E[x x^T] - mean mean^T.
  const cov: number[][] = Array.from({ length: dim }, () => new Array<number>(dim).fill(0));
  const c = new Float64Array(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) c[j] = data[i * dim + j] - mean[j];
    for (let r = 0; r < dim; r++) for (let s = 0; s <= r; s++) cov[r][s] += c[r] * c[s];
  }
  for (let r = 0; r < dim; r++) {
    for (let s = 0; s <= r; s++) {
      cov[r][s] /= n - 1;
      cov[s][r] = cov[r][s];
    }
  }
  return { mean, cov };
}

type PairFn = (p: Float64Array, i: number, q: Float64Array, j: number, dim: number) => number;

function dist2(p: Float64Array, i: number, q: Float64Array, j: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) {
    const d = p[i * dim + k] - q[j * dim + k];
    s += d * d;
  }
  return s;
}

function dist(p: Float64Array, i: number, q: Float64Array, j: number, dim: number): number {
  return Math.sqrt(dist2(p, i, q, j, dim));
}

/** Mean of f over all n * m ordered pairs, self-pairs included (the V-statistic). */
function meanPairwise(a: Points, b: Points, f: PairFn): number {
  let s = 0;
  for (let i = 0; i < a.n; i++) {
    let row = 0;
    for (let j = 0; j < b.n; j++) row += f(a.data, i, b.data, j, a.dim);
    s += row;
  }
  return s / (a.n * b.n);
}

function medianPooledDistance(a: Points, b: Points): number {
  const n = a.n + b.n;
  const pooled = new Float64Array(n * a.dim);
  pooled.set(a.data, 0);
  pooled.set(b.data, a.data.length);
  const d = new Float64Array((n * (n - 1)) / 2);
  let idx = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) d[idx++] = dist(pooled, i, pooled, j, a.dim);
  d.sort();
  const mid = d.length >> 1;
  const median = d.length % 2 === 1 ? d[mid] : 0.5 * (d[mid - 1] + d[mid]);
  if (!(median > 0)) {
    throw new Error(`mmdRbf: the median pairwise distance is ${median} (most points coincide); pass a bandwidth > 0`);
  }
  return median;
}

function readPair(x: PointSet, y: PointSet): [Points, Points] {
  const a = readPoints(x, 'x');
  const b = readPoints(y, 'y');
  if (a.dim !== b.dim) throw new Error(`x and y must have the same dimension, got ${a.dim} and ${b.dim}`);
  return [a, b];
}

/** Reads any PointSet into float64 and checks it: dim >= 1, n >= 2, all finite. */
function readPoints(x: PointSet, name: string): Points {
  let data: Float64Array;
  let dim: number;
  if (x instanceof tf.Tensor) {
    if (x.rank !== 2) throw new Error(`${name} must be a rank-2 tensor [n, D], got shape [${x.shape}]`);
    dim = x.shape[1];
    if (!canReadSync()) {
      throw new Error(`${name}: the ${tf.getBackend()} backend cannot read tensors synchronously here; pass { data: await ${name}.data(), dim: ${dim} }`);
    }
    data = Float64Array.from(x.dataSync());
  } else if (Array.isArray(x)) {
    if (x.length < 2) throw new Error(`${name} must hold at least 2 points, got ${x.length}`);
    dim = Array.isArray(x[0]) ? x[0].length : 0;
    data = new Float64Array(x.length * dim);
    x.forEach((row, i) => {
      if (!Array.isArray(row) || row.length !== dim) {
        throw new Error(`${name} must be rows of equal length ${dim}, but row ${i} has ${Array.isArray(row) ? row.length : String(row)}`);
      }
      data.set(row, i * dim);
    });
  } else if (x !== null && typeof x === 'object' && (x.data instanceof Float64Array || x.data instanceof Float32Array)) {
    checkInteger(`${name}.dim`, x.dim, 1);
    if (x.data.length % x.dim !== 0) {
      throw new Error(`${name}.data length must be a multiple of ${name}.dim = ${x.dim}, got ${x.data.length}`);
    }
    dim = x.dim;
    data = Float64Array.from(x.data);
  } else {
    throw new Error(`${name} must be a tf.Tensor2D, a number[][] or {data: Float64Array | Float32Array, dim}, got ${String(x)}`);
  }
  if (dim < 1) throw new Error(`${name} must have dimension >= 1, got ${dim}`);
  const n = data.length / dim;
  if (n < 2) throw new Error(`${name} must hold at least 2 points, got ${n}`);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new Error(`${name} must contain only finite numbers, got ${data[i]} at point ${Math.floor(i / dim)}, coordinate ${i % dim}`);
    }
  }
  return { data, n, dim };
}
