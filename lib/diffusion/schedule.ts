/**
 * Noise schedules: beta_t for t = 1..T and every constant derived from it (docs/equations.md#notation,
 * docs/equations.md#forward-process and docs/equations.md#posterior). All arrays are float64 and
 * indexed by t, with index 0 standing for the data (alpha_0 = abar_0 = 1, beta_0 = 0). They are
 * computed once here, in float64, and cast to float32 only when a tensor is built from them.
 * Notebook: 01_forward_diffusion.
 */
import * as tf from '@tensorflow/tfjs';
import { canReadSync, checkFiniteArray, checkInteger, checkNumber } from './validate';

/** How a schedule was made, enough to rebuild it (for checkpoints and notebook captions). */
export type ScheduleConfig =
  | { kind: 'linear'; T: number; betaStart: number; betaEnd: number }
  | { kind: 'cosine'; T: number; s: number; maxBeta: number }
  | { kind: 'constant'; T: number; beta: number }
  | { kind: 'betas'; T: number };

/** A noise schedule with its derived constants; every array has length T + 1, index 0 = the data. */
export class Schedule {
  readonly T: number;
  /** beta_t, the variance of the noise added at step t (beta_0 = 0). */
  readonly betas: Float64Array;
  /** alpha_t = 1 - beta_t. */
  readonly alphas: Float64Array;
  /** abar_t = prod_{s<=t} alpha_s, abar_0 = 1. */
  readonly alphaBars: Float64Array;
  /** 1 - abar_t, the variance of q(x_t|x_0), computed without cancellation. */
  readonly oneMinusAlphaBars: Float64Array;
  /** sqrt(abar_t): the scale of x0 in q(x_t|x_0). */
  readonly sqrtAlphaBars: Float64Array;
  /** sqrt(1 - abar_t): the standard deviation of q(x_t|x_0). */
  readonly sqrtOneMinusAlphaBars: Float64Array;
  /** sigma_q(t)^2 = (1 - alpha_t)(1 - abar_{t-1}) / (1 - abar_t), the posterior variance; 0 at t = 1. */
  readonly sigmaQ2: Float64Array;
  /**
   * log sigma_q(t)^2 with t = 1 given sigma_q(2)^2 (beta_1 when T = 1): the true value at t = 1 is
   * log 0, and a decoder or a KL needs a finite variance there (improved-diffusion does the same).
   */
  readonly sigmaQ2LogClipped: Float64Array;
  /** Coefficient of x0 in mu_q: sqrt(abar_{t-1}) beta_t / (1 - abar_t). */
  readonly posteriorMeanCoefX0: Float64Array;
  /** Coefficient of x_t in mu_q: sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t). */
  readonly posteriorMeanCoefXt: Float64Array;
  /** sqrt(alpha_t), the scale of x_{t-1} in q(x_t|x_{t-1}). */
  readonly sqrtAlphas: Float64Array;
  /** log beta_t (the log-variance of the 'beta' reverse-variance choice; -Infinity at t = 0). */
  readonly logBetas: Float64Array;
  /** sqrt(beta_t), the standard deviation of q(x_t|x_{t-1}). */
  readonly sqrtBetas: Float64Array;
  /** log(1 - abar_t), the log-variance of q(x_t|x_0) (-Infinity at t = 0, never gathered there). */
  readonly logOneMinusAlphaBars: Float64Array;
  /** 1 / sqrt(abar_t), for x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t). */
  readonly recipSqrtAlphaBars: Float64Array;
  /** sqrt(1 / abar_t - 1) = sqrt(1 - abar_t) / sqrt(abar_t). */
  readonly sqrtRecipAlphaBarsMinusOne: Float64Array;
  /** 1 / sqrt(alpha_t), the outer factor of mu_theta. */
  readonly recipSqrtAlphas: Float64Array;
  /** (1 - alpha_t) / sqrt(1 - abar_t), the weight of eps_theta in mu_theta (0 at t = 0). */
  readonly epsCoef: Float64Array;
  readonly config: ScheduleConfig;

