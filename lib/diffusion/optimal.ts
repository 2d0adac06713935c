/**
 * The exact optimal noise predictors, docs/equations.md#optimal-eps (ground truth): for data
 * x0 ~ N(m, S), x_t ~ N(sqrt(abar_t) m, abar_t S + (1 - abar_t) I) and
 * eps*(x_t, t) = sqrt(1 - abar_t) (abar_t S + (1 - abar_t) I)^{-1} (x_t - sqrt(abar_t) m);
 * for a mixture, the posterior-weighted mixture of the components' eps*. They are usable wherever a
 * model is. A mixture is also a conditional denoiser, each component a class, with the exact
 * eps*(x_t, t | c) and class posterior q_t(c | x_t) of docs/equations.md#guidance.
 * Notebooks: 02_elbo, 05_training_2d, 06_generation, 08_guidance.
 */
import * as tf from '@tensorflow/tfjs';
import type { Denoiser } from './denoiser';
import { ClassLabel, ConditionalDenoiser, checkClassLabel } from './guidance';
import { validateMixtureSpec } from '../data/toy';
import { invertSpd, logDetSpd } from './linalg';
import { Schedule, Timestep, checkTimestep } from './schedule';

/** The marginal covariance of x_t for data covariance S: abar_t S + (1 - abar_t) I (float64). */
function marginalCov(s: Schedule, cov: number[][], t: number): number[][] {
  const abar = s.alphaBars[t];
  return cov.map((row, i) => row.map((v, j) => abar * v + (i === j ? s.oneMinusAlphaBars[t] : 0)));
}

function checkInput(s: Schedule, D: number, xt: tf.Tensor, t: Timestep): void {
  if (xt.rank !== 2 || xt.shape[1] !== D) throw new Error(`xt must have shape [batch, ${D}], got [${xt.shape}]`);
  checkTimestep(s, t, xt.shape[0]);
}

/** One Gaussian's per-timestep tables, float64 computed, stored float32: [T + 1, D, D] and [T + 1, D]. */
class GaussianTables {
  /** sqrt(1 - abar_t) P_t with P_t = (abar_t S + (1 - abar_t) I)^{-1}. */
  readonly epsMatrix: Float32Array;
  /** P_t itself (for the mixture's responsibilities). */
  readonly precision: Float32Array;
  /** sqrt(abar_t) m, the mean of x_t. */
  readonly meanT: Float32Array;
  /** log det(abar_t S + (1 - abar_t) I). */
  readonly logDet: Float32Array;

  constructor(s: Schedule, mean: number[], cov: number[][], label: string) {
    const D = mean.length;
    this.epsMatrix = new Float32Array((s.T + 1) * D * D);
    this.precision = new Float32Array((s.T + 1) * D * D);
    this.meanT = new Float32Array((s.T + 1) * D);
    this.logDet = new Float32Array(s.T + 1);
    for (let t = 1; t <= s.T; t++) {
      const sigma = marginalCov(s, cov, t);
      let P: number[][];
      try {
        P = invertSpd(sigma);
        this.logDet[t] = logDetSpd(sigma);
      } catch (e) {
        throw new Error(`${label}cov: the covariance of x_${t} is not invertible (${(e as Error).message})`);
      }
      for (let i = 0; i < D; i++) {
        this.meanT[t * D + i] = s.sqrtAlphaBars[t] * mean[i];
        for (let j = 0; j < D; j++) {
          this.precision[(t * D + i) * D + j] = P[i][j];
          this.epsMatrix[(t * D + i) * D + j] = s.sqrtOneMinusAlphaBars[t] * P[i][j];
        }
      }
    }
  }

  /** Rows of a [T + 1, ...] table for t: [D, D] / [D] for a number t, [batch, D, D] / [batch, D] for a tensor t. */
  static gather(table: Float32Array, t: Timestep, inner: number[]): tf.Tensor {
    return tf.tidy(() => {
      const all = tf.tensor(table, [table.length / inner.reduce((a, b) => a * b, 1), ...inner]);
      return all.gather(t);
    });
  }
}

/** (x - mu) M for each row x, with M gathered per example ([batch, D, D]) or shared ([D, D]). */
function rowTimesMatrix(diff: tf.Tensor2D, M: tf.Tensor): tf.Tensor2D {
  if (M.rank === 2) return tf.matMul(diff, M as tf.Tensor2D);
  return tf.matMul(diff.expandDims(1) as tf.Tensor3D, M as tf.Tensor3D).squeeze([1]) as tf.Tensor2D;
}

/** eps* for Gaussian data N(mean, cov): the exact minimiser of the simple loss at every t. */
export class GaussianOptimalEps implements Denoiser {
  readonly D: number;
  private readonly tables: GaussianTables;

  constructor(readonly mean: number[], readonly cov: number[][], readonly schedule: Schedule) {
    this.D = validateMixtureSpec({ weights: [1], means: [mean], covs: [cov] });
    this.tables = new GaussianTables(schedule, mean, cov, '');
  }

