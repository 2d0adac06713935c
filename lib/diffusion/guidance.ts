/**
 * Class-conditional denoisers and classifier-free guidance, docs/equations.md#guidance: a
 * conditional eps(x_t, t | c) with a null class that stands for "no class" (so one model gives
 * both eps(x_t, t | c) and eps(x_t, t)), and the guided prediction
 * eps~ = (1 + w) eps(x_t, t | c) - w eps(x_t, t) as a plain Denoiser that both samplers take.
 * Notebook: 08_guidance.
 */
import * as tf from '@tensorflow/tfjs';
import type { Denoiser, TrainableDenoiser } from './denoiser';
import { LossDraws, simpleLoss } from './loss';
import { Rng } from './random';
import type { Schedule, Timestep } from './schedule';
import { canReadSync, checkInteger, checkNumber } from './validate';

/** A class label: one class for the whole batch, or an int32 [batch] tensor of per-example classes. */
export type ClassLabel = number | tf.Tensor1D;

/**
 * eps(x_t, t | c) for classes 0 .. numClasses - 1; c = nullClass, or c left out, is the
 * unconditional eps(x_t, t). The exact mixture predictor (lib/diffusion/optimal.ts) and a U-Net
 * built with numClasses (lib/models/unet.ts) implement it.
 */
export interface ConditionalDenoiser extends Denoiser {
  readonly numClasses: number;
  /** The label meaning "no class"; it is numClasses (one past the last real class). */
  readonly nullClass: number;
  predictEps(xt: tf.Tensor, t: Timestep, c?: ClassLabel): tf.Tensor;
}

/** True when `m` is a conditional denoiser (it has at least one class). */
export function isConditional(m: Denoiser): m is ConditionalDenoiser {
  const c = m as Partial<ConditionalDenoiser>;
  return typeof c.numClasses === 'number' && c.numClasses >= 1 && typeof c.nullClass === 'number';
}

/**
 * Throws unless c is a class label for a batch of `batch` with classes 0 .. numClasses - 1 (and
 * nullClass when allowNull): an integer, or an int32 [batch] tensor whose values are read back and
 * checked (where the backend can read synchronously; a gather with a bad index fails silently).
 */
export function checkClassLabel(c: ClassLabel, numClasses: number, nullClass: number, batch: number | null, opts: { name?: string; allowNull?: boolean } = {}): void {
  const name = opts.name ?? 'c';
  const allowNull = opts.allowNull ?? true;
  const range = allowNull ? `an integer in [0, ${numClasses - 1}] or the null class ${nullClass}` : `an integer in [0, ${numClasses - 1}] (a real class, not the null class ${nullClass})`;
  const ok = (v: number) => Number.isInteger(v) && ((v >= 0 && v < numClasses) || (allowNull && v === nullClass));
  if (typeof c === 'number') {
    if (!ok(c)) throw new Error(`${name} must be ${range}, got ${String(c)}`);
    return;
  }
  if (!(c instanceof tf.Tensor)) throw new Error(`${name} must be a class number or an int32 tensor of classes, got ${String(c)}`);
  if (c.dtype !== 'int32') throw new Error(`${name} must be an int32 tensor, got dtype ${c.dtype}`);
  if (c.rank !== 1 || (batch !== null && c.shape[0] !== batch)) {
    throw new Error(`${name} must have one class per example (shape [${batch ?? 'batch'}]), got shape [${c.shape}]`);
  }
  if (!canReadSync()) return;
  const values = c.dataSync();
  for (let i = 0; i < values.length; i++) {
    if (!ok(values[i])) throw new Error(`${name}[${i}] must be ${range}, got ${values[i]}`);
  }
}

/** The guided denoiser returned by guidedDenoiser: a plain Denoiser that remembers its parts. */
export interface GuidedDenoiser extends Denoiser {
  readonly model: ConditionalDenoiser;
  readonly c: ClassLabel;
  readonly w: number;
}

/**
 * Classifier-free guidance (Ho & Salimans 2022): eps~(x_t, t) = (1 + w) eps(x_t, t | c) - w eps(x_t, t)
 * as a Denoiser for sampleDDPM / sampleDDIM. w = 0 is the conditional model itself (one call per
 * step); on exact scores it is classifier guidance with scale 1 + w. c must be a real class.
 */
