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

/** The standard normal CDF through erf (tf.erf is accurate to about 1.5e-7 absolute). */
function standardNormalCdf(z: tf.Tensor): tf.Tensor {
  return tf.erf(z.mul(Math.SQRT1_2)).add(1).mul(0.5);
}

/**
 * log P(x) per element for 8-bit data scaled to [-1, 1] under a Gaussian N(mean, exp(logScale)^2)
 * discretised into 256 bins of width 2/255, the edge bins open-ended (x = -1 takes (-inf, -1 + 1/255],
 * x = +1 takes [1 - 1/255, inf)). Probabilities below 1e-12 are clamped there, as in
 * improved-diffusion, since float32 cannot resolve them. x must lie on the 256-level grid.
 */
export function discretizedGaussianLogLikelihood(x: tf.Tensor, mean: tf.Tensor, logScale: tf.Tensor): tf.Tensor {
  checkBroadcast(['x', 'mean', 'logScale'], [x, mean, logScale]);
  checkFiniteTensor('mean', mean);
  checkFiniteTensor('logScale', logScale);
  const range = canReadSync() ? tf.tidy(() => [x.min().dataSync()[0], x.max().dataSync()[0]]) : [-1, 1];
  if (!(range[0] >= -1 - 1e-6 && range[1] <= 1 + 1e-6)) {
    throw new Error(`x must lie in [-1, 1] (8-bit data scaled), got values in [${range[0]}, ${range[1]}]`);
  }
  return tf.tidy(() => {
    const centered = x.sub(mean);
    const invStd = tf.exp(tf.neg(logScale));
    const cdfPlus = standardNormalCdf(centered.add(1 / 255).mul(invStd));
    const cdfMin = standardNormalCdf(centered.sub(1 / 255).mul(invStd));
    const tiny = 1e-12;
    const logCdfPlus = tf.log(tf.maximum(cdfPlus, tiny));
    const logOneMinusCdfMin = tf.log(tf.maximum(tf.scalar(1).sub(cdfMin), tiny));
    const logCdfDelta = tf.log(tf.maximum(cdfPlus.sub(cdfMin), tiny));
    // The edge levels are exactly -1 and +1; 0.999 sits between them and their neighbours (1 - 2/255).
    return tf.where(x.less(-0.999), logCdfPlus, tf.where(x.greater(0.999), logOneMinusCdfMin, logCdfDelta));
  });
}

/** Converts a negative log-likelihood in nats summed over D dimensions to bits per dimension. */
export function bitsPerDim(nats: number, D: number): number {
  if (!Number.isFinite(nats)) throw new Error(`nats must be a finite number, got ${nats}`);
  if (!Number.isInteger(D) || D < 1) throw new Error(`D must be an integer >= 1, got ${D}`);
  return nats / (D * Math.LN2);
}
