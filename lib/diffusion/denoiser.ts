/**
 * What a noise-prediction model is to the rest of the library: anything with predictEps(xt, t),
 * the eps_theta(x_t, t) of docs/equations.md#noise-prediction. The exact optimal predictors
 * (lib/diffusion/optimal.ts) and the neural networks (lib/models/) both implement it.
 */
import * as tf from '@tensorflow/tfjs';
import type { Timestep } from './schedule';

/**
 * eps_theta(x_t, t): predicts the noise in x_t, with the same shape as x_t. t is one timestep for
 * the batch or an int32 [batch] tensor of per-example timesteps (the losses pass the latter, once per batch).
 */
export interface Denoiser {
  predictEps(xt: tf.Tensor, t: Timestep): tf.Tensor;
}

/** A denoiser with weights that training updates. */
export interface TrainableDenoiser extends Denoiser {
  /** The weights the optimizer updates, in a fixed order. */
  readonly trainableVariables: tf.Variable[];
  /** A serialisable description of the architecture, enough to rebuild it. */
  readonly config: Record<string, unknown>;
  /** A new model with the same config and a copy of the current weights. */
  clone(): TrainableDenoiser;
  /** Frees the weights. */
  dispose(): void;
}

/** True when `m` has the trainable-denoiser shape. */
export function isTrainable(m: Denoiser): m is TrainableDenoiser {
  return Array.isArray((m as TrainableDenoiser).trainableVariables) && typeof (m as TrainableDenoiser).clone === 'function';
}
