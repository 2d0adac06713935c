/**
 * The text's training algorithm as a plain loop: sample a batch of data, t ~ U[1, T],
 * eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, loss ||eps_theta(x_t, t) - eps||^2,
 * a gradient step (Adam), optionally gradient clipping and an exponential moving average of the
 * weights. shared/math.md "Noise prediction". Notebooks: 05_training_2d, 07_mnist.
 */
import * as tf from '@tensorflow/tfjs';
import type { TrainableDenoiser } from './denoiser';
import { LOSS_TYPES, LossType, drawTimesteps, hybridLossUnchecked, simpleLossUnchecked, vlbLossUnchecked } from './loss';
import { Rng, deriveSeed } from './random';
import { Schedule } from './schedule';
import { checkFiniteTensorAsync, checkInteger, checkNumber, checkRank, sumTensors } from './validate';

/** What onProgress receives every `progressEvery` steps. */
export interface TrainProgress {
  step: number;
  steps: number;
  /** Mean loss over the steps since the last report. */
  loss: number;
  stepsPerSecond: number;
  elapsedSeconds: number;
}

/** The arguments of train(). */
export interface TrainOptions {
  model: TrainableDenoiser;
  schedule: Schedule;
  /** Training data, batch first ([N, ...]); it is not disposed. */
  data: tf.Tensor;
  steps: number;
  batchSize: number;
  /** Adam's learning rate; default 1e-3. */
  lr?: number;
  /** Keep an exponential moving average of the weights with this decay in [0, 1); default none. */
  emaDecay?: number;
  /** Rescale the gradients so their global norm is at most this; default none. */
  gradClip?: number;
  /** Seed of the batches, timesteps and noise; default 0. */
  seed?: number;
  /** The objective; default 'simple' (the text's). */
  loss?: LossType;
  /** Called every `progressEvery` steps (default: about 50 reports per run) and after the last. */
  onProgress?: (p: TrainProgress) => void;
  progressEvery?: number;
}

/** What train() returns: the loss of every step, and the EMA model if one was asked for (the caller disposes it). */
export interface TrainResult {
  losses: Float32Array;
  ema: TrainableDenoiser | null;
  seconds: number;
}

async function checkTrainOptions(o: TrainOptions): Promise<void> {
  if (!o || typeof o !== 'object') throw new Error(`train needs an options object, got ${String(o)}`);
  if (!o.model || !Array.isArray(o.model.trainableVariables)) throw new Error('model must be a TrainableDenoiser (with trainableVariables)');
  if (!(o.schedule instanceof Schedule)) throw new Error('schedule must be a Schedule (e.g. linearSchedule(1000))');
  if (!(o.data instanceof tf.Tensor)) throw new Error(`data must be a tensor [N, ...], got ${String(o.data)}`);
  checkRank('data', o.data, 2);
  if (o.data.shape[0] < 1) throw new Error(`data must hold at least one example, got shape [${o.data.shape}]`);
  checkInteger('steps', o.steps, 1);
  checkInteger('batchSize', o.batchSize, 1, o.data.shape[0]);
  if (o.lr !== undefined) checkNumber('lr', o.lr, 0, Infinity, { lo: true, hi: true });
  if (o.emaDecay !== undefined) checkNumber('emaDecay', o.emaDecay, 0, 1, { hi: true });
  if (o.gradClip !== undefined) checkNumber('gradClip', o.gradClip, 0, Infinity, { lo: true, hi: true });
  if (o.seed !== undefined) checkNumber('seed', o.seed, -(2 ** 53), 2 ** 53);
  if (o.loss !== undefined && !LOSS_TYPES.includes(o.loss)) throw new Error(`loss must be one of ${LOSS_TYPES.join(', ')}, got ${String(o.loss)}`);
  if (o.progressEvery !== undefined) checkInteger('progressEvery', o.progressEvery, 1);
  await checkFiniteTensorAsync('data', o.data);
}

/** Batch indices: the data reshuffled every epoch (without replacement within an epoch), seeded. */
export class BatchSampler {
  private order: Int32Array;
  private pos: number;

  constructor(private readonly n: number, private readonly rng: Rng) {
    this.order = new Int32Array(n);
    this.pos = n;
  }

  next(batch: number): Int32Array {
    const out = new Int32Array(batch);
    for (let i = 0; i < batch; i++) {
      if (this.pos === this.n) this.reshuffle();
      out[i] = this.order[this.pos++];
    }
    return out;
  }

