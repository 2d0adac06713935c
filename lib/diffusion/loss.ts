/**
 * Training losses, docs/equations.md#simple-loss: the text's simple loss
 * ||eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) - eps||^2 with t ~ U[1, T], and the
 * variational-bound and hybrid alternatives. Notebooks: 04_noise_prediction, 05_training_2d.
 */
import * as tf from '@tensorflow/tfjs';
import type { Denoiser } from './denoiser';
import type { ElboOptions } from './elbo';
import { checkBatch, checkPair, qSampleUnchecked } from './forward';
import { checkUnitRange, discretizedGaussianLogLikelihoodUnchecked, normalKLUnchecked, normalLogPdfUnchecked } from './gaussian';
import { qPosteriorMeanUnchecked } from './posterior';
import { Rng, deriveSeed } from './random';
import { ReverseVariance, checkReverseVariance, pMeanVarianceFromEpsUnchecked } from './reverse';
import { Schedule, Timestep, extract } from './schedule';
import { checkNumber } from './validate';

/** Which objective training minimises ('minsnr': the simple loss with Min-SNR-5 weights, minSnrWeight). */
export type LossType = 'simple' | 'vlb' | 'hybrid' | 'minsnr';

export const LOSS_TYPES: readonly LossType[] = ['simple', 'vlb', 'hybrid', 'minsnr'];

/** The gamma of the 'minsnr' loss: Hang et al. (2023) recommend 5. */
export const MIN_SNR_GAMMA = 5;

/**
 * The Min-SNR-gamma weight of timestep t for eps prediction (Hang et al. 2023,
 * docs/equations.md#simple-loss): min(SNR_t, gamma) / SNR_t with SNR_t = abar_t / (1 - abar_t).
 * It is 1 wherever SNR_t <= gamma and lowers the nearly clean timesteps, whose eps targets are hard
 * to predict and pull the gradients their own way.
 */
export function minSnrWeight(s: Schedule, t: number, gamma: number = MIN_SNR_GAMMA): number {
  checkNumber('gamma', gamma, 0, Infinity, { lo: true, hi: true });
  if (!Number.isInteger(t) || t < 1 || t > s.T) throw new Error(`t must be an integer in [1, ${s.T}], got ${t}`);
  const snr = s.alphaBars[t] / (1 - s.alphaBars[t]);
  return Math.min(snr, gamma) / snr;
}

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

/** The draws of one loss evaluation: t (the caller's, or drawn as an int32 tensor) and eps. */
function draws(s: Schedule, x0: tf.Tensor, d: LossDraws): { t: Timestep; eps: tf.Tensor } {
  const seed = d.seed ?? 0;
  const t = d.t ?? tf.tensor1d(drawTimesteps(s.T, x0.shape[0], new Rng(deriveSeed(seed, 0x7153))), 'int32');
  const eps = d.eps ?? tf.randomNormal(x0.shape, 0, 1, 'float32', deriveSeed(seed, 0xe95));
  return { t, eps };
}

function checkLossArgs(s: Schedule, x0: tf.Tensor, d: LossDraws): void {
  if (d.eps === undefined) checkBatch(s, 'x0', x0, d.t ?? 1);
  else checkPair(s, 'x0', x0, d.t ?? 1, 'eps', d.eps);
}

/** The VLB losses' own options: the reverse variance and the decoder (8-bit data must lie in [-1, 1]). */
function checkVlbArgs(x0: tf.Tensor, opts: ElboOptions): void {
  if (opts.variance !== undefined) checkReverseVariance(opts.variance);
  if (opts.decoder !== undefined && opts.decoder !== 'discretized' && opts.decoder !== 'gaussian') {
    throw new Error(`decoder must be 'discretized' or 'gaussian', got ${String(opts.decoder)}`);
  }
  if (opts.decoder === 'discretized') checkUnitRange('x0', x0);
}

/**
 * Every example's VLB term from one eps_theta(x_t, t), as a [batch] tensor in nats: the decoder
 * -log p_theta(x_0 | x_1) where t = 1, KL(q(x_{t-1}|x_t,x_0) || p_theta(x_{t-1}|x_t)) where t >= 2.
 * For a tensor t both are computed for every example and tf.where picks (improved-diffusion's
 * _vb_terms_bpd), so the batch needs one model call whatever its timesteps. No checks.
 */
export function vlbTermsFromEps(
  s: Schedule,
  x0: tf.Tensor,
  xt: tf.Tensor,
  t: Timestep,
  epsTheta: tf.Tensor,
  opts: ElboOptions = {},
): tf.Tensor1D {
  return tf.tidy(() => {
    const axes = x0.shape.slice(1).map((_, i) => i + 1);
    const p = pMeanVarianceFromEpsUnchecked(s, xt, t, epsTheta, opts);
    const decoderNll = (): tf.Tensor =>
      ((opts.decoder ?? 'gaussian') === 'discretized'
        ? discretizedGaussianLogLikelihoodUnchecked(x0, p.mean, p.logVariance.mul(0.5))
        : normalLogPdfUnchecked(x0, p.mean, p.logVariance)
      ).sum(axes).neg();
    const kl = (): tf.Tensor =>
      normalKLUnchecked(qPosteriorMeanUnchecked(s, x0, xt, t), extract(s.sigmaQ2LogClipped, t, x0.rank), p.mean, p.logVariance).sum(axes);
    if (typeof t === 'number') return (t === 1 ? decoderNll() : kl()) as tf.Tensor1D;
    return tf.where(t.equal(1), decoderNll(), kl()) as tf.Tensor1D;
  });
}

