/**
 * Generation: the text's DDPM algorithm and DDIM, docs/equations.md#generation and
 * docs/equations.md#ddim. Notebook: 06_generation.
 */
import * as tf from '@tensorflow/tfjs';
import type { Denoiser } from './denoiser';
import { deriveSeed } from './random';
import { ReverseOptions, checkReverseVariance, pMeanVarianceUnchecked } from './reverse';
import { predictEpsFromX0Unchecked, predictX0FromEpsUnchecked } from './posterior';
import { Schedule } from './schedule';
import { checkFiniteTensorAsync, checkInteger, checkNumber } from './validate';

/** One recorded state of a sampling run: x at timestep t (t = 0 is the generated data). */
export interface TrajectoryPoint {
  t: number;
  x: Float32Array;
}

/** What a sampler's onStep callback sees after each step; `x` is borrowed (do not dispose it). */
export interface StepInfo {
  /** The timestep just reached (x is x_t); 0 after the last step. */
  t: number;
  /** Steps done so far and in all. */
  step: number;
  steps: number;
  x: tf.Tensor;
}

/** Options common to both samplers. */
export interface SampleOptions extends ReverseOptions {
  /** Seed of every noise draw; default 0. The same seed gives the same samples on the same backend. */
  seed?: number;
  /** Start from this x_T instead of a draw from N(0, I) (it is not disposed). */
  xT?: tf.Tensor;
  /** Record x_t every this many steps (and at the first and last); default: no trajectory. */
  trajectoryEvery?: number;
  /** Record x_t at exactly these timesteps (T for the start, 0 for the result), besides trajectoryEvery's. */
  trajectoryAt?: number[];
  /** Called after every step, for progress displays; a returned promise is awaited. */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

/** A sampler's result: the samples (the caller disposes them) and the recorded trajectory. */
export interface SampleResult {
  x0: tf.Tensor;
  trajectory: TrajectoryPoint[];
}

/** The seed of the noise z drawn at timestep t (shared by DDPM and DDIM so that they can be compared). */
export function noiseSeed(seed: number, t: number): number {
  return deriveSeed(seed, 0x5a3d, t);
}

async function checkSampleArgs(shape: number[], opts: SampleOptions): Promise<void> {
  if (!Array.isArray(shape) || shape.length < 1) throw new Error(`shape must be a non-empty array [batch, ...], got ${String(shape)}`);
  shape.forEach((d, i) => checkInteger(`shape[${i}]`, d, 1));
  if (opts.seed !== undefined) checkNumber('seed', opts.seed, -(2 ** 53), 2 ** 53);
  if (opts.variance !== undefined) checkReverseVariance(opts.variance);
  if (opts.trajectoryEvery !== undefined) checkInteger('trajectoryEvery', opts.trajectoryEvery, 1);
  if (opts.trajectoryAt !== undefined) {
    if (!Array.isArray(opts.trajectoryAt)) throw new Error(`trajectoryAt must be an array of timesteps, got ${String(opts.trajectoryAt)}`);
    opts.trajectoryAt.forEach((t, i) => checkInteger(`trajectoryAt[${i}]`, t, 0));
  }
  if (opts.xT !== undefined) {
    if (opts.xT.shape.join(',') !== shape.join(',')) throw new Error(`xT must have shape [${shape}], got [${opts.xT.shape}]`);
    await checkFiniteTensorAsync('xT', opts.xT);
  }
}

/** Decides after each step whether x_t is kept in the trajectory (read asynchronously). */
class TrajectoryRecorder {
  readonly points: TrajectoryPoint[] = [];
  private readonly at: Set<number>;

  constructor(private readonly every: number | undefined, at: number[] | undefined) {
    this.at = new Set(at ?? []);
  }

  /** Records the start x_T if asked for. */
  async start(T: number, x: tf.Tensor): Promise<void> {
    if (this.every || this.at.has(T)) this.points.push({ t: T, x: (await x.data()) as Float32Array });
  }

