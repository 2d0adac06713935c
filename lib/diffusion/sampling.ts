/**
 * Generation: the text's DDPM algorithm and DDIM, docs/equations.md#generation and
 * docs/equations.md#ddim. Notebook: 06_generation.
 */
import * as tf from '@tensorflow/tfjs';
import type { Denoiser } from './denoiser';
import { deriveSeed } from './random';
import { ReverseOptions, checkReverseVariance, pMeanVarianceFromEpsUnchecked } from './reverse';
import { predictEpsFromX0Unchecked, predictX0FromEpsUnchecked } from './posterior';
import { Schedule } from './schedule';
import { checkFiniteTensor, checkFiniteTensorAsync, checkInteger, checkNumber, checkRank, checkSameShape } from './validate';

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

/** The noise z of one step: the caller's, or the seeded draw of timestep t (the samplers' default). */
interface StepNoise {
  /** z ~ N(0, I) with the shape of x_t; default: drawn with noiseSeed(seed, t). */
  z?: tf.Tensor;
  /** Seed of the default draw; default 0. */
  seed?: number;
}

function stepNoise(shape: number[], t: number, opts: StepNoise): tf.Tensor {
  return opts.z ?? tf.randomNormal(shape, 0, 1, 'float32', noiseSeed(opts.seed ?? 0, t));
}

/** Checks a step function's own arguments: t, x_t, eps_theta and z (one synchronous read each). */
function checkStepArgs(s: Schedule, xt: tf.Tensor, t: number, epsTheta: tf.Tensor, opts: StepNoise): void {
  if (!(s instanceof Schedule)) throw new Error(`s must be a Schedule, got ${String(s)}`);
  checkInteger('t', t, 1, s.T);
  if (!(xt instanceof tf.Tensor)) throw new Error(`xt must be a tensor, got ${String(xt)}`);
  if (!(epsTheta instanceof tf.Tensor)) throw new Error(`epsTheta must be a tensor, got ${String(epsTheta)}`);
  checkRank('xt', xt, 1);
  checkSameShape('xt', xt, 'epsTheta', epsTheta);
  checkFiniteTensor('xt', xt);
  checkFiniteTensor('epsTheta', epsTheta);
  if (opts.seed !== undefined) checkNumber('seed', opts.seed, -(2 ** 53), 2 ** 53);
  if (opts.z !== undefined) {
    if (!(opts.z instanceof tf.Tensor)) throw new Error(`z must be a tensor, got ${String(opts.z)}`);
    checkSameShape('xt', xt, 'z', opts.z);
    checkFiniteTensor('z', opts.z);
  }
}

/** Options of one step of the text's sampler. */
export interface DDPMStepOptions extends ReverseOptions, StepNoise {}

/** ddpmStep without checks (the sampling loop's inner step). */
export function ddpmStepUnchecked(s: Schedule, xt: tf.Tensor, t: number, epsTheta: tf.Tensor, opts: DDPMStepOptions = {}): tf.Tensor {
  return tf.tidy(() => {
    const p = pMeanVarianceFromEpsUnchecked(s, xt, t, epsTheta, opts);
    if (t === 1) return p.mean; // the text: z = 0 at t = 1, x_0 is the mean
    return p.mean.add(p.variance.sqrt().mul(stepNoise(xt.shape, t, opts)));
  });
}

/**
 * One step of the text's generation algorithm, given eps_theta(x_t, t) (the model's output):
 * x_{t-1} = (1/sqrt(alpha_t))(x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps_theta) + sigma_t z, z = 0 at
 * t = 1; sigma_t^2 as opts.variance says (default sigma_q(t)^2), clipX0 as in pMeanVariance.
 */
export function ddpmStep(s: Schedule, xt: tf.Tensor, t: number, epsTheta: tf.Tensor, opts: DDPMStepOptions = {}): tf.Tensor {
  checkStepArgs(s, xt, t, epsTheta, opts);
  if (opts.variance !== undefined) checkReverseVariance(opts.variance);
  return ddpmStepUnchecked(s, xt, t, epsTheta, opts);
}

/** Options of one DDIM step. */
export interface DDIMStepOptions extends StepNoise {
  /** 0 deterministic (default), 1 the DDPM posterior's variance; at most ddimEtaMax. */
  eta?: number;
  /** Clip the implied x0 to [-1, 1], eps_theta recomputed from it; default false. */
  clipX0?: boolean;
}

/** s_t^2 = eta^2 (1 - abar_{t'})/(1 - abar_t) (1 - abar_t/abar_{t'}), the variance of a DDIM step t -> t'. */
export function ddimSigma2(s: Schedule, t: number, tPrev: number, eta: number): number {
  const oneMinusAbarPrev = tPrev === 0 ? 0 : s.oneMinusAlphaBars[tPrev];
  return eta ** 2 * (oneMinusAbarPrev / s.oneMinusAlphaBars[t]) * (1 - s.alphaBars[t] / s.alphaBars[tPrev]);
}

