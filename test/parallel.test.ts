/**
 * Data-parallel training (lib/training/parallel.ts, train({ workers })): the batch's slices are
 * computed in worker threads and combined by size, so one plain gradient step (SGD with rate 1,
 * whose weight change IS the gradient) equals one thread's up to float32 rounding; a run with the
 * same worker count is the same bit for bit; nothing leaks; bad values are refused before work.
 *
 * Tolerance: each gradient entry is a sum over the batch's B examples, reordered by the split (and
 * the two slices' means weighted and added): |difference| <= 2 gamma_B sum |terms| with gamma_B =
 * B u / (1 - B u), u = 2^-24. sum |terms| is bounded by B max|per-example term|; here the test uses
 * the looser 4 B u max|g| over the whole gradient, which the real error is far inside, and checks
 * that dropping a slice (the error the split could make) lies far outside it.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import * as os from 'os';
import { MAX_SUGGESTED_THREADS, MlpDenoiser, UNetDenoiser, linearSchedule, swissRoll, train, trainingThreads, useBestBackend, sliceSizes } from '../lib';
import type { TrainableDenoiser } from '../lib/diffusion/denoiser';
import { useCpu } from './support';

const U = 2 ** -24;

/** The weight change of one SGD(1) step, i.e. minus the gradient, flat. */
async function oneStep(make: () => TrainableDenoiser, data: tf.Tensor, batch: number, workers: number, labels?: Int32Array): Promise<Float32Array> {
  const model = make();
  const before = model.trainableVariables.map((v) => v.dataSync().slice() as Float32Array);
  const sgd = tf.train.sgd(1);
  await train({ model, schedule: linearSchedule(20), data, labels, steps: 1, batchSize: batch, optimizer: sgd, workers, seed: 5 });
  sgd.dispose();
  const out = new Float32Array(before.reduce((n, b) => n + b.length, 0));
  let at = 0;
  model.trainableVariables.forEach((v, i) => {
    const now = v.dataSync();
    for (let k = 0; k < now.length; k++) out[at + k] = before[i][k] - now[k];
    at += now.length;
  });
  model.dispose();
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const maxAbs = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);