export function guidedDenoiser(model: ConditionalDenoiser, c: ClassLabel, w: number): GuidedDenoiser {
  if (model === null || typeof model !== 'object' || typeof (model as Denoiser).predictEps !== 'function') {
    throw new Error(`model must be a conditional denoiser (with predictEps(xt, t, c)), got ${String(model)}`);
  }
  if (!isConditional(model)) {
    const n = (model as Partial<ConditionalDenoiser>).numClasses;
    throw new Error(`model must be conditional (numClasses >= 1), got an unconditional model (numClasses ${n ?? 'unset'}): it cannot take a class`);
  }
  checkNumber('w', w, 0, Infinity);
  checkClassLabel(c, model.numClasses, model.nullClass, null, { allowNull: false });
  return {
    model,
    c,
    w,
    predictEps(xt: tf.Tensor, t: Timestep): tf.Tensor {
      if (typeof c !== 'number' && c.shape[0] !== xt.shape[0]) {
        throw new Error(`c must have one class per example (shape [${xt.shape[0]}]), got shape [${c.shape}]`);
      }
      if (w === 0) return model.predictEps(xt, t, c);
      return tf.tidy(() => {
        const conditional = model.predictEps(xt, t, c);
        const unconditional = model.predictEps(xt, t, model.nullClass);
        return tf.sub(tf.mul(conditional, 1 + w), tf.mul(unconditional, w));
      });
    },
  };
}

/**
 * Classifier-free guidance's training labels: each label is replaced by nullClass with
 * probability pUncond (independently, from rng), so that one network learns eps(x|c) and eps(x).
 */
export function dropClassLabels(labels: ArrayLike<number>, numClasses: number, pUncond: number, rng: Rng): Int32Array {
  checkInteger('numClasses', numClasses, 1);
  checkNumber('pUncond', pUncond, 0, 1);
  if (!(rng instanceof Rng)) throw new Error(`rng must be an Rng, got ${String(rng)}`);
  const out = new Int32Array(labels.length);
  for (let i = 0; i < labels.length; i++) {
    checkInteger(`labels[${i}]`, labels[i], 0, numClasses - 1);
    out[i] = rng.uniform() < pUncond ? numClasses : labels[i];
  }
  return out;
}

/** The text's simple loss for a conditional model: ||eps(x_t, t | c) - eps||^2, batch mean over D (differentiable). */
export function conditionalSimpleLoss(model: ConditionalDenoiser, s: Schedule, x0: tf.Tensor, c: ClassLabel, opts: LossDraws = {}): tf.Scalar {
  if (!isConditional(model)) throw new Error('model must be conditional (numClasses >= 1), got an unconditional model');
  checkClassLabel(c, model.numClasses, model.nullClass, x0.shape[0]);
  return simpleLoss({ predictEps: (xt, t) => model.predictEps(xt, t, c) }, s, x0, opts);
}

/** What conditionalTrainStep did: the loss before the update and the labels it trained on. */
export interface ConditionalStepResult {
  loss: number;
  /** The labels after dropping (nullClass where dropped). */
  labels: Int32Array;
}

/**
 * One classifier-free-guidance training step: labels dropped to the null class with probability
 * pUncond (default 0.1), the conditional simple loss, one optimizer update of the model's weights
 * (none, and an Error, when the loss is not finite).
 */
export async function conditionalTrainStep(
  model: ConditionalDenoiser & TrainableDenoiser,
  optimizer: tf.Optimizer,
  s: Schedule,
  x0: tf.Tensor,
  labels: ArrayLike<number>,
  opts: { pUncond?: number; seed?: number } = {},
): Promise<ConditionalStepResult> {
  if (!isConditional(model)) throw new Error('model must be conditional (numClasses >= 1), got an unconditional model');
  if (!(optimizer instanceof tf.Optimizer)) throw new Error(`optimizer must be a tf.Optimizer, got ${String(optimizer)}`);
  if (labels.length !== x0.shape[0]) throw new Error(`labels must have one class per example (${x0.shape[0]}), got ${labels.length}`);
  const seed = opts.seed ?? 0;
  checkNumber('seed', seed, -(2 ** 53), 2 ** 53);
  const dropped = dropClassLabels(labels, model.numClasses, opts.pUncond ?? 0.1, new Rng(seed));
  const c = tf.tensor1d(dropped, 'int32');
  let result: { value: tf.Scalar; grads: tf.NamedTensorMap };
  try {
    result = tf.variableGrads(() => conditionalSimpleLoss(model, s, x0, c, { seed }), model.trainableVariables);
  } catch (e) {
    c.dispose();
    throw e;
  }
  const { value, grads } = result;
  try {
    const loss = (await value.data())[0];
    // Read before the update, so that a NaN batch never reaches the weights.
    if (!Number.isFinite(loss)) throw new Error(`the conditional loss is not finite (${loss}); no update was applied`);
    optimizer.applyGradients(grads);
    return { loss, labels: dropped };
  } finally {
    tf.dispose([c, value, ...Object.values(grads)]);
  }
}