  predictEps(xt: tf.Tensor, t: Timestep): tf.Tensor {
    checkInput(this.schedule, this.D, xt, t);
    const D = this.D;
    return tf.tidy(() => {
      const mu = GaussianTables.gather(this.tables.meanT, t, [D]);
      const M = GaussianTables.gather(this.tables.epsMatrix, t, [D, D]);
      // P is symmetric, so (x - mu) P equals (P (x - mu))^T row by row.
      return rowTimesMatrix((xt as tf.Tensor2D).sub(mu) as tf.Tensor2D, M);
    });
  }
}

/** The exact optimal noise predictor for data from N(mean, cov) under schedule s. */
export function gaussianOptimalEps(mean: number[], cov: number[][], s: Schedule): GaussianOptimalEps {
  return new GaussianOptimalEps(mean, cov, s);
}

/**
 * eps* for a Gaussian mixture sum_k w_k N(m_k, S_k): sum_k r_k(x_t) eps*_k(x_t, t), with the
 * responsibilities r_k proportional to w_k N(x_t; sqrt(abar_t) m_k, abar_t S_k + (1 - abar_t) I).
 * As a conditional denoiser (class k = component k, null class K), eps*(x_t, t | k) = eps*_k(x_t, t)
 * and r_k(x_t) = q_t(k | x_t), the exact class posterior.
 */
export class MixtureOptimalEps implements ConditionalDenoiser {
  readonly D: number;
  /** The number of components K, each one class. */
  readonly numClasses: number;
  /** K: the label of the unconditional (whole-mixture) prediction. */
  readonly nullClass: number;
  private readonly components: GaussianTables[];

  constructor(
    readonly weights: number[],
    readonly means: number[][],
    readonly covs: number[][][],
    readonly schedule: Schedule,
  ) {
    this.D = validateMixtureSpec({ weights, means, covs });
    this.components = means.map((m, k) => new GaussianTables(schedule, m, covs[k], `component ${k} `));
    this.numClasses = means.length;
    this.nullClass = means.length;
  }

  /** The components' log-weights plus log-densities of x_t (up to one shared constant) and their eps*, [batch] and [batch, D] each. */
  private parts(x: tf.Tensor2D, t: Timestep): { logits: tf.Tensor[]; epsK: tf.Tensor[] } {
    const D = this.D;
    const logits: tf.Tensor[] = [];
    const epsK: tf.Tensor[] = [];
    this.components.forEach((c, k) => {
      const diff = x.sub(GaussianTables.gather(c.meanT, t, [D])) as tf.Tensor2D;
      const Pd = rowTimesMatrix(diff, GaussianTables.gather(c.precision, t, [D, D]));
      const maha = diff.mul(Pd).sum(1);
      const logDet = GaussianTables.gather(c.logDet, t, []);
      logits.push(maha.add(logDet).mul(-0.5).add(Math.log(this.weights[k])));
      epsK.push(rowTimesMatrix(diff, GaussianTables.gather(c.epsMatrix, t, [D, D])));
    });
    return { logits, epsK };
  }

  /**
   * eps*(x_t, t) of the whole mixture; with a class c (a number or an int32 [batch] tensor) the
   * exact conditional eps*(x_t, t | c), which for c = k is component k's eps*; c = nullClass is the mixture's.
   */
  predictEps(xt: tf.Tensor, t: Timestep, c?: ClassLabel): tf.Tensor {
    checkInput(this.schedule, this.D, xt, t);
    if (c !== undefined) checkClassLabel(c, this.numClasses, this.nullClass, xt.shape[0]);
    const x = xt as tf.Tensor2D;
    if (typeof c === 'number' && c !== this.nullClass) {
      const comp = this.components[c];
      return tf.tidy(() => rowTimesMatrix(x.sub(GaussianTables.gather(comp.meanT, t, [this.D])) as tf.Tensor2D, GaussianTables.gather(comp.epsMatrix, t, [this.D, this.D])));
    }
    return tf.tidy(() => {
      const { logits, epsK } = this.parts(x, t);
      const r = tf.softmax(tf.stack(logits, 1), 1); // [batch, K]
      const mixture = tf.stack(epsK, 1).mul(r.expandDims(2)).sum(1); // [batch, D]
      if (c === undefined || typeof c === 'number') return mixture;
      // Per-example classes: the K components' eps* and the mixture's as K + 1 rows, one picked per example.
      const all = tf.concat([tf.stack(epsK, 1), mixture.expandDims(1)], 1); // [batch, K + 1, D]
      return all.mul(tf.oneHot(c, this.numClasses + 1).expandDims(2)).sum(1);
    });
  }

  /** The exact class posterior q_t(k | x_t) = w_k q_t(x_t | k) / q_t(x_t), shape [batch, K] (a softmax of float32 log-terms). */
  classPosterior(xt: tf.Tensor, t: Timestep): tf.Tensor2D {
    checkInput(this.schedule, this.D, xt, t);
    return tf.tidy(() => tf.softmax(tf.stack(this.parts(xt as tf.Tensor2D, t).logits, 1), 1) as tf.Tensor2D);
  }
}

/** The exact optimal noise predictor for data from a Gaussian mixture under schedule s. */
export function mixtureOptimalEps(weights: number[], means: number[][], covs: number[][][], s: Schedule): MixtureOptimalEps {
  return new MixtureOptimalEps(weights, means, covs, s);
}
