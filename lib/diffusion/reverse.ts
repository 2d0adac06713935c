/**
 * The reverse (denoising) model p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I),
 * docs/equations.md#reverse-model and docs/equations.md#mu-theta. Notebooks: 04_noise_prediction,
 * 06_generation.
 */
import * as tf from '@tensorflow/tfjs';
import type { Denoiser } from './denoiser';
import { checkBatch } from './forward';
import {
  Gaussian,
  posteriorMeanFromEpsUnchecked,
  predictX0FromEpsUnchecked,
  qPosteriorMeanUnchecked,
} from './posterior';
import { Schedule, Timestep, extract } from './schedule';

/**
 * The choice of sigma_t^2 in p_theta(x_{t-1} | x_t):
 * - 'sigmaQ': sigma_q(t)^2, the posterior variance (the text's generation algorithm; 0 at t = 1,
 *   where likelihoods use the clipped log-variance of Schedule.sigmaQ2LogClipped);
 * - 'beta': beta_t (Ho et al.'s other choice, the upper bound on the true reverse variance);
 * - 'one': 1, the text's first simplification p_theta = N(x_hat_{t-1}, I).
 */
export type ReverseVariance = 'sigmaQ' | 'beta' | 'one';

export const REVERSE_VARIANCES: readonly ReverseVariance[] = ['sigmaQ', 'beta', 'one'];

/** Throws unless v is one of the reverse-variance choices. */
export function checkReverseVariance(v: unknown): asserts v is ReverseVariance {
  if (!REVERSE_VARIANCES.includes(v as ReverseVariance)) {
    throw new Error(`variance must be one of ${REVERSE_VARIANCES.join(', ')}, got ${String(v)}`);
  }
}

/** p_theta(x_{t-1} | x_t) with what it was computed from. */
export interface ReverseStep extends Gaussian {
  /** eps_theta(x_t, t). */
  eps: tf.Tensor;
  /** The data implied by eps_theta (clipped to [-1, 1] when clipX0). */
  x0: tf.Tensor;
}

/** Reverse-process options shared by the samplers and the ELBO. */
export interface ReverseOptions {
  /** sigma_t^2; default 'sigmaQ'. */
  variance?: ReverseVariance;
  /** Clip the implied x0 to [-1, 1] before forming the mean (for image data); default false. */
  clipX0?: boolean;
}

/** Variance and log-variance of p_theta(x_{t-1} | x_t), broadcasting against a batch of `rank`. */
export function reverseVariance(s: Schedule, t: Timestep, rank: number, variance: ReverseVariance): { variance: tf.Tensor; logVariance: tf.Tensor } {
  return tf.tidy(() => {
    switch (variance) {
      case 'sigmaQ':
        return { variance: extract(s.sigmaQ2, t, rank), logVariance: extract(s.sigmaQ2LogClipped, t, rank) };
      case 'beta':
        return { variance: extract(s.betas, t, rank), logVariance: extract(s.logBetas, t, rank) };
      case 'one':
        return { variance: tf.scalar(1), logVariance: tf.scalar(0) };
    }
  });
}

/** p_theta(x_{t-1} | x_t) from a given eps_theta(x_t, t), without checks (the step functions' core). */
export function pMeanVarianceFromEpsUnchecked(
  s: Schedule,
  xt: tf.Tensor,
  t: Timestep,
  eps: tf.Tensor,
  opts: ReverseOptions = {},
): ReverseStep {
  return tf.tidy(() => {
    let x0 = predictX0FromEpsUnchecked(s, xt, t, eps);
    let mean: tf.Tensor;
    if (opts.clipX0) {
      x0 = tf.clipByValue(x0, -1, 1);
      mean = qPosteriorMeanUnchecked(s, x0, xt, t);
    } else {
      mean = posteriorMeanFromEpsUnchecked(s, xt, t, eps);
    }
    // eps is the caller's: a clone keeps the returned step disposable as a whole
    return { eps: eps.clone(), x0, mean, ...reverseVariance(s, t, xt.rank, opts.variance ?? 'sigmaQ') };
  });
}

/** pMeanVariance without checks (the samplers' and the ELBO's inner step): one model call. */
export function pMeanVarianceUnchecked(
  model: Denoiser,
  s: Schedule,
  xt: tf.Tensor,
  t: Timestep,
  opts: ReverseOptions = {},
): ReverseStep {
  return tf.tidy(() => ({ ...pMeanVarianceFromEpsUnchecked(s, xt, t, model.predictEps(xt, t), opts) }));
}

/**
 * p_theta(x_{t-1} | x_t): mean mu_theta = (1/sqrt(alpha_t))(x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps_theta(x_t, t))
 * (or mu_q(x_t, clip(x0_hat)) when clipX0), and the variance chosen by opts.variance.
 */
export function pMeanVariance(
  model: Denoiser,
  s: Schedule,
  xt: tf.Tensor,
  t: Timestep,
  opts: ReverseOptions = {},
): ReverseStep {
  checkBatch(s, 'xt', xt, t);
  if (opts.variance !== undefined) checkReverseVariance(opts.variance);
  return pMeanVarianceUnchecked(model, s, xt, t, opts);
}
