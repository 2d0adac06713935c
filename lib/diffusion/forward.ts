/**
 * The forward (diffusion) process, docs/equations.md#forward-process.
 * Notebook: 01_forward_diffusion.
 */
import * as tf from '@tensorflow/tfjs';
import { Schedule, Timestep, checkTimestep, extract } from './schedule';
import { checkFiniteTensor, checkRank, checkSameShape } from './validate';

/** Validates the (x, t, eps) triple every forward/posterior function takes. */
export function checkBatch(s: Schedule, name: string, x: tf.Tensor, t: Timestep, lo = 1): void {
  checkRank(name, x, 1);
  checkFiniteTensor(name, x);
  checkTimestep(s, t, x.shape[0], lo);
}

/** checkBatch for `a`, plus a second tensor `b` of the same shape with finite values. */
export function checkPair(s: Schedule, nameA: string, a: tf.Tensor, t: Timestep, nameB: string, b: tf.Tensor): void {
  checkBatch(s, nameA, a, t);
  checkSameShape(nameA, a, nameB, b);
  checkFiniteTensor(nameB, b);
}

/** x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps, without checks (the loops' inner step). */
export function qStepUnchecked(s: Schedule, xPrev: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const sqrtAlpha = extract(s.sqrtAlphas, t, xPrev.rank);
    const sqrtBeta = extract(s.sqrtBetas, t, xPrev.rank);
    return sqrtAlpha.mul(xPrev).add(sqrtBeta.mul(eps));
  });
}

/**
 * One step of q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I), reparameterised:
 * x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps.
 */
export function qStep(s: Schedule, xPrev: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor {
  checkPair(s, 'xPrev', xPrev, t, 'eps', eps);
  return qStepUnchecked(s, xPrev, t, eps);
}

/** The closed form x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, without checks. */
export function qSampleUnchecked(s: Schedule, x0: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    extract(s.sqrtAlphaBars, t, x0.rank).mul(x0).add(extract(s.sqrtOneMinusAlphaBars, t, x0.rank).mul(eps)),
  );
}

/**
 * A draw from the closed form q(x_t | x_0) = N(sqrt(abar_t) x0, (1 - abar_t) I):
 * x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
 */
export function qSample(s: Schedule, x0: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor {
  checkPair(s, 'x0', x0, t, 'eps', eps);
  return qSampleUnchecked(s, x0, t, eps);
}

/**
 * Mean, variance and log-variance of q(x_t | x_0): sqrt(abar_t) x0, (1 - abar_t), log(1 - abar_t).
 * The variance tensors broadcast against x0 (shape [] or [batch, 1, ...]).
 */
export function qMeanVariance(
  s: Schedule,
  x0: tf.Tensor,
  t: Timestep,
): { mean: tf.Tensor; variance: tf.Tensor; logVariance: tf.Tensor } {
  checkBatch(s, 'x0', x0, t);
  return tf.tidy(() => ({
    mean: extract(s.sqrtAlphaBars, t, x0.rank).mul(x0),
    variance: extract(s.oneMinusAlphaBars, t, x0.rank),
    logVariance: extract(s.logOneMinusAlphaBars, t, x0.rank),
  }));
}