  constructor(betas: ArrayLike<number>, config?: ScheduleConfig) {
    const T = betas.length;
    checkInteger('T (number of betas)', T, 1);
    checkFiniteArray('betas', betas);
    for (let i = 0; i < T; i++) {
      if (!(betas[i] > 0 && betas[i] < 1)) {
        throw new Error(`betas[${i}] (beta_${i + 1}) must be in (0, 1), got ${betas[i]}`);
      }
    }
    this.T = T;
    this.config = config ?? { kind: 'betas', T };
    const n = T + 1;
    this.betas = new Float64Array(n);
    this.alphas = new Float64Array(n);
    this.alphaBars = new Float64Array(n);
    this.sqrtAlphaBars = new Float64Array(n);
    this.sqrtOneMinusAlphaBars = new Float64Array(n);
    this.oneMinusAlphaBars = new Float64Array(n);
    this.sigmaQ2 = new Float64Array(n);
    this.sigmaQ2LogClipped = new Float64Array(n);
    this.posteriorMeanCoefX0 = new Float64Array(n);
    this.posteriorMeanCoefXt = new Float64Array(n);
    this.sqrtAlphas = new Float64Array(n);
    this.sqrtBetas = new Float64Array(n);
    this.logBetas = new Float64Array(n);
    this.logOneMinusAlphaBars = new Float64Array(n);
    this.recipSqrtAlphaBars = new Float64Array(n);
    this.sqrtRecipAlphaBarsMinusOne = new Float64Array(n);
    this.recipSqrtAlphas = new Float64Array(n);
    this.epsCoef = new Float64Array(n);
    this.alphas[0] = 1;
    this.sqrtAlphas[0] = 1;
    this.recipSqrtAlphas[0] = 1;
    this.recipSqrtAlphaBars[0] = 1;
    this.logOneMinusAlphaBars[0] = -Infinity;
    this.logBetas[0] = -Infinity;
    this.alphaBars[0] = 1;
    this.sqrtAlphaBars[0] = 1;
    this.posteriorMeanCoefX0[0] = 1; // q(x_0 | x_0) is the point mass at x0
    // 1 - abar loses digits when the betas are tiny: -expm1(sum log alpha) keeps them.
    let logAbar = 0;
    let oneMinusAbarPrev = 0;
    for (let t = 1; t <= T; t++) {
      const beta = betas[t - 1];
      const alpha = 1 - beta;
      const abarPrev = this.alphaBars[t - 1];
      logAbar += Math.log1p(-beta);
      const oneMinusAbar = -Math.expm1(logAbar);
      this.betas[t] = beta;
      this.alphas[t] = alpha;
      this.alphaBars[t] = Math.exp(logAbar);
      this.sqrtAlphaBars[t] = Math.exp(logAbar / 2);
      this.sqrtOneMinusAlphaBars[t] = Math.sqrt(oneMinusAbar);
      this.oneMinusAlphaBars[t] = oneMinusAbar;
      this.sigmaQ2[t] = (beta * oneMinusAbarPrev) / oneMinusAbar;
      this.posteriorMeanCoefX0[t] = (Math.sqrt(abarPrev) * beta) / oneMinusAbar;
      this.posteriorMeanCoefXt[t] = (Math.sqrt(alpha) * oneMinusAbarPrev) / oneMinusAbar;
      this.sqrtAlphas[t] = Math.sqrt(alpha);
      this.sqrtBetas[t] = Math.sqrt(beta);
      this.logBetas[t] = Math.log(beta);
      this.logOneMinusAlphaBars[t] = Math.log(oneMinusAbar);
      this.recipSqrtAlphaBars[t] = Math.exp(-logAbar / 2);
      this.sqrtRecipAlphaBarsMinusOne[t] = Math.sqrt(Math.expm1(-logAbar));
      this.recipSqrtAlphas[t] = 1 / Math.sqrt(alpha);
      this.epsCoef[t] = beta / Math.sqrt(oneMinusAbar);
      oneMinusAbarPrev = oneMinusAbar;
    }
    for (let t = 1; t <= T; t++) {
      const v = t === 1 ? (T >= 2 ? this.sigmaQ2[2] : this.betas[1]) : this.sigmaQ2[t];
      this.sigmaQ2LogClipped[t] = Math.log(v);
    }
    this.sigmaQ2LogClipped[0] = this.sigmaQ2LogClipped[1];
  }

  /** Throws unless t is an integer timestep in [1, T]. */
  checkT(t: number, name = 't'): void {
    checkInteger(name, t, 1, this.T);
  }
}

