import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  Denoiser,
  ddimStep,
  ddpmStep,
  discretizedGaussianLogLikelihood,
  elboFirstForm,
  elboTermAt,
  elboTerms,
  energyDistance,
  extract,
  gaussianOptimalEps,
  hybridLoss,
  linearSchedule,
  meanAndCovariance,
  mixtureOptimalEps,
  mmdRbf,
  normalKL,
  normalLogPdf,
  pMeanVariance,
  posteriorMeanFromEps,
  predictEpsFromV,
  predictEpsFromX0,
  predictV,
  predictX0FromEps,
  predictX0FromV,
  priorTerm,
  qMeanVariance,
  qPosterior,
  qSample,
  qStep,
  reverseVariance,
  sampleDDIM,
  sampleDDPM,
  sampleLoop,
  simpleLoss,
  vlbLoss,
} from '../lib';
import { expectNoLeak } from './support';

/** One public function: a call that succeeds, and calls that must fail with the given message. */
interface LeakCase {
  name: string;
  ok: () => unknown;
  fail: [() => unknown, RegExp][];
}

/** Awaits fn (sync or async) and returns the error it threw, or null. */
async function errorOf(fn: () => unknown): Promise<Error | null> {
  try {
    await fn();
    return null;
  } catch (e) {
    return e as Error;
  }
}