describe('data-parallel training (train({ workers }), lib/training/parallel.ts)', function () {
  this.timeout(120_000);

  after(useCpu);

  it('sliceSizes splits a batch as evenly as possible, the larger slices first', () => {
    expect(sliceSizes(37, 2)).to.deep.equal([19, 18]);
    expect(sliceSizes(64, 2)).to.deep.equal([32, 32]);
    expect(sliceSizes(10, 3)).to.deep.equal([4, 3, 3]);
  });

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`on ${backend}: one gradient step of an MlpDenoiser on 2 and 3 threads equals 1 thread's within rounding, and a dropped slice would not`, async () => {
      await useBestBackend({ prefer: backend });
      const data = swissRoll(200, { seed: 3 });
      const B = 37;
      const make = () => new MlpDenoiser({ seed: 1 });
      const tensors = tf.memory().numTensors;
      const one = await oneStep(make, data, B, 1);
      const tol = 4 * B * U * maxAbs(one);
      expect(maxAbs(one), 'the gradient is not trivially zero').to.be.greaterThan(1e-3);
      for (const workers of [2, 3]) {
        const many = await oneStep(make, data, B, workers);
        const d = maxAbsDiff(one, many);
        expect(d, `max |gradient difference| on ${workers} threads (tolerance ${tol.toExponential(2)})`).to.be.at.most(tol);
      }
      // the first slice alone (what a missing worker reply would leave): far outside the tolerance
      const firstSlice = await oneStep(make, tf.slice(data, 0, 200), sliceSizes(B, 2)[0], 1);
      expect(maxAbsDiff(one, firstSlice), 'a different batch is told apart').to.be.above(100 * tol);
      data.dispose();
      expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
    });
  }

  it('a class-conditional U-Net on 2 threads: the same gradient step as 1 thread within rounding (labels split with the batch)', async () => {
    await useBestBackend({ prefer: 'wasm' });
    const B = 6;
    const data = tf.randomUniform([12, 28, 28, 1], -1, 1, 'float32', 9);
    const labels = Int32Array.from({ length: 12 }, (_, i) => i % 10);
    const make = () => new UNetDenoiser({ baseChannels: 8, channelMults: [1], attention: false, groups: 4, numClasses: 10, seed: 2 });
    const one = await oneStep(make, data, B, 1, labels);
    const two = await oneStep(make, data, B, 2, labels);
    // the U-Net's sums also run over pixels (28 x 28 per example) inside each example's gradient, unchanged by the split
    const tol = 4 * B * U * maxAbs(one);
    expect(maxAbs(one)).to.be.greaterThan(1e-3);
    expect(maxAbsDiff(one, two), `max |gradient difference| (tolerance ${tol.toExponential(2)})`).to.be.at.most(tol);
    data.dispose();
  });

  it('the same run on 2 threads twice gives the same losses and weights, bit for bit (Adam, EMA, gradient clipping)', async () => {
    await useBestBackend({ prefer: 'wasm' });
    const data = swissRoll(300, { seed: 4 });
    const run = async () => {
      const model = new MlpDenoiser({ seed: 7 });
      const r = await train({ model, schedule: linearSchedule(50), data, steps: 4, batchSize: 33, lr: 1e-2, emaDecay: 0.9, gradClip: 1, workers: 2, seed: 11 });
      const w = model.trainableVariables.map((v) => Array.from(v.dataSync()));
      const e = r.ema!.trainableVariables.map((v) => Array.from(v.dataSync()));
      model.dispose();
      r.ema!.dispose();
      return { losses: Array.from(r.losses), w, e };
    };
    const a = await run();
    const b = await run();
    expect(b).to.deep.equal(a);
    data.dispose();
  });

  it('refuses a bad worker count, and a model the workers cannot rebuild, before any work and leaving nothing behind', async () => {
    await useBestBackend({ prefer: 'wasm' });
    const data = swissRoll(50, { seed: 1 });
    const model = new MlpDenoiser({ seed: 1 });
    const tensors = tf.memory().numTensors;
    for (const bad of [0, 2.5, 65]) {
      let err: Error | null = null;
      await train({ model, schedule: linearSchedule(10), data, steps: 1, batchSize: 8, workers: bad }).catch((e) => (err = e));
      expect(String(err), `workers ${bad}`).to.match(new RegExp(`workers must be an integer in \\[1, 64\\], got ${bad}`));
    }
    // a hand-written denoiser (not an MlpDenoiser or UNetDenoiser): the workers could not build it
    const custom: TrainableDenoiser = {
      trainableVariables: model.trainableVariables,
      predictEps: (xt: tf.Tensor, t: tf.Tensor1D) => model.predictEps(xt, t),
      clone: () => model.clone(),
      dispose: () => undefined,
    } as unknown as TrainableDenoiser;
    let err: Error | null = null;
    await train({ model: custom, schedule: linearSchedule(10), data, steps: 1, batchSize: 8, workers: 2 }).catch((e) => (err = e));
    expect(String(err)).to.match(/workers > 1 needs a model the worker threads can rebuild from its config \(an MlpDenoiser or a UNetDenoiser\)/);
    expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
    model.dispose();
    data.dispose();
  });

  it('trainingThreads suggests the usable cores (at most MAX_SUGGESTED_THREADS) on wasm and cpu, and 1 on a GPU backend', () => {
    const cores = os.availableParallelism();
    const want = Math.min(cores, MAX_SUGGESTED_THREADS);
    expect(trainingThreads('wasm')).to.equal(want);
    expect(trainingThreads('cpu')).to.equal(want);
    expect(trainingThreads('webgpu')).to.equal(1);
    expect(trainingThreads('tensorflow')).to.equal(1);
  });
});
