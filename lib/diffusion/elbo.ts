/**
 * The evidence lower bound, term by term, docs/equations.md#elbo-second-form (one sampling)
 * and docs/equations.md#decoder (the discretised decoder, bits per dimension). Notebook: 02_elbo.
 *
 *   -ELBO = L_T + sum_{t=2}^{T} L_{t-1} + L_0, where
 *   L_T = KL(q(x_T|x_0) || N(0, I)), L_{t-1} = E_q(x_t|x_0) KL(q(x_{t-1}|x_t,x_0) || p_theta(x_{t-1}|x_t)),
 *   L_0 = -E_q(x_1|x_0) log p_theta(x_0|x_1).
 */
import * as tf from '@tensorflow/tfjs';
import type { Denoiser } from './denoiser';
import { qSampleUnchecked, qStepUnchecked } from './forward';
import { checkFiniteTensorAsync, checkRank } from './validate';
import { discretizedGaussianLogLikelihood, normalKLUnchecked as normalKL, normalLogPdfUnchecked as normalLogPdf } from './gaussian';
import { deriveSeed } from './random';
import { qPosteriorMeanUnchecked } from './posterior';
import { ReverseOptions, checkReverseVariance, pMeanVarianceUnchecked } from './reverse';
import { Schedule, extract } from './schedule';

/** How p_theta(x_0 | x_1) scores the data: 'discretized' for 8-bit data in [-1, 1], 'gaussian' for continuous data. */
export type Decoder = 'discretized' | 'gaussian';

/** Options of the ELBO evaluation. */
export interface ElboOptions extends ReverseOptions {
  /** Seed of the one x_t draw per timestep; default 0. */
  seed?: number;
  /** Default 'gaussian' (continuous density); 'discretized' for 8-bit image data. */
  decoder?: Decoder;
}

/** The ELBO's terms in nats, each summed over the data dimensions, one entry per example. */
export interface ElboTerms {
  /** L[0] = decoder term -log p_theta(x_0|x_1); L[t-1] for t = 2..T the KL terms; L[T] = prior term. */
  L: Float64Array[];
  /** L_T = KL(q(x_T|x_0) || N(0, I)): has no theta, so training ignores it. */
  prior: Float64Array;
  /** L_0 = -log p_theta(x_0 | x_1). */
  decoder: Float64Array;
  /** -ELBO = sum of all terms, an upper bound on -log p_theta(x_0). */
  total: Float64Array;
  /** Mean over the batch of -ELBO / (D ln 2). */
  bitsPerDim: number;
}

/** Reads per-example term tensors back in one asynchronous transfer, disposing them; float64 rows. */
async function readTerms(terms: tf.Tensor1D[]): Promise<Float64Array[]> {
  const batch = terms[0].shape[0];
  const all = tf.stack(terms);
  const values = await all.data();
  tf.dispose([all, ...terms]);
  return terms.map((_, k) => Float64Array.from(values.subarray(k * batch, (k + 1) * batch)));
}

/** The per-example sum of several rows of terms. */
function sumTerms(rows: Float64Array[]): Float64Array {
  const total = new Float64Array(rows[0].length);
  for (const row of rows) for (let i = 0; i < row.length; i++) total[i] += row[i];
  return total;
}

/** Checks the data (values read asynchronously, so on every backend) and the options of both ELBO forms. */
async function checkElboInput(x0: tf.Tensor, opts: ElboOptions): Promise<void> {
  checkRank('x0', x0, 1);
  await checkFiniteTensorAsync('x0', x0);
  if (opts.variance !== undefined) checkReverseVariance(opts.variance);
  if (opts.decoder !== undefined && opts.decoder !== 'discretized' && opts.decoder !== 'gaussian') {
    throw new Error(`decoder must be 'discretized' or 'gaussian', got ${String(opts.decoder)}`);
  }
}

/** L_{t-1} (t >= 2) or L_0 (t = 1) per example, as a [batch] tensor, for a given x_t; no checks. */
export function elboTermAt(
  model: Denoiser,
  s: Schedule,
  x0: tf.Tensor,
  xt: tf.Tensor,
  t: number,
  opts: ElboOptions = {},
): tf.Tensor1D {
  return tf.tidy(() => {
    const axes = x0.shape.slice(1).map((_, i) => i + 1);
    const p = pMeanVarianceUnchecked(model, s, xt, t, opts);
    if (t === 1) {
      const logLik =
        (opts.decoder ?? 'gaussian') === 'discretized'
          ? discretizedGaussianLogLikelihood(x0, p.mean, p.logVariance.mul(0.5))
          : normalLogPdf(x0, p.mean, p.logVariance);
      return logLik.sum(axes).neg() as tf.Tensor1D;
    }
    const qMean = qPosteriorMeanUnchecked(s, x0, xt, t);
    const qLogVar = extract(s.sigmaQ2LogClipped, t, x0.rank);
    return normalKL(qMean, qLogVar, p.mean, p.logVariance).sum(axes) as tf.Tensor1D;
  });
}

/** L_T = KL(N(sqrt(abar_T) x0, (1 - abar_T) I) || N(0, I)) per example, as a [batch] tensor. */
export function priorTerm(s: Schedule, x0: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const axes = x0.shape.slice(1).map((_, i) => i + 1);
    const mean = x0.mul(s.sqrtAlphaBars[s.T]);
    const logVar = tf.scalar(s.logOneMinusAlphaBars[s.T]);
    return normalKL(mean, logVar, tf.scalar(0), tf.scalar(0)).sum(axes) as tf.Tensor1D;
  });
}

/**
 * Every term of -ELBO for each example of x0 (shape [batch, ...]), one draw of x_t ~ q(x_t|x_0)
 * per timestep: T model evaluations in all, with a single (asynchronous) read back at the end.
 */
