/**
 * How a denoiser is told the timestep: the sinusoidal embedding of the Transformer (Vaswani et al.
 * 2017), as DDPM and improved-diffusion use it. Notebooks: 05_training_2d, 07_mnist.
 */
import * as tf from '@tensorflow/tfjs';
import type { Timestep } from '../diffusion/schedule';
import { checkInteger, checkNumber } from '../diffusion/validate';

/**
 * Throws unless `t` is a timestep a model can take for a batch of `batch`: an integer >= 1, or an
 * int32 tensor of shape [batch]. Tensor values are not read back (that would sync the device on
 * every call); a bad value cannot make NaN here, and checkTimestep checks them against T.
 */
export function checkModelTimestep(t: Timestep, batch: number, name = 't'): void {
  if (typeof t === 'number') {
    checkInteger(name, t, 1);
    return;
  }
  if (!(t instanceof tf.Tensor)) throw new Error(`${name} must be a number or an int32 tensor, got ${String(t)}`);
  if (t.dtype !== 'int32') throw new Error(`${name} must be an int32 tensor, got dtype ${t.dtype}`);
  if (t.rank !== 1 || t.shape[0] !== batch) {
    throw new Error(`${name} must have one timestep per example (shape [${batch}]), got shape [${t.shape}]`);
  }
}

/**
 * The sinusoidal timestep embedding, shape [batch, dim]: column i < dim/2 is sin(t f_i), column
 * dim/2 + i is cos(t f_i), with f_i = exp(-ln(maxPeriod) i / (dim/2)), so periods run from 2 pi
 * up to nearly 2 pi maxPeriod.
 */
export function timestepEmbedding(t: Timestep, batch: number, dim: number, maxPeriod = 10000): tf.Tensor2D {
  checkInteger('batch', batch, 1);
  checkInteger('dim', dim, 2);
  if (dim % 2 !== 0) throw new Error(`dim must be an even integer >= 2 (half sin, half cos), got ${dim}`);
  checkNumber('maxPeriod', maxPeriod, 0, Infinity, { lo: true, hi: true });
  if (typeof t === 'number') {
    checkNumber('t', t, -Infinity, Infinity, { lo: true, hi: true });
  } else {
    if (!(t instanceof tf.Tensor)) throw new Error(`t must be a number or a 1-D tensor, got ${String(t)}`);
    if (t.rank !== 1 || t.shape[0] !== batch) {
      throw new Error(`t must have one timestep per example (shape [${batch}]), got shape [${t.shape}]`);
    }
  }
  const half = dim / 2;
  // The frequencies are made in float64 and rounded once, not built up from float32 exp/log.
  const freqs = Float32Array.from({ length: half }, (_, i) => Math.exp((-Math.log(maxPeriod) * i) / half));
  if (typeof t === 'number') {
    // One t for the whole batch (the samplers): one row, computed here and repeated, instead of
    // sin and cos of a [batch, half] tensor. The argument is the float32 product t f_i, as below.
    const row = new Float32Array(dim);
    for (let i = 0; i < half; i++) {
      const arg = Math.fround(Math.fround(t) * freqs[i]);
      row[i] = Math.sin(arg);
      row[half + i] = Math.cos(arg);
    }
    return batch === 1 ? tf.tensor2d(row, [1, dim]) : tf.tidy(() => tf.tile(tf.tensor2d(row, [1, dim]), [batch, 1]));
  }
  return tf.tidy(() => {
    const tCol = tf.reshape(tf.cast(t, 'float32'), [batch, 1]);
    const args = tf.mul(tCol, tf.tensor2d(freqs, [1, half]));
    return tf.concat([tf.sin(args), tf.cos(args)], 1) as tf.Tensor2D;
  });
}