/**
 * The largest eta for which every DDIM step over `timesteps` (ascending, the last step going to 0)
 * keeps s_t^2 <= 1 - abar_{t'}: min over the steps with t' > 0 of sqrt((1 - abar_t)/(1 - abar_t/abar_{t'})),
 * which is >= 1 for every schedule; Infinity when no step has t' > 0.
 */
export function ddimEtaMax(s: Schedule, timesteps: number[]): number {
  return ddimEtaLimit(s, timesteps).etaMax;
}

function ddimEtaLimit(s: Schedule, timesteps: number[]): { etaMax: number; t: number; tPrev: number } {
  let best = { etaMax: Infinity, t: 0, tPrev: 0 };
  for (let i = 1; i < timesteps.length; i++) {
    const [tPrev, t] = [timesteps[i - 1], timesteps[i]];
    const etaMax = Math.sqrt(s.oneMinusAlphaBars[t] / (1 - s.alphaBars[t] / s.alphaBars[tPrev]));
    if (etaMax < best.etaMax) best = { etaMax, t, tPrev };
  }
  return best;
}

/** Refuses an eta that some step cannot take (sqrt(1 - abar_{t'} - s_t^2) of a negative), before any work. */
function checkEta(s: Schedule, timesteps: number[], eta: number): void {
  checkNumber('eta', eta, 0, Infinity, { hi: true });
  const limit = ddimEtaLimit(s, timesteps);
  // 1e-9: the float64 rounding of etaMax itself; the step clamps 1 - abar_{t'} - s_t^2 at 0.
  if (eta > limit.etaMax * (1 + 1e-9)) {
    throw new Error(
      `eta must be in [0, ${limit.etaMax}] for these ${timesteps.length} DDIM timesteps (above it ` +
        `1 - abar_{t'} - s_t^2 < 0, first at t = ${limit.t} -> t' = ${limit.tPrev}), got ${eta}`,
    );
  }
}

/** ddimStep without checks (the sampling loop's inner step). */
export function ddimStepUnchecked(
  s: Schedule,
  xt: tf.Tensor,
  t: number,
  tPrev: number,
  epsTheta: tf.Tensor,
  opts: DDIMStepOptions = {},
): tf.Tensor {
  const abarPrev = s.alphaBars[tPrev];
  const oneMinusAbarPrev = tPrev === 0 ? 0 : s.oneMinusAlphaBars[tPrev];
  const sigma2 = ddimSigma2(s, t, tPrev, opts.eta ?? 0);
  return tf.tidy(() => {
    let x0 = predictX0FromEpsUnchecked(s, xt, t, epsTheta);
    let epsUsed = epsTheta;
    if (opts.clipX0) {
      x0 = tf.clipByValue(x0, -1, 1);
      // eps consistent with the clipped x0 keeps x_{t'} on the DDIM path (as improved-diffusion does)
      epsUsed = predictEpsFromX0Unchecked(s, xt, t, x0);
    }
    let out = x0.mul(Math.sqrt(abarPrev)).add(epsUsed.mul(Math.sqrt(Math.max(oneMinusAbarPrev - sigma2, 0))));
    if (sigma2 > 0) out = out.add(stepNoise(xt.shape, t, opts).mul(Math.sqrt(sigma2)));
    return out;
  });
}

/**
 * One DDIM step t -> t' (Song et al. 2020), given eps_theta(x_t, t): x0_hat = (x_t - sqrt(1 - abar_t) eps_theta)/sqrt(abar_t),
 * x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - s^2) eps_theta + s z, s^2 = ddimSigma2(s, t, t', eta).
 */
export function ddimStep(
  s: Schedule,
  xt: tf.Tensor,
  t: number,
  tPrev: number,
  epsTheta: tf.Tensor,
  opts: DDIMStepOptions = {},
): tf.Tensor {
  checkStepArgs(s, xt, t, epsTheta, opts);
  checkInteger('tPrev', tPrev, 0, t - 1);
  checkEta(s, tPrev === 0 ? [t] : [tPrev, t], opts.eta ?? 0);
  return ddimStepUnchecked(s, xt, t, tPrev, epsTheta, opts);
}

/**
 * One reverse step of a sampler: x_{t'} from x_t and eps_theta(x_t, t) (t' = 0 after the last step).
 * It returns a new tensor and disposes none of its inputs.
 */
export type SamplerStep = (xt: tf.Tensor, t: number, tPrev: number, epsTheta: tf.Tensor) => tf.Tensor;