/** The DDPM schedule: beta_t linear from betaStart (t = 1) to betaEnd (t = T) (Ho et al. 2020). */
export function linearSchedule(T: number, betaStart = 1e-4, betaEnd = 0.02): Schedule {
  checkInteger('T', T, 1);
  checkNumber('betaStart', betaStart, 0, 1, { lo: true, hi: true });
  checkNumber('betaEnd', betaEnd, 0, 1, { lo: true, hi: true });
  const betas = new Float64Array(T);
  for (let i = 0; i < T; i++) betas[i] = T === 1 ? betaStart : betaStart + ((betaEnd - betaStart) * i) / (T - 1);
  return new Schedule(betas, { kind: 'linear', T, betaStart, betaEnd });
}

/**
 * The cosine schedule (docs/equations.md#cosine-schedule; Nichol & Dhariwal 2021, eq. 17):
 * abar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2), beta_t = min(1 - abar(t)/abar(t-1), maxBeta).
 */
export function cosineSchedule(T: number, s = 0.008, maxBeta = 0.999): Schedule {
  checkInteger('T', T, 1);
  checkNumber('s', s, 0, Infinity, { lo: false, hi: true });
  checkNumber('maxBeta', maxBeta, 0, 1, { lo: true, hi: true });
  const f = (t: number) => Math.cos((((t / T + s) / (1 + s)) * Math.PI) / 2) ** 2;
  const betas = new Float64Array(T);
  for (let t = 1; t <= T; t++) betas[t - 1] = Math.min(1 - f(t) / f(t - 1), maxBeta);
  return new Schedule(betas, { kind: 'cosine', T, s, maxBeta });
}

/** beta_t = beta for every t (the text suggests beta = 0.001). */
export function constantSchedule(T: number, beta: number): Schedule {
  checkInteger('T', T, 1);
  checkNumber('beta', beta, 0, 1, { lo: true, hi: true });
  return new Schedule(new Float64Array(T).fill(beta), { kind: 'constant', T, beta });
}

/** A schedule from explicit betas (beta_1..beta_T, each in (0, 1)). */
export function scheduleFromBetas(betas: ArrayLike<number>): Schedule {
  if (betas == null || typeof betas.length !== 'number') throw new Error(`betas must be an array of numbers, got ${String(betas)}`);
  return new Schedule(Array.from(betas));
}

/** The schedules a run or a notebook asks for by name (improved-diffusion's get_named_beta_schedule). */
export type ScheduleName = 'linear' | 'cosine';
export const SCHEDULE_NAMES: readonly ScheduleName[] = ['linear', 'cosine'];

/**
 * The largest abar_T a named schedule may leave. Sampling starts from x_T ~ N(0, I); q(x_T | x_0) has
 * mean sqrt(abar_T) x_0, so above this the chain starts from a distribution the forward process never
 * reaches (at abar_T = 1e-2 the mean is still 0.1 x_0).
 */
export const MAX_TERMINAL_ALPHA_BAR = 1e-2;

/**
 * A schedule by name for any T. 'linear' is Ho et al.'s betas 1e-4..0.02 scaled by 1000 / T (so that
 * every T ends near noise, as improved-diffusion does), each capped at 0.999 so that no beta reaches 1
 * (below T = 20 the scaled end would exceed 1); 'cosine' is cosineSchedule(T). Throws, naming T and
 * abar_T, when the result leaves abar_T above MAX_TERMINAL_ALPHA_BAR.
 */
export function namedSchedule(name: ScheduleName, T: number): Schedule {
  if (!SCHEDULE_NAMES.includes(name)) throw new Error(`schedule must be one of ${SCHEDULE_NAMES.join(', ')}, got ${JSON.stringify(name)}`);
  checkInteger('T', T, 1);
  const scale = 1000 / T;
  const s = name === 'linear' ? linearSchedule(T, Math.min(1e-4 * scale, 0.999), Math.min(0.02 * scale, 0.999)) : cosineSchedule(T);
  checkReachesNoise(s, `the ${name} schedule`);
  return s;
}

/** Throws unless abar_T <= MAX_TERMINAL_ALPHA_BAR, naming the schedule, T and abar_T. */
export function checkReachesNoise(s: Schedule, what = 'the schedule'): void {
  const abarT = s.alphaBars[s.T];
  if (!(abarT <= MAX_TERMINAL_ALPHA_BAR)) {
    throw new Error(
      `${what} at T = ${s.T} leaves abar_T = ${abarT.toPrecision(3)}, above ${MAX_TERMINAL_ALPHA_BAR}: q(x_T | x_0) is far from the N(0, I) that sampling starts from (use a larger T)`,
    );
  }
}

