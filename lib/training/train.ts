/**
 * The text's training algorithm as a plain loop: sample a batch of data, t ~ U[1, T],
 * eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, loss ||eps_theta(x_t, t) - eps||^2,
 * a gradient step (Adam), optionally gradient clipping and an exponential moving average of the
 * weights. docs/equations.md#simple-loss. Notebooks: 05_training_2d, 07_mnist.
 */
import * as tf from '@tensorflow/tfjs';
import type { Denoiser, TrainableDenoiser } from '../diffusion/denoiser';
import { ConditionalDenoiser, dropClassLabels, isConditional } from '../diffusion/guidance';
import { LOSS_TYPES, LossType, drawTimesteps, hybridLossUnchecked, minSnrLossUnchecked, simpleLossUnchecked, vlbLossUnchecked } from '../diffusion/loss';
import { FusedAdam } from './optim';
import { GradientWorkers, PARALLEL_BACKENDS, SliceData, flatten, sliceSizes } from './parallel';
import { Rng, deriveSeed } from '../diffusion/random';
import { Schedule } from '../diffusion/schedule';
import { checkFiniteTensorAsync, checkInteger, checkNumber, checkRank, sumTensors } from '../diffusion/validate';

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
  /**
   * One class per example of `data` (0 .. numClasses - 1) for a conditional model (isConditional),
   * which then learns eps(x_t, t | c) and, from labels dropped to its null class, eps(x_t, t).
   * docs/equations.md#guidance. Required for a conditional model, refused for an unconditional one.
   */
  labels?: Int32Array;
  /** Probability in [0, 1] that a label is replaced by the null class at a step; default 0.1 (needs labels). */
  pUncond?: number;
  steps: number;
  batchSize: number;
  /** Adam's learning rate; default 1e-3. */
  lr?: number;
  /**
   * How the learning rate moves over the run: 'constant' (default) keeps lr; 'cosine' uses
   * lrAt('cosine', lr, step, steps) = lr (1 + cos(pi (step - 1) / steps)) / 2 at step 1 .. steps,
   * from lr down to nearly 0 at the last step. `steps` is the run's total, so a resumed run continues
   * the same curve.
   */
  lrSchedule?: LrSchedule;
  /** Keep an exponential moving average of the weights with this decay in [0, 1); default none. */
  emaDecay?: number;
  /**
   * Warm the EMA up: at step k use min(emaDecay, (1 + k) / (10 + k)) (as tf.train.ExponentialMovingAverage
   * with num_updates), so short runs are not dominated by the initial weights. Default false.
   */
  emaWarmup?: boolean;
  /** Rescale the gradients so their global norm is at most this; default none. */
  gradClip?: number;
  /** Seed of the batches, timesteps and noise; default 0. */
  seed?: number;
  /** The objective; default 'simple' (the text's). */
  loss?: LossType;
  /** Called every `progressEvery` steps (default: about 50 reports per run) and after the last. */
  onProgress?: (p: TrainProgress) => void;
  progressEvery?: number;
  /**
   * Steps already done (a resumed run): the loop runs steps initialStep + 1 .. steps, so `steps`
   * is the run's total. Default 0. A resumed run also passes the saved optimizer, EMA and rngState.
   */
  initialStep?: number;
  /** Use this optimizer (its state restored by setWeights) instead of a fresh Adam(lr); the caller disposes it. */
  optimizer?: tf.Optimizer;
  /** Continue this EMA model (needs emaDecay) instead of cloning the model; the caller disposes it. */
  ema?: TrainableDenoiser;
  /** The batch sampler's and the timestep stream's state at initialStep (from a checkpoint). */
  rngState?: TrainRngState;
  /**
   * Skip (and count) a batch whose loss or gradient is NaN or infinite instead of stopping. Reads the
   * loss back every step (a device stall), so only when asked for. Default false.
   */
  skipNonFinite?: boolean;
  /** Batches skipped before initialStep (a resumed run's count); default 0. */
  initialSkipped?: number;
  /**
   * Called (and awaited) after every `checkpointEvery` steps, after the last step, and when `signal`
   * stops the run, each time after every loss so far was read and found finite. Default: never.
   */
  onCheckpoint?: (c: TrainCheckpoint) => void | Promise<void>;
  checkpointEvery?: number;
  /** When aborted, the run finishes the current step, checkpoints, and returns with stopped = true. */
  signal?: AbortSignal;
  /**
   * Threads that share each batch (lib/training/parallel.ts): 1 (the default) computes it here;
   * n > 1 starts n - 1 worker threads, each with a replica of the model, on the 'wasm' or 'cpu'
   * backend, and combines the slices' gradients. The same run gives the same result for the same n;
   * different n differ in float32 rounding only. Capped at batchSize.
   */
  workers?: number;
}

