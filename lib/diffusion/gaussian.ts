/**
 * Gaussian log-densities and KL divergences, elementwise, docs/equations.md#elbo and
 * docs/equations.md#decoder (the discretised decoder). Notebooks: 02_elbo, 04_noise_prediction.
 */
import * as tf from '@tensorflow/tfjs';
import { canReadSync, checkFiniteTensor } from './validate';

const LOG_2PI = Math.log(2 * Math.PI);

/** Broadcast-compatible shapes, or an Error naming both. */
function checkBroadcast(names: string[], xs: tf.Tensor[]): void {
  let shape: number[] = [];
  for (let i = 0; i < xs.length; i++) {
    if (!(xs[i] instanceof tf.Tensor)) throw new Error(`${names[i]} must be a tensor, got ${String(xs[i])}`);
    try {
      shape = tf.broadcast_util.assertAndGetBroadcastShape(shape, xs[i].shape);
    } catch {
      throw new Error(`${names.join(', ')} must have broadcast-compatible shapes, got ${xs.map((x) => `[${x.shape}]`).join(', ')}`);
    }
  }
}

/** normalKL without checks (the ELBO's inner step, whose inputs the library made itself). */
export function normalKLUnchecked(mean1: tf.Tensor, logVar1: tf.Tensor, mean2: tf.Tensor, logVar2: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    tf
      .scalar(-1)
      .add(logVar2)
      .sub(logVar1)
      .add(tf.exp(logVar1.sub(logVar2)))
      .add(tf.squaredDifference(mean1, mean2).mul(tf.exp(tf.neg(logVar2))))
      .mul(0.5),
  );
}

/**
 * KL(N(mean1, exp(logVar1)) || N(mean2, exp(logVar2))) per element, in nats:
 * 0.5 (-1 + logVar2 - logVar1 + exp(logVar1 - logVar2) + (mean1 - mean2)^2 exp(-logVar2)).
 * Inputs must be finite (a log-variance of -Infinity, variance 0, has no finite KL).
 */
export function normalKL(mean1: tf.Tensor, logVar1: tf.Tensor, mean2: tf.Tensor, logVar2: tf.Tensor): tf.Tensor {
  const names = ['mean1', 'logVar1', 'mean2', 'logVar2'];
  const xs = [mean1, logVar1, mean2, logVar2];
  checkBroadcast(names, xs);
  xs.forEach((x, i) => checkFiniteTensor(names[i], x));
  return normalKLUnchecked(mean1, logVar1, mean2, logVar2);
}

/** normalLogPdf without checks. */
export function normalLogPdfUnchecked(x: tf.Tensor, mean: tf.Tensor, logVar: tf.Tensor): tf.Tensor {
  return tf.tidy(() =>
    tf.squaredDifference(x, mean).mul(tf.exp(tf.neg(logVar))).add(logVar).add(LOG_2PI).mul(-0.5),
  );
}

/** log N(x; mean, exp(logVar)) per element, in nats; inputs must be finite. */
export function normalLogPdf(x: tf.Tensor, mean: tf.Tensor, logVar: tf.Tensor): tf.Tensor {
  const names = ['x', 'mean', 'logVar'];
  checkBroadcast(names, [x, mean, logVar]);
  [x, mean, logVar].forEach((v, i) => checkFiniteTensor(names[i], v));
  return normalLogPdfUnchecked(x, mean, logVar);
}

/**
 * erfc(x) = t exp(-x^2 + P(t)), t = 1/(1 + x/2), x >= 0: the Chebyshev-fitted approximation of
 * Numerical Recipes (Press et al., "erfcc", section 6.2), fractional error < 1.2e-7 for every x >= 0.
 * Its log needs no exp, so it never underflows. Coefficients of P, constant term first.
 */
const ERFC_P = [-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277];

/** log Q(z) = log P(Z > z), Z ~ N(0, 1), for z >= 0: log(erfc(z / sqrt 2) / 2), finite for every finite z. */
function logNormalSf(z: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const x = z.mul(Math.SQRT1_2);
    const t = tf.scalar(1).div(x.mul(0.5).add(1));
    let p: tf.Tensor = tf.scalar(ERFC_P[ERFC_P.length - 1]);
    for (let k = ERFC_P.length - 2; k >= 0; k--) p = p.mul(t).add(ERFC_P[k]);
    return tf.neg(tf.log1p(x.mul(0.5))).sub(x.square()).add(p).sub(Math.LN2);
  });
}

/** log P(Z > w) for any finite w: log Q(w) for w >= 0, log(1 - Q(-w)) below (no cancellation either way). */
function logUpperTail(w: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const lq = logNormalSf(tf.abs(w));
    return tf.where(w.greaterEqual(0), lq, tf.log1p(tf.neg(tf.exp(lq))));
  });
}

/** Bins this narrow (h = half-width in sd) and this near the mean (h max(|z|, 1) <= 0.3) use the series. */
const SERIES_LIMIT = 0.3;

/**
 * log P(x) without checks. Each bin [z - h, z + h] (in standard deviations) takes whichever form has
 * no cancellation in float32:
 * - narrow bins (h max(|z|, 1) <= 0.3): the series P = 2h phi(z) (1 + h^2 He2(z)/3! + h^4 He4(z)/5! + h^6 He6(z)/7!),
 *   whose next term is below 1.5e-7 relative there;
 * - wider bins on one side of the mean (reflected to z > 0): log P = log Q(a) + log1p(-exp(log Q(b) - log Q(a))),
 *   where log Q(a) - log Q(b) >= 0.4, so the log1p keeps full precision;
 * - wider bins across the mean: P = 1 - Q(-a) - Q(b) >= 0.2;
 * - the edge bins: log Q(a) or log Q(-b) of the open side.
 * Every branch is evaluated on safe inputs where it is not selected, so gradients stay finite.
 */