function checkTimesteps(s: Schedule, timesteps: number[]): void {
  if (!Array.isArray(timesteps) || timesteps.length < 1) {
    throw new Error(`timesteps must be a non-empty ascending array of integers in [1, ${s.T}], got ${String(timesteps)}`);
  }
  timesteps.forEach((t, i) => checkInteger(`timesteps[${i}]`, t, i === 0 ? 1 : timesteps[i - 1] + 1, s.T));
}

/** The loop without checks: from x_T down the timesteps, one model call and one step each. */
async function runLoop(model: Denoiser, s: Schedule, shape: number[], timesteps: number[], step: SamplerStep, opts: SampleOptions): Promise<SampleResult> {
  let x = initialNoise(shape, opts, s.T);
  try {
    const recorder = new TrajectoryRecorder(opts.trajectoryEvery, opts.trajectoryAt);
    await recorder.start(timesteps[timesteps.length - 1], x);
    for (let i = timesteps.length - 1; i >= 0; i--) {
      const t = timesteps[i];
      const tPrev = i > 0 ? timesteps[i - 1] : 0;
      const xt = x;
      const next = tf.tidy(() => step(xt, t, tPrev, model.predictEps(xt, t)));
      if (next !== xt) xt.dispose(); // a step that hands x_t back unchanged keeps it alive
      x = next;
      const done = timesteps.length - i;
      await recorder.step(done, tPrev, i === 0, x);
      await opts.onStep?.({ t: tPrev, step: done, steps: timesteps.length, x });
    }
    return { x0: x, trajectory: recorder.points };
  } catch (e) {
    x.dispose(); // a model or callback that throws leaves nothing behind
    throw e;
  }
}

/**
 * The sampling loop both samplers share: x_T ~ N(0, I) (or opts.xT), then for the ascending
 * `timesteps` from the last down, x_{t'} = step(x_t, t, t', eps_theta(x_t, t)), with the
 * trajectory and onStep of SampleOptions. sampleDDPM is it with ddpmStep over 1..T, sampleDDIM with ddimStep.
 */
export async function sampleLoop(
  model: Denoiser,
  s: Schedule,
  shape: number[],
  timesteps: number[],
  step: SamplerStep,
  opts: SampleOptions = {},
): Promise<SampleResult> {
  await checkSampleArgs(shape, opts);
  checkTimesteps(s, timesteps);
  if (typeof step !== 'function') throw new Error(`step must be a function (xt, t, tPrev, epsTheta) => tensor, got ${String(step)}`);
  return runLoop(model, s, shape, timesteps, step, opts);
}

/**
 * The text's generation algorithm: x_T ~ N(0, I); for t = T..1, z ~ N(0, I) (z = 0 at t = 1),
 * x_{t-1} = (1/sqrt(alpha_t))(x_t - (1 - alpha_t)/sqrt(1 - abar_t) eps_theta(x_t, t)) + sigma_t z,
 * with sigma_t = sigma_q(t) by default (opts.variance picks another). Batched: all samples at once.
 * Asynchronous because recording a trajectory reads from the device, which webgpu allows only so.
 */
export async function sampleDDPM(model: Denoiser, s: Schedule, shape: number[], opts: SampleOptions = {}): Promise<SampleResult> {
  await checkSampleArgs(shape, opts);
  const stepOpts: DDPMStepOptions = { variance: opts.variance, clipX0: opts.clipX0, seed: opts.seed ?? 0 };
  const timesteps = Array.from({ length: s.T }, (_, i) => i + 1);
  return runLoop(model, s, shape, timesteps, (xt, t, _tPrev, eps) => ddpmStepUnchecked(s, xt, t, eps, stepOpts), opts);
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
 * An eta above ddimEtaMax for these timesteps is refused before any work.
 */
export async function sampleDDIM(model: Denoiser, s: Schedule, shape: number[], opts: DDIMOptions = {}): Promise<SampleResult> {
  await checkSampleArgs(shape, opts);
  const steps = opts.steps ?? Math.min(50, s.T);
  const eta = opts.eta ?? 0;
  checkInteger('steps', steps, 1, s.T);
  checkNumber('eta', eta, 0, Infinity, { hi: true });
  if (opts.variance !== undefined) throw new Error('variance is not an option of sampleDDIM: eta sets the noise');
  const taus = ddimTimesteps(s.T, steps);
  checkEta(s, taus, eta);
  const stepOpts: DDIMStepOptions = { eta, clipX0: opts.clipX0, seed: opts.seed ?? 0 };
  return runLoop(model, s, shape, taus, (xt, t, tPrev, eps) => ddimStepUnchecked(s, xt, t, tPrev, eps, stepOpts), opts);
}
