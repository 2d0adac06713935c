/**
 * The posterior of the forward process q(x_{t-1} | x_t, x_0) and the conversions between the
 * eps, x0 and v parameterisations, docs/equations.md#posterior and
 * docs/equations.md#posterior-eps. Notebooks: 03_posterior, 04_noise_prediction.
 */
import * as tf from '@tensorflow/tfjs';
import { checkPair } from './forward';
import { Schedule, Timestep, extract } from './schedule';

/** A diagonal Gaussian: mean, and variance / log-variance that broadcast against it. */
export interface Gaussian {
  mean: tf.Tensor;
  variance: tf.Tensor;
  logVariance: tf.Tensor;
}

/** mu_q(x_t, x_0) = coefX0_t x0 + coefXt_t x_t, without checks. */
export function qPosteriorMeanUnchecked(s: Schedule, x0: tf.Tensor, xt: tf.Tensor, t: Timestep): tf.Tensor {
  return tf.tidy(() =>
    extract(s.posteriorMeanCoefX0, t, xt.rank).mul(x0).add(extract(s.posteriorMeanCoefXt, t, xt.rank).mul(xt)),
  );
}

/**
 * q(x_{t-1} | x_t, x_0) = N(mu_q, sigma_q(t)^2 I) with
 * mu_q = [sqrt(abar_{t-1}) beta_t / (1 - abar_t)] x0 + [sqrt(alpha_t)(1 - abar_{t-1}) / (1 - abar_t)] x_t
 * and sigma_q(t)^2 = (1 - alpha_t)(1 - abar_{t-1}) / (1 - abar_t). At t = 1 the variance is 0 and
 * logVariance is the clipped value of Schedule.sigmaQ2LogClipped (log 0 is no use to a KL).
 */
export function qPosterior(s: Schedule, x0: tf.Tensor, xt: tf.Tensor, t: Timestep): Gaussian {
  checkPair(s, 'x0', x0, t, 'xt', xt);
  return tf.tidy(() => ({
    mean: qPosteriorMeanUnchecked(s, x0, xt, t),
    variance: extract(s.sigmaQ2, t, xt.rank),
    logVariance: extract(s.sigmaQ2LogClipped, t, xt.rank),
  }));
}

/** x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), without checks. */
export function predictX0FromEpsUnchecked(s: Schedule, xt: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    extract(s.recipSqrtAlphaBars, t, xt.rank).mul(xt).sub(extract(s.sqrtRecipAlphaBarsMinusOne, t, xt.rank).mul(eps)),
  );
}

/** The data implied by a noise estimate: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t). */
export function predictX0FromEps(s: Schedule, xt: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor {
  checkPair(s, 'xt', xt, t, 'eps', eps);
  return predictX0FromEpsUnchecked(s, xt, t, eps);
}

/** eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t), without checks. */
export function predictEpsFromX0Unchecked(s: Schedule, xt: tf.Tensor, t: Timestep, x0: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    xt.sub(extract(s.sqrtAlphaBars, t, xt.rank).mul(x0)).div(extract(s.sqrtOneMinusAlphaBars, t, xt.rank)),
  );
}

/** The noise implied by a data estimate: eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t). */
export function predictEpsFromX0(s: Schedule, xt: tf.Tensor, t: Timestep, x0: tf.Tensor): tf.Tensor {
  checkPair(s, 'xt', xt, t, 'x0', x0);
  return predictEpsFromX0Unchecked(s, xt, t, x0);
}

/** mu_theta = (1 / sqrt(alpha_t)) (x_t - (1 - alpha_t) / sqrt(1 - abar_t) eps), without checks. */
export function posteriorMeanFromEpsUnchecked(s: Schedule, xt: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    extract(s.recipSqrtAlphas, t, xt.rank).mul(xt.sub(extract(s.epsCoef, t, xt.rank).mul(eps))),
  );
}

/**
 * The text's mu_theta form: mu = (1 / sqrt(alpha_t)) (x_t - (1 - alpha_t) / sqrt(1 - abar_t) eps).
 * With the true eps it equals mu_q(x_t, x_0) (docs/equations.md#posterior-eps).
 */
export function posteriorMeanFromEps(s: Schedule, xt: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor {
  checkPair(s, 'xt', xt, t, 'eps', eps);
  return posteriorMeanFromEpsUnchecked(s, xt, t, eps);
}

/** The velocity target of Salimans & Ho 2022: v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0. */
export function predictV(s: Schedule, x0: tf.Tensor, t: Timestep, eps: tf.Tensor): tf.Tensor {
  checkPair(s, 'x0', x0, t, 'eps', eps);
  return tf.tidy(() =>
    extract(s.sqrtAlphaBars, t, x0.rank).mul(eps).sub(extract(s.sqrtOneMinusAlphaBars, t, x0.rank).mul(x0)),
  );
}

/** x0 from a velocity: x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v. */
export function predictX0FromV(s: Schedule, xt: tf.Tensor, t: Timestep, v: tf.Tensor): tf.Tensor {
  checkPair(s, 'xt', xt, t, 'v', v);
  return tf.tidy(() =>
    extract(s.sqrtAlphaBars, t, xt.rank).mul(xt).sub(extract(s.sqrtOneMinusAlphaBars, t, xt.rank).mul(v)),
  );
}

/** eps from a velocity: eps = sqrt(1 - abar_t) x_t + sqrt(abar_t) v. */
export function predictEpsFromV(s: Schedule, xt: tf.Tensor, t: Timestep, v: tf.Tensor): tf.Tensor {
  checkPair(s, 'xt', xt, t, 'v', v);
  return tf.tidy(() =>
    extract(s.sqrtOneMinusAlphaBars, t, xt.rank).mul(xt).add(extract(s.sqrtAlphaBars, t, xt.rank).mul(v)),
  );
}
