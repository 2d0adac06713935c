/**
 * Training losses, docs/equations.md#simple-loss: the text's simple loss
 * ||eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) - eps||^2 with t ~ U[1, T], and the
 * variational-bound and hybrid alternatives. Notebooks: 04_noise_prediction, 05_training_2d.
 */
import * as tf from '@tensorflow/tfjs';
import type { Denoiser } from './denoiser';
import { ElboOptions, elboTermAt } from './elbo';
import { checkBatch, checkPair, qSampleUnchecked } from './forward';
import { Rng, deriveSeed } from './random';
import { ReverseVariance, checkReverseVariance } from './reverse';
import { Schedule, Timestep } from './schedule';
import { checkNumber, sumTensors } from './validate';

/** Which objective training minimises. */
export type LossType = 'simple' | 'vlb' | 'hybrid';

export const LOSS_TYPES: readonly LossType[] = ['simple', 'vlb', 'hybrid'];

/** The draws behind one loss evaluation: t ~ U[1, T] per example and eps ~ N(0, I). */
export interface LossDraws {
  /** Per-example timesteps (int32 [batch]) or one t for the batch; default: drawn from U[1, T] with seed. */
  t?: Timestep;
  /** The noise; default: drawn from N(0, I) with seed. */
  eps?: tf.Tensor;
  /** Seed of the draws that are not given; default 0. */
  seed?: number;
}

/** Per-example timesteps drawn uniformly from [1, T] with a seeded stream, as JS integers. */
export function drawTimesteps(T: number, batch: number, rng: Rng): Int32Array {
  const t = new Int32Array(batch);
  for (let i = 0; i < batch; i++) t[i] = rng.int(1, T);
  return t;
}

/** Per-example timesteps drawn uniformly from [1, T] with a seeded stream, as an int32 tensor. */
export function sampleTimesteps(T: number, batch: number, rng: Rng): tf.Tensor1D {
  return tf.tensor1d(drawTimesteps(T, batch, rng), 'int32');
}

/** The draws of one loss evaluation, t kept as JS numbers too so the VLB never reads it back. */
function draws(s: Schedule, x0: tf.Tensor, d: LossDraws): { t: Timestep; tValues: number | Int32Array; eps: tf.Tensor } {
  const seed = d.seed ?? 0;
  let t: Timestep;
  let tValues: number | Int32Array;
  if (d.t === undefined) {
    tValues = drawTimesteps(s.T, x0.shape[0], new Rng(deriveSeed(seed, 0x7153)));
    t = tf.tensor1d(tValues, 'int32');
  } else {
    t = d.t;
    // A caller's tensor t is read once here (checkBatch has read it already on sync backends).
    tValues = typeof d.t === 'number' ? d.t : (d.t.dataSync() as Int32Array);
  }
  const eps = d.eps ?? tf.randomNormal(x0.shape, 0, 1, 'float32', deriveSeed(seed, 0xe95));
  return { t, tValues, eps };
}

function checkLossArgs(s: Schedule, x0: tf.Tensor, d: LossDraws): void {
  if (d.eps === undefined) checkBatch(s, 'x0', x0, d.t ?? 1);
  else checkPair(s, 'x0', x0, d.t ?? 1, 'eps', d.eps);
}

/** The simple loss without checks: mean over batch and dimensions of (eps_theta(x_t, t) - eps)^2. */
export function simpleLossUnchecked(model: Denoiser, s: Schedule, x0: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const xt = qSampleUnchecked(s, x0, t, eps);
    return tf.squaredDifference(model.predictEps(xt, t), eps).mean() as tf.Scalar;
  });
}

/**
 * The text's training loss: ||eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) - eps||^2 with
 * t ~ U[1, T] and eps ~ N(0, I), averaged over the batch and divided by the dimension D (the
 * "mean_flat" of Ho et al.'s code; multiply by D for the text's squared norm). Differentiable.
 */
export function simpleLoss(model: Denoiser, s: Schedule, x0: tf.Tensor, opts: LossDraws = {}): tf.Scalar {
  checkLossArgs(s, x0, opts);
  return tf.tidy(() => {
    const { t, eps } = draws(s, x0, opts);
    return simpleLossUnchecked(model, s, x0, t, eps);
  });
}