/** The random state of a run between two steps: enough, with the weights, to resume it bit for bit. */
export interface TrainRngState {
  /** The Rng of batch indices and timesteps (Rng.getState()). */
  rng: number[];
  /** The batch sampler's current epoch order and position in it. */
  samplerOrder: Int32Array;
  samplerPos: number;
}

/** What onCheckpoint receives: the run after `step` steps. Everything is borrowed (do not dispose). */
export interface TrainCheckpoint {
  step: number;
  model: TrainableDenoiser;
  ema: TrainableDenoiser | null;
  optimizer: tf.Optimizer;
  rngState: TrainRngState;
  /** The losses of steps initialStep + 1 .. step (NaN where a batch was skipped). */
  losses: Float32Array;
  /** Batches skipped so far, initialSkipped included. */
  skipped: number;
}

/** What train() returns: the loss of every step, and the EMA model if one was asked for (the caller disposes it). */
export interface TrainResult {
  /** The losses of steps initialStep + 1 .. step (NaN where a batch was skipped). */
  losses: Float32Array;
  ema: TrainableDenoiser | null;
  seconds: number;
  /** The last step done: `steps`, or less when `signal` stopped the run. */
  step: number;
  stopped: boolean;
  /** Batches skipped (skipNonFinite), initialSkipped included. */
  skipped: number;
}

/** The learning-rate schedules of train({ lrSchedule }). */
export const LR_SCHEDULES = ['constant', 'cosine'] as const;
export type LrSchedule = (typeof LR_SCHEDULES)[number];

function checkLrSchedule(schedule: unknown): void {
  if (!LR_SCHEDULES.includes(schedule as LrSchedule)) throw new Error(`lrSchedule must be one of ${LR_SCHEDULES.join(', ')}, got ${String(schedule)}`);
}

