/**
 * Sample statistics the notebooks state their Monte Carlo claims with: means, variances and their
 * standard errors, in float64, whatever the samples' array type. Presentation and checking helpers
 * for the workbook, not diffusion maths.
 */

/** Throws unless xs is an array-like of at least `min` finite numbers, naming the function and the first bad entry. */
function checkSample(fn: string, xs: ArrayLike<number>, min: number): void {
  if (xs === null || typeof xs !== 'object' || typeof (xs as { length?: unknown }).length !== 'number') {
    throw new Error(`${fn}: xs must be an array or typed array of numbers, got ${xs === null ? 'null' : typeof xs}`);
  }
  if (xs.length < min) throw new Error(`${fn}: xs must hold at least ${min} value(s), got ${xs.length}`);
  for (let i = 0; i < xs.length; i++) {
    if (!Number.isFinite(xs[i])) throw new Error(`${fn}: xs[${i}] = ${xs[i]}; every value must be a finite number`);
  }
}

/** The arithmetic mean of at least one finite value, summed in float64. */
export function meanOf(xs: ArrayLike<number>): number {
  checkSample('meanOf', xs, 1);
  let sum = 0;
  for (let i = 0; i < xs.length; i++) sum += xs[i];
  return sum / xs.length;
}

/** The mean of a sample with its standard error se = sd / sqrt(n), sd the (n - 1) sample standard deviation. */
export interface MeanStdErr {
  mean: number;
  se: number;
  sd: number;
  n: number;
}

/** Mean, sample standard deviation (divide by n - 1) and standard error of the mean of n >= 2 finite values (float64, two passes). */
export function meanStdErr(xs: ArrayLike<number>): MeanStdErr {
  checkSample('meanStdErr', xs, 2);
  const n = xs.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += xs[i];
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (xs[i] - mean) ** 2;
  const sd = Math.sqrt(ss / (n - 1));
  return { mean, se: sd / Math.sqrt(n), sd, n };
}

/**
 * Mean ± standard error of the first and of the last tenth of a run's per-step losses (each at least
 * 10 steps, and the two halves of the run at most): the notebooks' "the loss falls" claim compares them.
 */
export function lossTenths(losses: ArrayLike<number>): { first: MeanStdErr; last: MeanStdErr; window: number } {
  checkSample('lossTenths', losses, 20);
  const n = losses.length;
  const window = Math.min(Math.floor(n / 2), Math.max(10, Math.round(n / 10)));
  const part = (from: number) => Array.from({ length: window }, (_, i) => losses[from + i]);
  return { first: meanStdErr(part(0)), last: meanStdErr(part(n - window)), window };
}

/**
 * The (n - 1) sample variance and its standard error from the fourth central moment,
 * se = sqrt((m4 - m2^2) / n) with m_k the k-th central sample moment (the large-n form).
 */
export function varianceStdErr(xs: ArrayLike<number>): { variance: number; se: number; n: number } {
  checkSample('varianceStdErr', xs, 2);
  const m = sampleMoments(xs);
  return { variance: m.variance, se: m.seVariance, n: m.n };
}

/** Mean and variance of a sample together, each with its standard error (as meanStdErr and varianceStdErr). */
export interface SampleMoments {
  n: number;
  mean: number;
  sd: number;
  seMean: number;
  variance: number;
  seVariance: number;
}

/** Mean, (n - 1) variance and both standard errors of n >= 2 finite values, in float64. */
export function sampleMoments(xs: ArrayLike<number>): SampleMoments {
  checkSample('sampleMoments', xs, 2);
  const n = xs.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += xs[i];
  const mean = sum / n;
  let m2 = 0;
  let m4 = 0;
  for (let i = 0; i < n; i++) {
    const d = (xs[i] - mean) ** 2;
    m2 += d;
    m4 += d * d;
  }
  const variance = m2 / (n - 1);
  // m4/n - (m2/n)^2 >= 0 in exact arithmetic; rounding can push a constant sample just below 0
  const seVariance = Math.sqrt(Math.max(m4 / n - (m2 / n) ** 2, 0) / n);
  return { n, mean, sd: Math.sqrt(variance), seMean: Math.sqrt(variance / n), variance, seVariance };
}

/** The density of N(mean, variance) at x. */
export function normalPdf(x: number, mean: number, variance: number): number {
  if (!(variance > 0)) throw new Error(`normalPdf: variance must be > 0, got ${variance}`);
  return Math.exp(-((x - mean) ** 2) / (2 * variance)) / Math.sqrt(2 * Math.PI * variance);
}

/**
 * A histogram scaled to a density: `bins` equal bins on [lo, hi), each bar count / (n width) with n
 * ALL the values (those outside [lo, hi) are counted in n but drawn nowhere), so that the bars
 * compare directly with a density curve.
 */
export function densityHistogram(xs: ArrayLike<number>, lo: number, hi: number, bins: number): { centers: number[]; density: number[]; counts: number[]; width: number } {
  checkSample('densityHistogram', xs, 1);
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || !(hi > lo)) throw new Error(`densityHistogram: need finite lo < hi, got lo = ${lo}, hi = ${hi}`);
  if (!Number.isInteger(bins) || bins < 1) throw new Error(`densityHistogram: bins must be an integer >= 1, got ${bins}`);
  const width = (hi - lo) / bins;
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < xs.length; i++) {
    const k = Math.floor((xs[i] - lo) / width);
    if (k >= 0 && k < bins) counts[k]++;
  }
  return {
    centers: counts.map((_, k) => lo + (k + 0.5) * width),
    density: counts.map((c) => c / (xs.length * width)),
    counts,
    width,
  };
}