describe('no tensor leaks, on success or on failure, in every public function of the maths core that takes tensors', () => {
  const s = linearSchedule(12, 1e-3, 0.2);
  const m = [0.3, -0.2];
  const S = [[0.3, 0.05], [0.05, 0.2]];
  const model = gaussianOptimalEps(m, S, s);
  const mixture = mixtureOptimalEps([0.5, 0.5], [[0.5, 0], [-0.5, 0]], [S, S], s);
  /** The Gaussian model, throwing from its k-th call on (a failure in the middle of a loop). */
  const failingAt = (k: number): Denoiser => {
    let calls = 0;
    return { predictEps: (xt, t) => { if (++calls >= k) throw new Error(`model failed at call ${calls}`); return model.predictEps(xt, t); } };
  };
  let x: tf.Tensor;
  let eps: tf.Tensor;
  let wide: tf.Tensor;
  let nan: tf.Tensor;
  let t: tf.Tensor1D;
  let tBad: tf.Tensor1D;
  let grid: tf.Tensor;
  let flat: tf.Tensor;
  let big: tf.Tensor;
  let ls: tf.Tensor;

  before(() => {
    x = tf.tensor2d([[0.2, -0.6], [1, 0.4], [-1, 0.8]]);
    eps = tf.tensor2d([[1, -0.5], [0.25, 2], [-1, 0]]);
    wide = tf.zeros([3, 3]);
    nan = tf.tensor2d([[0, NaN], [0, 0], [0, 0]]);
    t = tf.tensor1d([1, 6, 12], 'int32');
    tBad = tf.tensor1d([1, 13, 2], 'int32');
    grid = tf.tensor2d([[-1, 1], [1, -1 + 2 / 255], [0.2 - 0.2 % (2 / 255), -1]]);
    flat = tf.tensor1d([0, 1, 2]);
    big = tf.tensor2d([[0, 1.5], [0, 0], [0, 0]]);
    ls = tf.scalar(-3);
  });
  after(() => tf.dispose([x, eps, wide, nan, t, tBad, grid, flat, big, ls]));

  const cases = (): LeakCase[] => [
    { name: 'qStep', ok: () => qStep(s, x, t, eps), fail: [[() => qStep(s, x, t, wide), /xPrev and eps must have the same shape/], [() => qStep(s, nan, 2, eps), /xPrev must contain only finite/]] },
    { name: 'qSample', ok: () => qSample(s, x, t, eps), fail: [[() => qSample(s, x, tBad, eps), /t\[1\] must be an integer in \[1, 12\], got 13/]] },
    { name: 'qMeanVariance', ok: () => qMeanVariance(s, x, t), fail: [[() => qMeanVariance(s, x, 0), /t must be an integer in \[1, 12\], got 0/]] },
    { name: 'qPosterior', ok: () => qPosterior(s, x, eps, t), fail: [[() => qPosterior(s, x, wide, t), /x0 and xt must have the same shape/]] },
    { name: 'predictX0FromEps', ok: () => predictX0FromEps(s, x, t, eps), fail: [[() => predictX0FromEps(s, x, t, nan), /eps must contain only finite/]] },
    { name: 'predictEpsFromX0', ok: () => predictEpsFromX0(s, x, 3, eps), fail: [[() => predictEpsFromX0(s, x, 3, wide), /xt and x0 must have the same shape/]] },
    { name: 'posteriorMeanFromEps', ok: () => posteriorMeanFromEps(s, x, t, eps), fail: [[() => posteriorMeanFromEps(s, wide, t, eps), /xt and eps must have the same shape/]] },
    { name: 'predictV', ok: () => predictV(s, x, t, eps), fail: [[() => predictV(s, x, tBad, eps), /t\[1\] must be an integer/]] },
    { name: 'predictX0FromV', ok: () => predictX0FromV(s, x, t, eps), fail: [[() => predictX0FromV(s, x, t, wide), /same shape/]] },
    { name: 'predictEpsFromV', ok: () => predictEpsFromV(s, x, t, eps), fail: [[() => predictEpsFromV(s, nan, t, eps), /xt must contain only finite/]] },
    { name: 'pMeanVariance', ok: () => pMeanVariance(model, s, x, t, { clipX0: true }), fail: [[() => pMeanVariance(model, s, wide, t), /xt must have shape \[batch, 2\], got \[3,3\]/], [() => pMeanVariance(model, s, x, t, { variance: 'x' as never }), /variance must be one of/]] },
    { name: 'reverseVariance', ok: () => reverseVariance(s, t, 2, 'beta'), fail: [] },
    { name: 'extract', ok: () => extract(s.betas, t, 3), fail: [] },
    { name: 'GaussianOptimalEps.predictEps', ok: () => model.predictEps(x, t), fail: [[() => model.predictEps(wide, t), /xt must have shape \[batch, 2\]/]] },
    { name: 'MixtureOptimalEps.predictEps', ok: () => mixture.predictEps(x, 4), fail: [[() => mixture.predictEps(wide, 4), /xt must have shape \[batch, 2\]/]] },
    { name: 'normalKL', ok: () => normalKL(x, eps, eps, x), fail: [[() => normalKL(x, nan, x, x), /logVar1 must contain only finite/], [() => normalKL(x, x, wide, x), /broadcast-compatible/]] },
    { name: 'normalLogPdf', ok: () => normalLogPdf(x, eps, ls), fail: [[() => normalLogPdf(nan, x, x), /x must contain only finite/]] },
    {
      name: 'discretizedGaussianLogLikelihood',
      ok: () => discretizedGaussianLogLikelihood(grid, x, ls),
      fail: [[() => discretizedGaussianLogLikelihood(big, x, x), /x must lie in \[-1, 1\]/], [() => discretizedGaussianLogLikelihood(grid, nan, x), /mean must contain only finite/]],
    },
    { name: 'elboTermAt', ok: () => elboTermAt(model, s, grid, x, 1, { decoder: 'discretized' }), fail: [[() => elboTermAt(failingAt(1), s, x, x, 2), /model failed at call 1/]] },
    { name: 'priorTerm', ok: () => priorTerm(s, x), fail: [] },
    { name: 'elboTerms', ok: () => elboTerms(model, s, x), fail: [[() => elboTerms(failingAt(5), s, x), /model failed at call 5/], [() => elboTerms(model, s, nan), /x0 must contain only finite/]] },
    { name: 'elboFirstForm', ok: () => elboFirstForm(model, s, x), fail: [[() => elboFirstForm(failingAt(5), s, x), /model failed at call 5/]] },
    { name: 'simpleLoss', ok: () => simpleLoss(model, s, x, { t, eps }), fail: [[() => simpleLoss(model, s, x, { t: tBad }), /t\[1\] must be an integer/], [() => simpleLoss(failingAt(1), s, x), /model failed/]] },
    { name: 'vlbLoss', ok: () => vlbLoss(model, s, grid, { t, decoder: 'discretized' }), fail: [[() => vlbLoss(model, s, big, { decoder: 'discretized' }), /x0 must lie in \[-1, 1\]/], [() => vlbLoss(failingAt(1), s, x, { t }), /model failed/]] },
    { name: 'hybridLoss', ok: () => hybridLoss(model, s, x, { t, eps }), fail: [[() => hybridLoss(model, s, x, { lambda: NaN }), /lambda must be a finite number/], [() => hybridLoss(failingAt(1), s, x, { t }), /model failed/]] },
    { name: 'ddpmStep', ok: () => ddpmStep(s, x, 5, eps), fail: [[() => ddpmStep(s, x, 5, wide), /xt and epsTheta must have the same shape/]] },
    { name: 'ddimStep', ok: () => ddimStep(s, x, 5, 2, eps, { eta: 1 }), fail: [[() => ddimStep(s, x, 5, 2, eps, { eta: 99 }), /eta must be in \[0, /]] },
    { name: 'sampleDDPM', ok: () => sampleDDPM(model, s, [3, 2], { trajectoryEvery: 4 }), fail: [[() => sampleDDPM(model, s, [3, 3]), /xt must have shape \[batch, 2\]/], [() => sampleDDPM(failingAt(6), s, [3, 2]), /model failed at call 6/]] },
    { name: 'sampleDDIM', ok: () => sampleDDIM(model, s, [3, 2], { steps: 4, eta: 0.5, xT: x }), fail: [[() => sampleDDIM(model, s, [3, 3], { steps: 4 }), /xt must have shape/], [() => sampleDDIM(model, s, [3, 2], { xT: nan }), /xT must contain only finite/]] },
    { name: 'sampleLoop', ok: () => sampleLoop(model, s, [3, 2], [2, 7, 12], (xt, tt, tp, e) => ddimStep(s, xt, tt, tp, e)), fail: [[() => sampleLoop(model, s, [3, 2], [1, 2], () => { throw new Error('step failed'); }), /step failed/]] },
    { name: 'energyDistance', ok: () => energyDistance(x as tf.Tensor2D, eps as tf.Tensor2D), fail: [[() => energyDistance(x as tf.Tensor2D, wide as tf.Tensor2D), /same dimension, got 2 and 3/], [() => energyDistance(nan as tf.Tensor2D, x as tf.Tensor2D), /x must contain only finite/], [() => energyDistance(flat as never, x as tf.Tensor2D), /rank-2 tensor/]] },
    { name: 'mmdRbf', ok: () => mmdRbf(x as tf.Tensor2D, eps as tf.Tensor2D), fail: [[() => mmdRbf(x as tf.Tensor2D, nan as tf.Tensor2D), /y must contain only finite/], [() => mmdRbf(x as tf.Tensor2D, eps as tf.Tensor2D, 0), /bandwidth must be/]] },
    { name: 'meanAndCovariance', ok: () => meanAndCovariance(x as tf.Tensor2D), fail: [[() => meanAndCovariance(nan as tf.Tensor2D), /x must contain only finite/]] },
  ];

  it('each function returns its result and nothing else stays; each refusal or failing model leaves tf.memory() as it was', async () => {
    for (const c of cases()) {
      const result = await expectNoLeak(() => c.ok(), c.name);
      tf.dispose(result as tf.TensorContainer);
      for (const [fn, pattern] of c.fail) {
        const before = tf.memory().numTensors;
        const error = await errorOf(fn);
        expect(error, `${c.name} must fail with ${pattern}`).to.be.instanceOf(Error);
        expect((error as Error).message, c.name).to.match(pattern);
        expect(tf.memory().numTensors - before, `${c.name} leaked on ${pattern}`).to.equal(0);
      }
    }
  });
});