/** The learning rate train() uses at step (1 .. steps) of a run of `steps` under `schedule`, from base rate lr. */
export function lrAt(schedule: LrSchedule, lr: number, step: number, steps: number): number {
  checkLrSchedule(schedule);
  checkInteger('steps', steps, 1);
  checkInteger('step', step, 1, steps);
  return schedule === 'constant' ? lr : (lr * (1 + Math.cos((Math.PI * (step - 1)) / steps))) / 2;
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
  if (o.lrSchedule !== undefined) {
    checkLrSchedule(o.lrSchedule);
    if (o.lrSchedule !== 'constant' && o.optimizer !== undefined && !isFusedAdam(o.optimizer)) {
      throw new Error(`lrSchedule '${o.lrSchedule}' needs a FusedAdam optimizer (createOptimizer's), whose learningRate train() can lower; got ${o.optimizer.getClassName()}`);
    }
  }
  if (o.gradClip !== undefined) checkNumber('gradClip', o.gradClip, 0, Infinity, { lo: true, hi: true });
  if (o.seed !== undefined) checkNumber('seed', o.seed, -(2 ** 53), 2 ** 53);
  if (o.loss !== undefined && !LOSS_TYPES.includes(o.loss)) throw new Error(`loss must be one of ${LOSS_TYPES.join(', ')}, got ${String(o.loss)}`);
  if (o.progressEvery !== undefined) checkInteger('progressEvery', o.progressEvery, 1);
  if (o.initialStep !== undefined) checkInteger('initialStep', o.initialStep, 0, o.steps - 1);
  if (o.initialSkipped !== undefined) checkInteger('initialSkipped', o.initialSkipped, 0);
  if (o.checkpointEvery !== undefined) checkInteger('checkpointEvery', o.checkpointEvery, 1);
  if (o.optimizer !== undefined && !(o.optimizer instanceof tf.Optimizer)) throw new Error(`optimizer must be a tf.Optimizer, got ${String(o.optimizer)}`);
  if (o.ema !== undefined) {
    if (o.emaDecay === undefined) throw new Error('ema needs emaDecay (the decay it was trained with)');
    if (!Array.isArray(o.ema.trainableVariables) || o.ema.trainableVariables.length !== o.model.trainableVariables.length) {
      throw new Error(`ema must be a model with the same ${o.model.trainableVariables.length} variables as model`);
    }
  }
  if (o.rngState !== undefined) {
    const r = o.rngState;
    if (!r || !Array.isArray(r.rng) || r.rng.length !== 5) throw new Error('rngState.rng must be an Rng state (5 numbers)');
    if (!(r.samplerOrder instanceof Int32Array) || r.samplerOrder.length !== o.data.shape[0]) {
      throw new Error(`rngState.samplerOrder must be an Int32Array of length ${o.data.shape[0]} (the data's size), got ${r.samplerOrder?.length}`);
    }
    checkInteger('rngState.samplerPos', r.samplerPos, 0, o.data.shape[0]);
  }
  if (o.workers !== undefined) {
    checkInteger('workers', o.workers, 1, 64);
    if (o.workers > 1 && !PARALLEL_BACKENDS.includes(tf.getBackend())) {
      throw new Error(`workers (${o.workers}) > 1 needs one of the backends ${PARALLEL_BACKENDS.join(', ')}, where a thread adds arithmetic; the backend is '${tf.getBackend()}'`);
    }
  }
  checkLabels(o);
  await checkFiniteTensorAsync('data', o.data);
  // A model that rejects the data's shape must fail here, outside tf.variableGrads, whose tape would
  // keep the tensors it saved for the backward pass (12 for a small MLP) when the model throws inside
  // a training step. A model that states its input shape is compared without running it; any other
  // gets one forward pass on one example.
  const inputShape = (o.model as { inputShape?: unknown }).inputShape;
  if (Array.isArray(inputShape)) {
    const got = o.data.shape.slice(1);
    if (got.length !== inputShape.length || got.some((d, i) => d !== inputShape[i])) {
      throw new Error(`data of shape [${o.data.shape}] does not fit the model: xt must have shape [batch, ${inputShape.join(', ')}]`);
    }
    return;
  }
  try {
    tf.tidy(() => {
      o.model.predictEps(tf.slice(o.data, 0, 1), tf.tensor1d([1], 'int32'));
    });
  } catch (e) {
    throw new Error(`data of shape [${o.data.shape}] does not fit the model: ${(e as Error).message}`);
  }
}

/** labels and pUncond against the model and the data: labels exactly for a conditional model, one real class per example. */
function checkLabels(o: TrainOptions): void {
  const conditional = isConditional(o.model);
  if (o.labels === undefined) {
    if (conditional) {
      const m = o.model as unknown as ConditionalDenoiser;
      throw new Error(`model is conditional (numClasses ${m.numClasses}): pass labels (an Int32Array with one class in [0, ${m.numClasses - 1}] per example of data) to train it`);
    }
    if (o.pUncond !== undefined) throw new Error(`pUncond (${String(o.pUncond)}) needs labels and a conditional model; this run trains without labels`);
    return;
  }
  if (!conditional) {
    const n = (o.model as { numClasses?: unknown }).numClasses;
    throw new Error(`labels need a conditional model (numClasses >= 1, e.g. new UNetDenoiser({ numClasses: 10 })), got an unconditional model (numClasses ${n ?? 'unset'})`);
  }
  const { numClasses } = o.model as unknown as ConditionalDenoiser;
  if (!(o.labels instanceof Int32Array)) throw new Error(`labels must be an Int32Array of classes, got ${Object.prototype.toString.call(o.labels)}`);
  if (o.labels.length !== o.data.shape[0]) {
    throw new Error(`labels must hold one class per example of data (${o.data.shape[0]}), got ${o.labels.length}`);
  }
  for (let i = 0; i < o.labels.length; i++) {
    const c = o.labels[i];
    if (c < 0 || c >= numClasses) throw new Error(`labels[${i}] must be a class in [0, ${numClasses - 1}] (the model has ${numClasses} classes), got ${c}`);
  }
  if (o.pUncond !== undefined) checkNumber('pUncond', o.pUncond, 0, 1);
}

/** The labels of one batch (gathered with its indices), each dropped to the null class with probability pUncond. */
function batchLabels(labels: Int32Array, idx: Int32Array, numClasses: number, pUncond: number, rng: Rng): Int32Array {
  const gathered = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) gathered[i] = labels[idx[i]];
  return dropClassLabels(gathered, numClasses, pUncond, rng);
}