  /** Called with the steps done so far, the timestep reached, and whether it is the last step. */
  async step(done: number, t: number, last: boolean, x: tf.Tensor): Promise<void> {
    if ((this.every && (done % this.every === 0 || last)) || this.at.has(t)) {
      this.points.push({ t, x: (await x.data()) as Float32Array });
    }
  }
}

function initialNoise(shape: number[], opts: SampleOptions, T: number): tf.Tensor {
  return opts.xT ? opts.xT.clone() : tf.randomNormal(shape, 0, 1, 'float32', noiseSeed(opts.seed ?? 0, T + 1));
}

/**
 * The text's generation algorithm: x_T ~ N(0, I); for t = T..1, z ~ N(0, I) (z = 0 at t = 1),
 * x_{t-1} = (1/sqrt(alpha_t))(x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps_theta(x_t, t)) + sigma_t z,
 * with sigma_t = sigma_q(t) by default (opts.variance picks another). Batched: all samples at once.
 * Asynchronous because recording a trajectory reads from the device, which webgpu allows only so.
 */
export async function sampleDDPM(model: Denoiser, s: Schedule, shape: number[], opts: SampleOptions = {}): Promise<SampleResult> {
  await checkSampleArgs(shape, opts);
  const seed = opts.seed ?? 0;
  let x = initialNoise(shape, opts, s.T);
  const recorder = new TrajectoryRecorder(opts.trajectoryEvery, opts.trajectoryAt);
  await recorder.start(s.T, x);
  for (let t = s.T; t >= 1; t--) {
    const next = tf.tidy(() => {
      const p = pMeanVarianceUnchecked(model, s, x, t, opts);
      if (t === 1) return p.mean; // the text: z = 0 at t = 1, x_0 is the mean
      const z = tf.randomNormal(shape, 0, 1, 'float32', noiseSeed(seed, t));
      return p.mean.add(p.variance.sqrt().mul(z));
    });
    x.dispose();
    x = next;
    const done = s.T - t + 1;
    await recorder.step(done, t - 1, t === 1, x);
    await opts.onStep?.({ t: t - 1, step: done, steps: s.T, x });
  }
  return { x0: x, trajectory: recorder.points };
}

/** DDIM options: the number of steps (a subsequence of 1..T) and eta (0 deterministic, 1 DDPM). */
export interface DDIMOptions extends SampleOptions {
  steps?: number;
  eta?: number;
}

/** The DDIM timesteps: `steps` integers spread evenly over [1, T], ascending, T always included. */
export function ddimTimesteps(T: number, steps: number): number[] {
  checkInteger('steps', steps, 1, T);
  const taus = new Set<number>();
  for (let i = 0; i < steps; i++) taus.add(steps === 1 ? T : Math.round(1 + ((T - 1) * i) / (steps - 1)));
  return [...taus].sort((a, b) => a - b);
}

/**
 * DDIM (Song et al. 2020): x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - s_t^2) eps_theta + s_t z
 * over a subsequence t -> t' of timesteps, s_t = eta sqrt((1 - abar_{t'})/(1 - abar_t)) sqrt(1 - abar_t/abar_{t'}).
 * With eta = 1 and steps = T it is the DDPM sampler; with eta = 0 it is deterministic given x_T.
 */
export async function sampleDDIM(model: Denoiser, s: Schedule, shape: number[], opts: DDIMOptions = {}): Promise<SampleResult> {
  await checkSampleArgs(shape, opts);
  const steps = opts.steps ?? Math.min(50, s.T);
  const eta = opts.eta ?? 0;
  checkInteger('steps', steps, 1, s.T);
  checkNumber('eta', eta, 0, Infinity, { hi: true });
  if (opts.variance !== undefined) throw new Error('variance is not an option of sampleDDIM: eta sets the noise');
  const seed = opts.seed ?? 0;
  const taus = ddimTimesteps(s.T, steps);
  let x = initialNoise(shape, opts, s.T);
  const recorder = new TrajectoryRecorder(opts.trajectoryEvery, opts.trajectoryAt);
  await recorder.start(s.T, x);
  for (let i = taus.length - 1; i >= 0; i--) {
    const t = taus[i];
    const tPrev = i > 0 ? taus[i - 1] : 0;
    const abar = s.alphaBars[t];
    const abarPrev = s.alphaBars[tPrev];
    const oneMinusAbarPrev = tPrev === 0 ? 0 : s.oneMinusAlphaBars[tPrev];
    const sigma2 = eta ** 2 * (oneMinusAbarPrev / s.oneMinusAlphaBars[t]) * (1 - abar / abarPrev);
    if (sigma2 > oneMinusAbarPrev * (1 + 1e-9) && tPrev > 0) {
      throw new Error(`eta must keep s_t^2 <= 1 - abar_{t'}; eta = ${eta} gives s_t^2 = ${sigma2} > ${oneMinusAbarPrev} at t = ${t}`);
    }
    const next = tf.tidy(() => {
      const eps = model.predictEps(x, t);
      let x0 = predictX0FromEpsUnchecked(s, x, t, eps);
      let epsUsed = eps;
      if (opts.clipX0) {
        x0 = tf.clipByValue(x0, -1, 1);
        // eps consistent with the clipped x0 keeps x_{t'} on the DDIM path (as improved-diffusion does)
        epsUsed = predictEpsFromX0Unchecked(s, x, t, x0);
      }
      let out = x0.mul(Math.sqrt(abarPrev)).add(epsUsed.mul(Math.sqrt(Math.max(oneMinusAbarPrev - sigma2, 0))));
      if (sigma2 > 0) out = out.add(tf.randomNormal(shape, 0, 1, 'float32', noiseSeed(seed, t)).mul(Math.sqrt(sigma2)));
      return out;
    });
    x.dispose();
    x = next;
    const done = taus.length - i;
    await recorder.step(done, tPrev, i === 0, x);
    await opts.onStep?.({ t: tPrev, step: done, steps: taus.length, x });
  }
  return { x0: x, trajectory: recorder.points };
}
