import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { linearSchedule, qMeanVariance, qSample, qStep } from '../lib';
import { expectClose, expectNoLeak, take } from './support';

describe('forward process q(x_t | x_{t-1}) and q(x_t | x_0)', () => {
  it('iterating qStep t times has the mean and variance of the closed form qMeanVariance (Monte Carlo)', () => {
    const s = linearSchedule(40, 0.01, 0.1);
    const N = 20000;
    const x0Values = [1.5, -0.7];
    const x0 = tf.tile(tf.tensor2d([x0Values]), [N, 1]);
    let x: tf.Tensor = x0.clone();
    for (let t = 1; t <= s.T; t++) {
      const next = qStep(s, x, t, tf.randomNormal([N, 2], 0, 1, 'float32', 100 + t));
      x.dispose();
      x = next;
      if (t === 10 || t === 40) {
        const { mean, variance } = qMeanVariance(s, x0, t);
        const m = take(tf.mean(x, 0));
        const v = take(tf.moments(x, 0).variance);
        const expectedMean = take(mean.slice([0, 0], [1, 2])).map((a) => a);
        const expectedVar = take(variance)[0];
        // Standard errors: of a mean sqrt(var/N), of a variance var sqrt(2/N); 5 of them.
        const seMean = Math.sqrt(expectedVar / N);
        expectClose(m, expectedMean, 5 * seMean, 0, `mean of x_${t}`);
        expectClose(v, [expectedVar, expectedVar], 5 * expectedVar * Math.sqrt(2 / N), 0, `variance of x_${t}`);
        // and both against the float64 schedule: abar_t = prod (1 - beta)
        let abar = 1;
        for (let k = 1; k <= t; k++) abar *= 1 - s.betas[k];
        expectClose(expectedMean, x0Values.map((a) => Math.sqrt(abar) * a), 1e-5);
        expectClose(expectedVar, 1 - abar, 1e-6);
      }
    }
    tf.dispose([x, x0]);
  });

  it('qSample is sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, elementwise in float64', () => {
    const s = linearSchedule(100);
    const x0 = tf.tensor2d([[0.3, -1], [2, 0.5]]);
    const eps = tf.tensor2d([[1, 0.2], [-0.4, 3]]);
    const xt = take(qSample(s, x0, 60, eps));
    const a = Math.sqrt(s.alphaBars[60]);
    const b = Math.sqrt(1 - s.alphaBars[60]);
    expectClose(xt, [0.3 * a + b, -a + 0.2 * b, 2 * a - 0.4 * b, 0.5 * a + 3 * b], 1e-6);
    tf.dispose([x0, eps]);
  });

  it('per-example tensor timesteps equal the same timesteps applied one example at a time', async () => {
    const s = linearSchedule(50);
    const x0 = tf.randomNormal([3, 4, 4, 1], 0, 1, 'float32', 1);
    const eps = tf.randomNormal([3, 4, 4, 1], 0, 1, 'float32', 2);
    const t = tf.tensor1d([1, 25, 50], 'int32');
    const batched = await expectNoLeak(() => qSample(s, x0, t, eps));
    const rows = [1, 25, 50].map((ti, i) => take(qSample(s, x0.slice(i, 1), ti, eps.slice(i, 1))));
    expectClose(take(batched), rows.flatMap((r) => Array.from(r)), 1e-6);
    const stepped = take(qStep(s, x0, t, eps));
    const rows2 = [1, 25, 50].map((ti, i) => take(qStep(s, x0.slice(i, 1), ti, eps.slice(i, 1))));
    expectClose(stepped, rows2.flatMap((r) => Array.from(r)), 1e-6);
    tf.dispose([x0, eps, t]);
  });

  it('leaks no tensors', async () => {
    const s = linearSchedule(10);
    const x0 = tf.ones([2, 3]);
    const eps = tf.ones([2, 3]);
    await expectNoLeak(() => tf.dispose(qSample(s, x0, 3, eps)));
    await expectNoLeak(() => tf.dispose(qStep(s, x0, 3, eps)));
    await expectNoLeak(() => tf.dispose(qMeanVariance(s, x0, 3) as unknown as tf.Tensor[]));
    tf.dispose([x0, eps]);
  });

  it('rejects bad input naming the parameter: NaN data, shape mismatch, t out of range', () => {
    const s = linearSchedule(10);
    const good = tf.ones([2, 3]);
    const nan = tf.tensor2d([[1, NaN, 0], [0, 0, 0]]);
    const inf = tf.tensor2d([[1, Infinity, 0], [0, 0, 0]]);
    const wrong = tf.ones([2, 4]);
    expect(() => qSample(s, nan, 1, good)).to.throw(/x0 must contain only finite numbers, got 1 NaN or Inf/);
    expect(() => qStep(s, inf, 1, good)).to.throw(/xPrev must contain only finite/);
    expect(() => qSample(s, good, 1, nan)).to.throw(/eps must contain only finite/);
    expect(() => qSample(s, good, 1, wrong)).to.throw(/x0 and eps must have the same shape, got \[2,3\] and \[2,4\]/);
    expect(() => qSample(s, good, 0, good)).to.throw(/t must be an integer in \[1, 10\], got 0/);
    expect(() => qMeanVariance(s, good, 11)).to.throw(/got 11/);
    tf.dispose([good, nan, inf, wrong]);
  });
});