/** Batch indices: the data reshuffled every epoch (without replacement within an epoch), seeded. */
export class BatchSampler {
  private order: Int32Array;
  private pos: number;

  constructor(private readonly n: number, private readonly rng: Rng) {
    this.order = new Int32Array(n);
    this.pos = n;
  }

  /** The current epoch order and position, for checkpoints. */
  getState(): { order: Int32Array; pos: number } {
    return { order: this.order.slice(), pos: this.pos };
  }

  setState(state: { order: Int32Array; pos: number }): void {
    if (state.order.length !== this.n) throw new Error(`BatchSampler state must have ${this.n} indices, got ${state.order.length}`);
    if (!Number.isInteger(state.pos) || state.pos < 0 || state.pos > this.n) throw new Error(`BatchSampler position must be in [0, ${this.n}], got ${state.pos}`);
    for (const i of state.order) {
      if (!Number.isInteger(i) || i < 0 || i >= this.n) throw new Error(`BatchSampler state holds index ${i} outside [0, ${this.n - 1}]`);
    }
    this.order = state.order.slice();
    this.pos = state.pos;
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

/**
 * The training objective of one batch (or a slice of one): x0 and eps [n, ...], the timesteps, and
 * for a conditional model the classes (null class included). Every loss calls the model through
 * predictEps(xt, t) (the vlb and hybrid ones once, as the simple one); for a conditional model a
 * view of it gives each of those calls the batch's classes. Call inside tf.variableGrads.
 */
export function batchLoss(model: Denoiser, s: Schedule, lossType: LossType, x0: tf.Tensor, eps: tf.Tensor, tValues: Int32Array, cValues: Int32Array | null): tf.Scalar {
  return tf.tidy(() => {
    let net: Denoiser = model;
    if (cValues) {
      const c = tf.tensor1d(cValues, 'int32');
      const m = model as unknown as ConditionalDenoiser;
      net = { predictEps: (xt, tt) => m.predictEps(xt, tt, c) };
    }
    if (lossType === 'vlb') return vlbLossUnchecked(net, s, x0, tValues, eps);
    if (lossType === 'minsnr') return minSnrLossUnchecked(net, s, x0, tValues, eps);
    const t = tf.tensor1d(tValues, 'int32');
    if (lossType === 'simple') return simpleLossUnchecked(net, s, x0, t, eps);
    return hybridLossUnchecked(net, s, x0, t, tValues, eps);
  });
}

/**
 * Whether `opt` is a FusedAdam, by its constructor: tf.Optimizer's Symbol.hasInstance makes any
 * optimizer `instanceof FusedAdam`. Only FusedAdam's rate can be moved (tf.train's optimizers keep
 * theirs in cached scalars).
 */
function isFusedAdam(opt: tf.Optimizer): opt is FusedAdam {
  return opt.constructor === FusedAdam;
}

/** The optimizer train() uses unless given one: Adam with this learning rate. Resuming a run makes its optimizer here too. */
export function createOptimizer(lr: number): tf.Optimizer {
  return new FusedAdam(lr);
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
 * from `seed` (and, for a resumed run, `rngState` and the step number), so a run stopped at step N and
 * resumed from its checkpoint equals an uninterrupted one bit for bit on the same backend. Reads the
 * losses back (asynchronously, so it works on every backend) only every `progressEvery` steps and
 * before each checkpoint, so the device is not stalled each step. Stops with an Error naming the
 * step if a loss is NaN or infinite (unless skipNonFinite).
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  await checkTrainOptions(o);
  const { model, schedule: s, data, steps, batchSize } = o;
  const seed = o.seed ?? 0;
  const labels = o.labels ?? null;
  const numClasses = labels ? (model as unknown as ConditionalDenoiser).numClasses : 0;
  const pUncond = o.pUncond ?? 0.1;
  const lossType = o.loss ?? 'simple';
  const first = o.initialStep ?? 0;
  const every = o.progressEvery ?? Math.max(1, Math.round((steps - first) / 50));
  const rng = new Rng(deriveSeed(seed, 0x7a1));
  const sampler = new BatchSampler(data.shape[0], rng);
  if (o.rngState) {
    rng.setState(o.rngState.rng);
    sampler.setState({ order: o.rngState.samplerOrder, pos: o.rngState.samplerPos });
  }
  const optimizer = o.optimizer ?? createOptimizer(o.lr ?? 1e-3);
  const lrSchedule: LrSchedule = o.lrSchedule ?? 'constant';
  const baseLr = o.lr ?? (isFusedAdam(optimizer) ? optimizer.learningRate : 1e-3);
  // A caller's optimizer gets its own rate back when the run ends: the schedule moves it step by step.
  const lrBefore = isFusedAdam(optimizer) ? optimizer.learningRate : undefined;
  const vars = model.trainableVariables;
  const ema = o.ema ?? (o.emaDecay !== undefined ? model.clone() : null);
  const losses = new Float32Array(steps - first);
  const pending: tf.Scalar[] = [];
  const started = Date.now();
  let reported = first;
  let skipped = o.initialSkipped ?? 0;
  let done = first;
  let stopped = false;
  const threads = Math.min(o.workers ?? 1, batchSize);
  let pool: GradientWorkers | null = null;

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
      losses[at - first] = values[i];
    }
    report(step);
  };
  const report = (step: number) => {
    const window = losses.subarray(reported - first, step - first).filter(Number.isFinite);
    const mean = window.reduce((a, b) => a + b, 0) / window.length;
    reported = step;
    const elapsed = (Date.now() - started) / 1000;
    o.onProgress?.({ step, steps, loss: mean, stepsPerSecond: (step - first) / Math.max(elapsed, 1e-9), elapsedSeconds: elapsed });
  };
  const checkpoint = async (step: number) => {
    const state = sampler.getState();
    const rngState: TrainRngState = { rng: rng.getState(), samplerOrder: state.order, samplerPos: state.pos };
    await o.onCheckpoint?.({ step, model, ema, optimizer, rngState, losses: losses.slice(0, step - first), skipped });
  };
  const emaUpdate = (step: number) => {
    if (!ema) return;
    const d = o.emaWarmup ? Math.min(o.emaDecay as number, (1 + step) / (10 + step)) : (o.emaDecay as number);
    ema.trainableVariables.forEach((e, i) => e.assign(e.mul(d).add(vars[i].mul(1 - d))));
  };