/**
 * vlbLoss without checks, t given as one number or as the per-example values in JS (so nothing is
 * read back from the device). The batch is grouped by t, one model call per distinct t.
 */
export function vlbLossUnchecked(
  model: Denoiser,
  s: Schedule,
  x0: tf.Tensor,
  t: number | Int32Array,
  eps: tf.Tensor,
  opts: ElboOptions = {},
): tf.Scalar {
  return tf.tidy(() => {
    const D = x0.size / x0.shape[0];
    if (typeof t === 'number') {
      return elboTermAt(model, s, x0, qSampleUnchecked(s, x0, t, eps), t, opts).mean().mul(s.T / D) as tf.Scalar;
    }
    const groups = new Map<number, number[]>();
    t.forEach((tv, i) => {
      const group = groups.get(tv);
      if (group) group.push(i);
      else groups.set(tv, [i]);
    });
    const parts: tf.Tensor[] = [];
    for (const [tv, idx] of groups) {
      const index = tf.tensor1d(idx, 'int32');
      const x0g = tf.gather(x0, index);
      const xt = qSampleUnchecked(s, x0g, tv, tf.gather(eps, index));
      parts.push(elboTermAt(model, s, x0g, xt, tv, opts).sum());
    }
    return sumTensors(parts).div(x0.shape[0]).mul(s.T / D) as tf.Scalar;
  });
}

/**
 * The variational bound as a loss: T · L_{t-1} / D averaged over the batch, t ~ U[1, T], so that its
 * expectation times D is sum_t L_{t-1} = -ELBO - L_T (nats). L_0 (t = 1) uses opts.decoder.
 * Differentiable. A tensor t is read back once (not possible on webgpu under Node: pass numbers there).
 */
export function vlbLoss(model: Denoiser, s: Schedule, x0: tf.Tensor, opts: LossDraws & ElboOptions = {}): tf.Scalar {
  checkLossArgs(s, x0, opts);
  return tf.tidy(() => {
    const { tValues, eps } = draws(s, x0, opts);
    return vlbLossUnchecked(model, s, x0, tValues, eps, opts);
  });
}

/** hybridLoss without checks: simple + lambda · vlb with the same t (tensor and JS values) and eps. */
export function hybridLossUnchecked(
  model: Denoiser,
  s: Schedule,
  x0: tf.Tensor,
  t: Timestep,
  tValues: number | Int32Array,
  eps: tf.Tensor,
  lambda = 0.001,
  opts: ElboOptions = {},
): tf.Scalar {
  return tf.tidy(() => simpleLossUnchecked(model, s, x0, t, eps).add(vlbLossUnchecked(model, s, x0, tValues, eps, opts).mul(lambda)) as tf.Scalar);
}

/** Improved DDPM's hybrid objective: simpleLoss + lambda · vlbLoss with the same draws (lambda = 0.001). */
export function hybridLoss(
  model: Denoiser,
  s: Schedule,
  x0: tf.Tensor,
  opts: LossDraws & ElboOptions & { lambda?: number } = {},
): tf.Scalar {
  const lambda = opts.lambda ?? 0.001;
  checkNumber('lambda', lambda, 0, Infinity, { hi: true });
  checkLossArgs(s, x0, opts);
  return tf.tidy(() => {
    const { t, tValues, eps } = draws(s, x0, opts);
    return hybridLossUnchecked(model, s, x0, t, tValues, eps, lambda, opts);
  });
}

/**
 * The weight w_t with KL(q(x_{t-1}|x_t,x_0) || p_theta(x_{t-1}|x_t)) = w_t ||eps - eps_theta(x_t, t)||^2
 * when both have variance s^2 = sigma_t^2: w_t = (1 - alpha_t)^2 / (2 s^2 alpha_t (1 - abar_t)).
 * For 'sigmaQ' at t = 1 (variance 0) it uses the clipped variance, as elboTerms does.
 */
export function klNoiseWeight(s: Schedule, t: number, variance: ReverseVariance = 'sigmaQ'): number {
  s.checkT(t);
  checkReverseVariance(variance);
  const s2 = variance === 'sigmaQ' ? Math.exp(s.sigmaQ2LogClipped[t]) : variance === 'beta' ? s.betas[t] : 1;
  return s.betas[t] ** 2 / (2 * s2 * s.alphas[t] * s.oneMinusAlphaBars[t]);
}