/** Each example's mean over dimensions of (eps_theta(x_t, t) - eps)^2, x_t drawn from x0 with eps: shape [batch]. */
function perExampleSquaredError(model: Denoiser, s: Schedule, x0: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor1D {
  const xt = qSampleUnchecked(s, x0, t, eps);
  const axes = x0.shape.slice(1).map((_, i) => i + 1);
  return tf.squaredDifference(model.predictEps(xt, t), eps).mean(axes) as tf.Tensor1D;
}

/** The simple loss without checks: mean over batch and dimensions of (eps_theta(x_t, t) - eps)^2. */
export function simpleLossUnchecked(model: Denoiser, s: Schedule, x0: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Scalar {
  // Every example has the same number of dimensions, so the mean of the per-example means is the mean.
  return tf.tidy(() => perExampleSquaredError(model, s, x0, t, eps).mean() as tf.Scalar);
}

/**
 * The Min-SNR-weighted simple loss without checks: the batch mean of minSnrWeight(t_i) times example
 * i's mean over dimensions of (eps_theta(x_t, t) - eps)^2. Equal to the simple loss wherever SNR_t <= gamma.
 */
export function minSnrLossUnchecked(model: Denoiser, s: Schedule, x0: tf.Tensor, tValues: Int32Array, eps: tf.Tensor, gamma: number = MIN_SNR_GAMMA): tf.Scalar {
  return tf.tidy(() => {
    const perExample = perExampleSquaredError(model, s, x0, tf.tensor1d(tValues, 'int32'), eps);
    const w = tf.tensor1d(Float32Array.from(tValues, (ti) => minSnrWeight(s, ti, gamma)));
    return perExample.mul(w).mean() as tf.Scalar;
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

/** Per-example timesteps given as JS values become the int32 tensor the model and the tables take. */
function timestepTensor(t: Timestep | Int32Array): Timestep {
  return t instanceof Int32Array ? tf.tensor1d(t, 'int32') : t;
}

/** vlbLoss without checks: T/D times the batch mean of vlbTermsFromEps, one model call. */
export function vlbLossUnchecked(
  model: Denoiser,
  s: Schedule,
  x0: tf.Tensor,
  t: Timestep | Int32Array,
  eps: tf.Tensor,
  opts: ElboOptions = {},
): tf.Scalar {
  return tf.tidy(() => {
    const D = x0.size / x0.shape[0];
    const tt = timestepTensor(t);
    const xt = qSampleUnchecked(s, x0, tt, eps);
    return vlbTermsFromEps(s, x0, xt, tt, model.predictEps(xt, tt), opts).mean().mul(s.T / D) as tf.Scalar;
  });
}

/**
 * The variational bound as a loss: T · L_{t-1} / D averaged over the batch, t ~ U[1, T], so that its
 * expectation times D is sum_t L_{t-1} = -ELBO - L_T (nats). L_0 (t = 1) uses opts.decoder.
 * Differentiable; one model call per evaluation whatever the batch's timesteps, nothing read back.
 */
export function vlbLoss(model: Denoiser, s: Schedule, x0: tf.Tensor, opts: LossDraws & ElboOptions = {}): tf.Scalar {
  checkLossArgs(s, x0, opts);
  checkVlbArgs(x0, opts);
  return tf.tidy(() => {
    const { t, eps } = draws(s, x0, opts);
    return vlbLossUnchecked(model, s, x0, t, eps, opts);
  });
}

/**
 * hybridLoss without checks: simple + lambda · vlb with the same t and eps, both from ONE model
 * call. tValues is ignored (the VLB now takes the tensor t); it stays so that callers keep compiling.
 */
export function hybridLossUnchecked(
  model: Denoiser,
  s: Schedule,
  x0: tf.Tensor,
  t: Timestep,
  _tValues: unknown,
  eps: tf.Tensor,
  lambda = 0.001,
  opts: ElboOptions = {},
): tf.Scalar {
  return tf.tidy(() => {
    const D = x0.size / x0.shape[0];
    const xt = qSampleUnchecked(s, x0, t, eps);
    const epsTheta = model.predictEps(xt, t);
    const simple = tf.squaredDifference(epsTheta, eps).mean();
    const vlb = vlbTermsFromEps(s, x0, xt, t, epsTheta, opts).mean().mul(s.T / D);
    return simple.add(vlb.mul(lambda)) as tf.Scalar;
  });
}

/** Improved DDPM's hybrid objective: simpleLoss + lambda · vlbLoss with the same draws (lambda = 0.001), one model call. */
export function hybridLoss(
  model: Denoiser,
  s: Schedule,
  x0: tf.Tensor,
  opts: LossDraws & ElboOptions & { lambda?: number } = {},
): tf.Scalar {
  const lambda = opts.lambda ?? 0.001;
  checkNumber('lambda', lambda, 0, Infinity, { hi: true });
  checkLossArgs(s, x0, opts);
  checkVlbArgs(x0, opts);
  return tf.tidy(() => {
    const { t, eps } = draws(s, x0, opts);
    return hybridLossUnchecked(model, s, x0, t, undefined, eps, lambda, opts);
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