  try {
    if (threads > 1) pool = await GradientWorkers.start(threads, model, s, lossType);
    for (let step = first + 1; step <= steps; step++) {
      const idx = sampler.next(batchSize);
      const tValues = drawTimesteps(s.T, batchSize, rng);
      const noiseSeed = deriveSeed(seed, 0xe95, step);
      // The drops come from a stream of (seed, step) alone, not from `rng`, so that a resumed run
      // draws the same ones with no new checkpoint state.
      const cValues = labels ? batchLabels(labels, idx, numClasses, pUncond, new Rng(deriveSeed(seed, 0xc1a55, step))) : null;
      const clip = (r: { value: tf.Scalar; grads: tf.NamedTensorMap }) => {
        if (o.gradClip === undefined) return r;
        const clipped = clipByGlobalNorm(r.grads, o.gradClip);
        tf.dispose(r.grads);
        return { value: r.value, grads: clipped };
      };
      let value: tf.Scalar;
      let grads: tf.NamedTensorMap;
      if (!pool) {
        ({ value, grads } = clip(
          tf.tidy(() => {
            const x0 = tf.gather(data, tf.tensor1d(idx, 'int32'));
            const eps = tf.randomNormal(x0.shape, 0, 1, 'float32', noiseSeed);
            return tf.variableGrads(() => batchLoss(model, s, lossType, x0, eps, tValues, cValues), vars);
          }),
        ));
      } else {
        // The same draws as one thread; the batch split into slices, the first one computed here.
        const sizes = sliceSizes(batchSize, pool.threads);
        const [x0, eps] = tf.tidy(() => {
          const x = tf.gather(data, tf.tensor1d(idx, 'int32'));
          return [x, tf.randomNormal(x.shape, 0, 1, 'float32', noiseSeed)];
        });
        const rowSize = x0.size / batchSize;
        const x0All = x0.dataSync() as Float32Array;
        const epsAll = eps.dataSync() as Float32Array;
        const slices: SliceData[] = [];
        for (let k = 1, start = sizes[0]; k < sizes.length; start += sizes[k], k++) {
          const end = start + sizes[k];
          slices.push({
            x0: x0All.slice(start * rowSize, end * rowSize),
            eps: epsAll.slice(start * rowSize, end * rowSize),
            t: tValues.slice(start, end),
            c: cValues ? cValues.slice(start, end) : null,
            shape: [sizes[k], ...x0.shape.slice(1)],
          });
        }
        const replies = pool.compute(flatten(vars), slices);
        let mine: { value: tf.Scalar; grads: tf.NamedTensorMap } | null = null;
        try {
          mine = tf.tidy(() => {
            const n0 = sizes[0];
            const x = tf.slice(x0, 0, n0);
            const e = tf.slice(eps, 0, n0);
            return tf.variableGrads(() => batchLoss(model, s, lossType, x, e, tValues.slice(0, n0), cValues ? cValues.slice(0, n0) : null), vars);
          });
        } finally {
          tf.dispose([x0, eps]);
          if (!mine) await replies.catch(() => undefined);
        }
        const theirs = await replies.catch((err) => {
          tf.dispose([mine!.value, ...Object.values(mine!.grads)]);
          throw err;
        });
        const own = mine;
        // The batch's mean loss and its gradient: the slices' means weighted by their sizes.
        ({ value, grads } = clip(
          tf.tidy(() => {
            const w0 = sizes[0] / batchSize;
            let loss = own.value.mul(w0);
            for (let k = 0; k < theirs.length; k++) loss = loss.add(theirs[k].loss * (sizes[k + 1] / batchSize));
            const out: tf.NamedTensorMap = {};
            let at = 0;
            for (const v of vars) {
              let g = own.grads[v.name].mul(w0);
              for (let k = 0; k < theirs.length; k++) {
                g = g.add(tf.tensor(theirs[k].grads.subarray(at, at + v.size), v.shape, 'float32').mul(sizes[k + 1] / batchSize));
              }
              out[v.name] = g;
              at += v.size;
            }
            return { value: loss as tf.Scalar, grads: out };
          }),
        ));
        tf.dispose([own.value, ...Object.values(own.grads)]);
      }
      let apply = true;
      if (o.skipNonFinite) {
        // One read of the loss and the squared gradient norm decides, before any weight moves.
        const check = tf.tidy(() => tf.stack([value, sumTensors(Object.values(grads).map((g) => tf.sum(tf.square(g))))]));
        const read = (await check.data()) as Float32Array;
        check.dispose();
        apply = Number.isFinite(read[0]) && Number.isFinite(read[1]);
        if (!apply) skipped++;
        losses[step - first - 1] = apply ? read[0] : NaN;
      }
      if (apply) {
        if (lrSchedule !== 'constant' && isFusedAdam(optimizer)) optimizer.learningRate = lrAt(lrSchedule, baseLr, step, steps);
        tf.tidy(() => {
          optimizer.applyGradients(Object.keys(grads).map((name) => ({ name, tensor: grads[name] })));
          emaUpdate(step);
        });
      }
      tf.dispose(grads);
      if (o.skipNonFinite) value.dispose();
      else pending.push(value);
      done = step;
      const atCheckpoint = o.checkpointEvery !== undefined && step % o.checkpointEvery === 0;
      if (step % every === 0 || step === steps || o.signal?.aborted || atCheckpoint) {
        if (o.skipNonFinite) report(step);
        else await flush(step);
      }
      // Checked after the progress report, which may itself be where the stop was asked for.
      stopped = o.signal?.aborted === true && step < steps;
      if (o.onCheckpoint && (atCheckpoint || step === steps || stopped)) await checkpoint(step);
      if (stopped) break;
      // The loop's awaits (reads, checkpoints) settle as microtasks; a signal handler (SIGINT) runs
      // only if the loop yields to the event loop, so it does after every step, checkpoint or not
      // (with a checkpoint every step it never did, and SIGINT went unanswered).
      if (o.signal) await new Promise((resolve) => setImmediate(resolve));
    }
  } catch (e) {
    pending.forEach((l) => l.dispose());
    if (!o.ema) ema?.dispose();
    throw e;
  } finally {
    if (!o.optimizer) optimizer.dispose();
    else if (lrBefore !== undefined && isFusedAdam(optimizer)) optimizer.learningRate = lrBefore;
    await pool?.dispose();
  }
  return { losses: losses.slice(0, done - first), ema, seconds: (Date.now() - started) / 1000, step: done, stopped, skipped };
}