export function discretizedGaussianLogLikelihoodUnchecked(x: tf.Tensor, mean: tf.Tensor, logScale: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const centered = x.sub(mean);
    const invStd = tf.exp(tf.neg(logScale));
    const zLo = centered.sub(1 / 255).mul(invStd);
    const zHi = centered.add(1 / 255).mul(invStd);
    const z = centered.mul(invStd);
    const h = tf.broadcastTo(invStd.mul(1 / 255), z.shape);
    const xb = tf.broadcastTo(x, z.shape);
    // The edge levels are exactly -1 and +1; 0.999 sits between them and their neighbours (1 - 2/255).
    // Masks come from greaterEqual alone and combine by nesting tf.where: the logical ops have no
    // gradient in tfjs, and a mask derived from mean or logScale sits on the gradient's path.
    const lowerEdge = tf.greaterEqual(-0.999, xb);
    const upperEdge = tf.greaterEqual(xb, 0.999);
    const series = tf.greaterEqual(tf.scalar(SERIES_LIMIT).sub(h.mul(tf.maximum(tf.abs(z), 1))), 0);

    // Series: u = h z keeps every term bounded (h^k He_k(z) written in u and h).
    const hs = tf.where(series, h, tf.onesLike(h).mul(0.1));
    const zs = tf.where(series, z, tf.zerosLike(z));
    const u2 = hs.mul(zs).square();
    const h2 = hs.square();
    const t2 = u2.sub(h2).div(6);
    const t4 = u2.square().sub(u2.mul(h2).mul(6)).add(h2.square().mul(3)).div(120);
    const t6 = u2.pow(3).sub(u2.square().mul(h2).mul(15)).add(u2.mul(h2.square()).mul(45)).sub(h2.pow(3).mul(15)).div(5040);
    const logSeries = tf.log(hs.mul(2)).sub(zs.square().mul(0.5)).sub(0.5 * LOG_2PI).add(tf.log1p(t2.add(t4).add(t6)));

    // Reflect so that the far side of the bin is positive: a < b, a >= 0 for a bin on one side of the mean.
    const right = z.greaterEqual(0);
    const a = tf.where(right, zLo, tf.neg(zHi));
    const b = tf.where(right, zHi, tf.neg(zLo));
    const oneSide = a.greaterEqual(0);
    const zeros = tf.zerosLike(a);
    const ones = tf.onesLike(a);
    const aS = tf.where(series, zeros, tf.where(oneSide, a, zeros));
    const bS = tf.where(series, ones, tf.where(oneSide, b, ones));
    const lqa = logNormalSf(aS);
    const logTail = lqa.add(tf.log1p(tf.neg(tf.exp(logNormalSf(bS).sub(lqa)))));

    const outer = tf.exp(logNormalSf(tf.maximum(tf.neg(a), 0))).add(tf.exp(logNormalSf(tf.maximum(b, 0))));
    const half = ones.mul(0.5);
    const logAcross = tf.log1p(tf.neg(tf.where(series, half, tf.where(oneSide, half, outer))));

    const interior = tf.where(series, logSeries, tf.where(oneSide, logTail, logAcross));
    return tf.where(lowerEdge, logUpperTail(tf.neg(zHi)), tf.where(upperEdge, logUpperTail(zLo), interior));
  });
}

/**
 * log P(x) per element for 8-bit data scaled to [-1, 1] under a Gaussian N(mean, exp(logScale)^2)
 * discretised into 256 bins of width 2/255, the edge bins open-ended (x = -1 takes (-inf, -1 + 1/255],
 * x = +1 takes [1 - 1/255, inf)). Computed in log space (erfc's log, a series for narrow bins), so a
 * bin far in a tail keeps its true log-probability instead of a clamp: relative error <= 1e-4 for
 * every probability down to 1e-30 (measured <= 1e-4 down to ~1e-110); below, the float32 rounding
 * of z grows with the tail, but |error of log P| stays below 1e-6 |log P|. x must lie on the 256-level grid.
 */
export function discretizedGaussianLogLikelihood(x: tf.Tensor, mean: tf.Tensor, logScale: tf.Tensor): tf.Tensor {
  checkBroadcast(['x', 'mean', 'logScale'], [x, mean, logScale]);
  checkFiniteTensor('mean', mean);
  checkFiniteTensor('logScale', logScale);
  checkUnitRange('x', x);
  return discretizedGaussianLogLikelihoodUnchecked(x, mean, logScale);
}

/** Throws unless x lies in [-1, 1] (8-bit data scaled); skipped where the backend cannot read synchronously. */
export function checkUnitRange(name: string, x: tf.Tensor): void {
  const range = canReadSync() ? tf.tidy(() => [x.min().dataSync()[0], x.max().dataSync()[0]]) : [-1, 1];
  if (!(range[0] >= -1 - 1e-6 && range[1] <= 1 + 1e-6)) {
    throw new Error(`${name} must lie in [-1, 1] (8-bit data scaled), got values in [${range[0]}, ${range[1]}]`);
  }
}

/** Converts a negative log-likelihood in nats summed over D dimensions to bits per dimension. */
export function bitsPerDim(nats: number, D: number): number {
  if (!Number.isFinite(nats)) throw new Error(`nats must be a finite number, got ${nats}`);
  if (!Number.isInteger(D) || D < 1) throw new Error(`D must be an integer >= 1, got ${D}`);
  return nats / (D * Math.LN2);
}