  private reshuffle(): void {
    for (let i = 0; i < this.n; i++) this.order[i] = i;
    for (let i = this.n - 1; i > 0; i--) {
      const j = this.rng.int(0, i);
      [this.order[i], this.order[j]] = [this.order[j], this.order[i]];
    }
    this.pos = 0;
  }
}

/** Rescales grads in place so that their global L2 norm is at most maxNorm. */
function clipByGlobalNorm(grads: tf.NamedTensorMap, maxNorm: number): tf.NamedTensorMap {
  return tf.tidy(() => {
    const names = Object.keys(grads);
    const norm = tf.sqrt(sumTensors(names.map((k) => tf.sum(tf.square(grads[k])))));
    const scale = tf.minimum(tf.scalar(1), tf.scalar(maxNorm).div(norm.add(1e-6)));
    const out: tf.NamedTensorMap = {};
    for (const k of names) out[k] = grads[k].mul(scale);
    return out;
  });
}

/**
 * Trains `model` in place with Adam and resolves to the per-step losses. Every random draw comes
 * from `seed`. Reads the losses back (asynchronously, so it works on every backend) only every
 * `progressEvery` steps, so the device is not stalled each step. Stops with an Error naming the step
 * if a loss is NaN or infinite.
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  await checkTrainOptions(o);
  const { model, schedule: s, data, steps, batchSize } = o;
  const seed = o.seed ?? 0;
  const lossType = o.loss ?? 'simple';
  const every = o.progressEvery ?? Math.max(1, Math.round(steps / 50));
  const rng = new Rng(deriveSeed(seed, 0x7a1));
  const sampler = new BatchSampler(data.shape[0], rng);
  const optimizer = tf.train.adam(o.lr ?? 1e-3);
  const vars = model.trainableVariables;
  const ema = o.emaDecay !== undefined ? model.clone() : null;
  const losses = new Float32Array(steps);
  const pending: tf.Scalar[] = [];
  const started = Date.now();
  let reported = 0;

  const flush = async (step: number) => {
    if (pending.length === 0) return;
    const stacked = tf.stack(pending);
    const values = (await stacked.data()) as Float32Array;
    stacked.dispose();
    pending.forEach((l) => l.dispose());
    pending.length = 0;
    for (let i = 0; i < values.length; i++) {
      const at = reported + i;
      if (!Number.isFinite(values[i])) {
        throw new Error(`train: the loss at step ${at + 1} is ${values[i]} (not finite); lower lr or set gradClip`);
      }
      losses[at] = values[i];
    }
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    reported = step;
    const elapsed = (Date.now() - started) / 1000;
    o.onProgress?.({ step, steps, loss: mean, stepsPerSecond: step / Math.max(elapsed, 1e-9), elapsedSeconds: elapsed });
  };

  try {
    for (let step = 1; step <= steps; step++) {
      const idx = sampler.next(batchSize);
      const tValues = drawTimesteps(s.T, batchSize, rng);
      const noiseSeed = deriveSeed(seed, 0xe95, step);
      const lossValue = tf.tidy(() => {
        const x0 = tf.gather(data, tf.tensor1d(idx, 'int32'));
        const eps = tf.randomNormal(x0.shape, 0, 1, 'float32', noiseSeed);
        const t = tf.tensor1d(tValues, 'int32');
        const f = (): tf.Scalar => {
          if (lossType === 'simple') return simpleLossUnchecked(model, s, x0, t, eps);
          if (lossType === 'vlb') return vlbLossUnchecked(model, s, x0, tValues, eps);
          return hybridLossUnchecked(model, s, x0, t, tValues, eps);
        };
        const { value, grads } = tf.variableGrads(f, vars);
        const g = o.gradClip !== undefined ? clipByGlobalNorm(grads, o.gradClip) : grads;
        optimizer.applyGradients(Object.keys(g).map((name) => ({ name, tensor: g[name] })));
        if (ema) {
          const d = o.emaDecay as number;
          ema.trainableVariables.forEach((e, i) => e.assign(e.mul(d).add(vars[i].mul(1 - d))));
        }
        return value;
      });
      pending.push(lossValue);
      if (step % every === 0 || step === steps) await flush(step);
    }
  } catch (e) {
    pending.forEach((l) => l.dispose());
    ema?.dispose();
    throw e;
  } finally {
    optimizer.dispose();
  }
  return { losses, ema, seconds: (Date.now() - started) / 1000 };
}