const SCHEDULE_KINDS: readonly ScheduleConfig['kind'][] = ['linear', 'cosine', 'constant', 'betas'];

/** Rebuilds a schedule from its config (checkpoints store the config, not the arrays). */
export function scheduleFromConfig(config: ScheduleConfig, betas?: ArrayLike<number>): Schedule {
  if (config == null || typeof config !== 'object') throw new Error(`schedule config must be an object, got ${JSON.stringify(config)}`);
  if (!SCHEDULE_KINDS.includes(config.kind)) {
    throw new Error(`schedule config kind must be one of ${SCHEDULE_KINDS.join(', ')}, got ${JSON.stringify((config as { kind: unknown }).kind)}`);
  }
  switch (config.kind) {
    case 'linear':
      return linearSchedule(config.T, config.betaStart, config.betaEnd);
    case 'cosine':
      return cosineSchedule(config.T, config.s, config.maxBeta);
    case 'constant':
      return constantSchedule(config.T, config.beta);
    case 'betas':
      if (!betas) throw new Error('scheduleFromConfig: a "betas" config needs the betas array');
      return scheduleFromBetas(betas);
  }
}

/** A timestep: one t for the whole batch, or an int32 tensor of per-example t (shape [batch]). */
export type Timestep = number | tf.Tensor1D;

const float32Tables = new WeakMap<Float64Array, Float32Array>();

/** The float32 copy of a schedule array, cast once and kept beside it. */
function float32Table(values: Float64Array): Float32Array {
  let table = float32Tables.get(values);
  if (!table) {
    // Only index 0 (t = 0, the data) may hold a log 0; it is never gathered for t in [1, T].
    table = Float32Array.from(values, (v, i) => {
      if (!Number.isFinite(v) && i > 0) throw new Error(`schedule constant at t = ${i} is ${v}: a bug in Schedule`);
      return Number.isFinite(v) ? v : 0;
    });
    float32Tables.set(values, table);
  }
  return table;
}

/**
 * Gathers the per-timestep constant `values[t]` as a float32 tensor that broadcasts against a
 * batch of rank `rank` (shape [] for a number t, [batch, 1, ..., 1] for a tensor t). The one place
 * where schedule constants meet tensors; it does not check t (see checkTimestep).
 */
export function extract(values: Float64Array, t: Timestep, rank: number): tf.Tensor {
  return tf.tidy(() => {
    if (typeof t === 'number') return tf.scalar(values[t], 'float32');
    const table = tf.tensor1d(float32Table(values), 'float32');
    const shape = [t.shape[0], ...new Array(Math.max(rank - 1, 0)).fill(1)];
    return tf.gather(table, t).reshape(shape);
  });
}

/**
 * Throws unless t is a valid timestep for `s` and a batch of `batch` examples: a number in [1, T]
 * (or [lo, T]), or an int32 tensor of shape [batch] with every entry in range (one read back).
 */
export function checkTimestep(s: Schedule, t: Timestep, batch: number | null, lo = 1, name = 't'): void {
  if (typeof t === 'number') {
    checkInteger(name, t, lo, s.T);
    return;
  }
  if (!(t instanceof tf.Tensor)) throw new Error(`${name} must be a number or an int32 tensor, got ${String(t)}`);
  if (t.dtype !== 'int32') throw new Error(`${name} must be an int32 tensor, got dtype ${t.dtype}`);
  if (t.rank !== 1) throw new Error(`${name} must be a 1-D tensor of per-example timesteps, got shape [${t.shape}]`);
  if (batch !== null && t.shape[0] !== batch) {
    throw new Error(`${name} must have one timestep per example (shape [${batch}]), got shape [${t.shape}]`);
  }
  if (!canReadSync()) return; // webgpu under Node: values cannot be read here (see canReadSync)
  const v = t.dataSync();
  for (let i = 0; i < v.length; i++) {
    if (!(v[i] >= lo && v[i] <= s.T)) throw new Error(`${name}[${i}] must be an integer in [${lo}, ${s.T}], got ${v[i]}`);
  }
}