export async function elboTerms(model: Denoiser, s: Schedule, x0: tf.Tensor, opts: ElboOptions = {}): Promise<ElboTerms> {
  await checkElboInput(x0, opts);
  const seed = opts.seed ?? 0;
  const batch = x0.shape[0];
  const D = x0.size / batch;
  const perT: tf.Tensor1D[] = [];
  try {
    for (let t = 1; t <= s.T; t++) {
      perT.push(
        tf.tidy(() => {
          const eps = tf.randomNormal(x0.shape, 0, 1, 'float32', deriveSeed(seed, 0xe1b0, t));
          return elboTermAt(model, s, x0, qSampleUnchecked(s, x0, t, eps), t, opts);
        }),
      );
    }
    perT.push(priorTerm(s, x0));
  } catch (e) {
    tf.dispose(perT); // a model that fails at some t leaves the terms before it behind otherwise
    throw e;
  }
  const L = await readTerms(perT);
  const total = sumTerms(L);
  for (let i = 0; i < batch; i++) {
    if (!Number.isFinite(total[i])) throw new Error(`elboTerms: example ${i} got a non-finite ELBO (${total[i]}); check the model's output`);
  }
  const meanTotal = total.reduce((a, b) => a + b, 0) / batch;
  return { L, prior: L[s.T], decoder: L[0], total, bitsPerDim: meanTotal / (D * Math.LN2) };
}

/** How elboFirstForm estimates each term: at the sampled x_t, or as Luo's analytic KL over x_t ~ q(x_t | x_{t-1}). */
export type FirstFormEstimator = 'sampled' | 'analyticKL';

/** The first form's terms in nats per example (one forward trajectory x_1..x_T per example). */
export interface ElboFirstForm {
  /** -log p_theta(x_0 | x_1). */
  decoder: Float64Array;
  /** The prior-matching term: log q(x_T | x_{T-1}) - log p(x_T), or its KL. */
  prior: Float64Array;
  /** consistency[t-1] = log q(x_t | x_{t-1}) - log p_theta(x_t | x_{t+1}) (or its KL) for t = 1..T-1. */
  consistency: Float64Array[];
  /** The sum of all of them: -ELBO for 'sampled'. */
  total: Float64Array;
}

/**
 * The ELBO in its first form (docs/equations.md#elbo-first-form), from one forward trajectory
 * x_1..x_T per example drawn with qStep T times: -log p(x_0:T)/q(x_1:T|x_0) regrouped into a
 * decoder, a prior-matching and T - 1 consistency terms. With estimator 'sampled' (default) each
 * term is evaluated at the sampled x_t, so the total has exactly the ELBO's expectation (the second
 * form's, elboTerms) with a larger variance. 'analyticKL' replaces each term by
 * KL(q(x_t|x_{t-1}) || p_theta(x_t|x_{t+1})) as Luo (2022) writes it; that treats x_t as independent
 * of x_{t+1}, which they are not under q, so its expectation is not the ELBO (notebook 02 measures it).
 */
export async function elboFirstForm(
  model: Denoiser,
  s: Schedule,
  x0: tf.Tensor,
  opts: ElboOptions & { estimator?: FirstFormEstimator } = {},
): Promise<ElboFirstForm> {
  await checkElboInput(x0, opts);
  const estimator = opts.estimator ?? 'sampled';
  if (estimator !== 'sampled' && estimator !== 'analyticKL') {
    throw new Error(`estimator must be 'sampled' or 'analyticKL', got ${String(estimator)}`);
  }
  const seed = opts.seed ?? 0;
  const axes = x0.shape.slice(1).map((_, i) => i + 1);
  // x[t] for t = 0..T: the trajectory, kept until every term that needs it is done.
  const x: tf.Tensor[] = [x0.clone()];
  const terms: tf.Tensor1D[] = [];
  // -log p(x_t | x_{t+1}) + log q(x_t | x_{t-1}), or the KL of q(x_t | x_{t-1}) from the model's step.
  const consistencyTerm = (t: number, pMean: tf.Tensor, pLogVar: tf.Tensor): tf.Tensor1D =>
    tf.tidy(() => {
      const qMean = x[t - 1].mul(s.sqrtAlphas[t]);
      const qLogVar = tf.scalar(s.logBetas[t]);
      const perDim =
        estimator === 'analyticKL'
          ? normalKL(qMean, qLogVar, pMean, pLogVar)
          : normalLogPdf(x[t], qMean, qLogVar).sub(normalLogPdf(x[t], pMean, pLogVar));
      return perDim.sum(axes) as tf.Tensor1D;
    });
  try {
    for (let t = 1; t <= s.T; t++) {
      x.push(tf.tidy(() => qStepUnchecked(s, x[t - 1], t, tf.randomNormal(x0.shape, 0, 1, 'float32', deriveSeed(seed, 0xf1f0, t)))));
    }
    terms.push(elboTermAt(model, s, x0, x[1], 1, opts)); // -log p(x_0 | x_1)
    terms.push(tf.tidy(() => consistencyTerm(s.T, tf.zerosLike(x0), tf.scalar(0)))); // p(x_T) = N(0, I)
    for (let t = 1; t <= s.T - 1; t++) {
      terms.push(
        tf.tidy(() => {
          const p = pMeanVarianceUnchecked(model, s, x[t + 1], t + 1, opts);
          return consistencyTerm(t, p.mean, p.logVariance);
        }),
      );
    }
  } catch (e) {
    tf.dispose(terms); // a failing model leaves neither the trajectory nor the terms behind
    throw e;
  } finally {
    tf.dispose(x);
  }
  const [decoder, prior, ...consistency] = await readTerms(terms);
  return { decoder, prior, consistency, total: sumTerms([decoder, prior, ...consistency]) };
}
