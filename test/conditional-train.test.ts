/**
 * train() with class labels (issue 14): a conditional model sees each example's own class, dropped
 * to the null class with probability pUncond from a stream of (seed, step), in every loss type; a
 * resumed conditional run equals an uninterrupted one bit for bit; bad labels are refused first.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  ClassLabel,
  ConditionalDenoiser,
  MlpDenoiser,
  TrainCheckpoint,
  TrainableDenoiser,
  UNetDenoiser,
  createOptimizer,
  linearSchedule,
  loadRunForResume,
  saveCheckpoint,
  train,
} from '../lib';
import type { Timestep } from '../lib';
import { expectRejects } from './support';

const s = linearSchedule(10);
const SPACING = 100;

/**
 * eps = a * x_t + offset[c] (one learned offset per class and one for the null class) that records
 * every call: the class, the timestep and x_t's first coordinate of each example.
 */
class RecordingModel implements TrainableDenoiser, ConditionalDenoiser {
  readonly numClasses = 3;
  readonly nullClass = 3;
  readonly inputShape: readonly number[] = [2];
  readonly config = {};
  readonly trainableVariables: tf.Variable[];
  calls = 0;
  readonly seen: { c: number; t: number; x: number }[] = [];

  constructor(weights?: readonly tf.Tensor[]) {
    this.trainableVariables = [tf.variable(weights ? weights[0].clone() : tf.scalar(0.5)), tf.variable(weights ? weights[1].clone() : tf.zeros([4, 2]))];
  }

  predictEps(xt: tf.Tensor, t: Timestep, c?: ClassLabel): tf.Tensor {
    this.calls++;
    const b = xt.shape[0];
    const cs = c === undefined ? new Array(b).fill(-1) : typeof c === 'number' ? new Array(b).fill(c) : Array.from(c.dataSync());
    const ts = typeof t === 'number' ? new Array(b).fill(t) : Array.from(t.dataSync());
    const xs = xt.dataSync();
    for (let i = 0; i < b; i++) this.seen.push({ c: cs[i], t: ts[i], x: xs[2 * i] });
    const [a, offsets] = this.trainableVariables;
    return tf.tidy(() => {
      const rows = typeof c === 'number' || c === undefined ? tf.gather(offsets, new Array(b).fill(c ?? this.nullClass)) : tf.gather(offsets, c);
      return tf.add(tf.mul(xt, a), rows);
    });
  }

  clone(): RecordingModel {
    return new RecordingModel(this.trainableVariables);
  }

  dispose(): void {
    tf.dispose(this.trainableVariables);
  }
}

/** n points; example i has class i mod 3 and sits at (SPACING * class, 0), so its class can be read back from x_t. */
function labelled(n: number): { data: tf.Tensor2D; labels: Int32Array } {
  const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
  const xy = new Float32Array(2 * n);
  labels.forEach((c, i) => (xy[2 * i] = SPACING * c));
  return { data: tf.tensor2d(xy, [n, 2]), labels };
}

/** The class of an example from x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps: |eps| would need to exceed ~30 sd to misread it at T = 10. */
const classOf = (x: number, t: number) => Math.round(x / s.sqrtAlphaBars[t] / SPACING);

async function noLeak(what: string, fn: () => Promise<unknown>, fails?: RegExp): Promise<void> {
  const before = tf.memory().numTensors;
  if (fails) await expectRejects(fn, fails);
  else await fn();
  expect(tf.memory().numTensors - before, `${what} leaked`).to.equal(0);
}

describe('train() with class labels (conditional models)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-cond-train-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('each example is trained with its own class; the null-class share is pUncond within 4 binomial standard errors; no probe call, no leak', async () => {
    const { data, labels } = labelled(90);
    const steps = 200;
    const batchSize = 32;
    const model = new RecordingModel();
    const before = tf.memory().numTensors;
    await train({ model, schedule: s, data, labels, pUncond: 0.1, steps, batchSize, lr: 1e-3, seed: 4 });
    expect(tf.memory().numTensors, 'tensors after train').to.equal(before);
    // The data's shape is checked against inputShape: the model is called once per step, never to probe.
    expect(model.calls, 'model calls').to.equal(steps);
    const n = model.seen.length;
    expect(n).to.equal(steps * batchSize);
    let nulls = 0;
    for (const r of model.seen) {
      if (r.c === model.nullClass) nulls++;
      else expect(r.c, `class seen for x_t = ${r.x} at t = ${r.t}`).to.equal(classOf(r.x, r.t));
    }
    const se = Math.sqrt((0.1 * 0.9) / n);
    expect(Math.abs(nulls / n - 0.1), `null share ${nulls / n} of ${n} labels, 4 SE = ${4 * se}`).to.be.at.most(4 * se);
    model.dispose();
    data.dispose();
  });

  it('pUncond = 0 never drops a label, pUncond = 1 always does, the default is 0.1; the vlb and hybrid losses pass the classes too', async () => {
    const { data, labels } = labelled(30);
    const share = async (o: { pUncond?: number; loss?: 'simple' | 'vlb' | 'hybrid'; steps: number }) => {
      const model = new RecordingModel();
      await train({ model, schedule: s, data, labels, batchSize: 30, lr: 1e-3, ...o });
      expect(model.seen.every((r) => r.c !== -1), `${o.loss ?? 'simple'}: every call got a class`).to.equal(true);
      const nulls = model.seen.filter((r) => r.c === model.nullClass).length;
      model.dispose();
      return { nulls, n: model.seen.length };
    };
    expect((await share({ pUncond: 0, steps: 20 })).nulls).to.equal(0);
    const all = await share({ pUncond: 1, steps: 20 });
    expect(all.nulls).to.equal(all.n);
    const d = await share({ steps: 100 });
    const se = Math.sqrt((0.1 * 0.9) / d.n);
    expect(Math.abs(d.nulls / d.n - 0.1), `default share ${d.nulls / d.n}, 4 SE = ${4 * se}`).to.be.at.most(4 * se);
    for (const loss of ['vlb', 'hybrid'] as const) {
      const r = await share({ loss, pUncond: 0, steps: 2 });
      expect(r.nulls, loss).to.equal(0);
    }
    data.dispose();
  });

  it('a trained conditional model predicts better with the true class than with the null class (paired difference > 4 standard errors)', async () => {
    // Three clusters at x = -2, 0, 2 (class 0, 1, 2): only the class says which one x0 came from.
    const n = 300;
    const labels = Int32Array.from({ length: n }, (_, i) => i % 3);
    const data = tf.tensor2d(Array.from(labels, (c) => [2 * (c - 1), 2 * (c - 1)]));
    const model = new RecordingModel();
    const { losses } = await train({ model, schedule: s, data, labels, steps: 300, batchSize: 64, lr: 3e-2, seed: 1 });
    const mean = (a: Float32Array) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(losses.slice(-50)), 'the last 50 losses against the first 50').to.be.below(mean(losses.slice(0, 50)));
    // Fresh draws, the same t and eps for both predictions: per-example loss differences.
    const m = 3000;
    const evalLabels = Int32Array.from({ length: m }, (_, i) => i % 3);
    const x0 = tf.tensor2d(Array.from(evalLabels, (c) => [2 * (c - 1), 2 * (c - 1)]));
    const t = tf.tensor1d(Array.from({ length: m }, (_, i) => 1 + (i % s.T)), 'int32');
    const eps = tf.randomNormal([m, 2], 0, 1, 'float32', 77);
    const perExample = (c: ClassLabel) =>
      tf.tidy(() => {
        const xt = tf.add(tf.mul(x0, tf.gather(tf.tensor1d(Array.from(s.sqrtAlphaBars)), t).reshape([m, 1])), tf.mul(eps, tf.gather(tf.tensor1d(Array.from(s.sqrtOneMinusAlphaBars)), t).reshape([m, 1])));
        return tf.squaredDifference(model.predictEps(xt, t, c), eps).mean(1);
      });
    const c = tf.tensor1d(evalLabels, 'int32');
    const diff = tf.tidy(() => tf.sub(perExample(model.nullClass), perExample(c)));
    const d = Array.from(await diff.data());
    const dm = d.reduce((a, b) => a + b, 0) / m;
    const sd = Math.sqrt(d.reduce((a, b) => a + (b - dm) ** 2, 0) / (m - 1));
    expect(dm, `mean loss(null) - loss(class) over ${m} draws, 4 SE = ${(4 * sd) / Math.sqrt(m)}`).to.be.above((4 * sd) / Math.sqrt(m));
    tf.dispose([data, x0, t, eps, c, diff]);
    model.dispose();
  });

  it('a tiny conditional U-Net trains with labels (finite losses that fall) and a resumed run equals an uninterrupted one bit for bit', async () => {
    // 4x4 images, one level: a step takes ~0.3 s on a busy cpu (8x8 with two levels ~2 s).
    const config = { imageSize: 4, baseChannels: 4, groups: 2, channelMults: [1], attention: false, numClasses: 2, seed: 3 };
    // Class 0: the left half bright; class 1: the right half.
    const n = 16;
    const labels = Int32Array.from({ length: n }, (_, i) => i % 2);
    const px = new Float32Array(n * 16);
    labels.forEach((c, i) => {
      for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) px[i * 16 + y * 4 + x] = (x < 2) === (c === 0) ? 1 : -1;
    });
    const data = tf.tensor4d(px, [n, 4, 4, 1]);
    const base = { schedule: s, data, labels, pUncond: 0.25, batchSize: 8, lr: 1e-2, seed: 5, emaDecay: 0.9 } as const;
    const m1 = new UNetDenoiser(config);
    const before = tf.memory().numTensors;
    const full = await train({ ...base, model: m1, steps: 8 });
    full.ema?.dispose();
    expect(tf.memory().numTensors, 'tensors after train').to.equal(before);
    expect(Array.from(full.losses).every(Number.isFinite)).to.equal(true);

    const dir = path.join(tmp, 'resume');
    const m2 = new UNetDenoiser(config);
    const save = async (c: TrainCheckpoint) => {
      await saveCheckpoint(dir, { model: m2, ema: c.ema, optimizer: c.optimizer, schedule: s, step: c.step, seed: 5, rngState: c.rngState, losses: c.losses, skipped: 0, train: {} });
    };
    const half = await train({ ...base, model: m2, steps: 4, checkpointEvery: 4, onCheckpoint: save });
    half.ema?.dispose();
    m2.dispose();
    const r = await loadRunForResume(dir, () => createOptimizer(base.lr));
    expect((r.model as UNetDenoiser).numClasses, 'numClasses after loading').to.equal(2);
    const rest = await train({ ...base, model: r.model, ema: r.ema!, optimizer: r.optimizer, rngState: r.rngState, initialStep: 4, steps: 8 });
    const values = (m: TrainableDenoiser) => m.trainableVariables.map((v) => Array.from(v.dataSync()));
    expect(values(r.model), 'weights').to.deep.equal(values(m1));
    expect(Array.from(half.losses).concat(Array.from(rest.losses)), 'losses').to.deep.equal(Array.from(full.losses));
    r.dispose();
    r.optimizer.dispose();

    // Longer: the loss falls (mean of the last 20 of 60 steps below the first 20's).
    const m3 = new UNetDenoiser(config);
    const long = await train({ ...base, model: m3, steps: 60, emaDecay: undefined });
    const mean = (a: Float32Array) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(long.losses.slice(-20)), 'the last 20 losses against the first 20').to.be.below(mean(long.losses.slice(0, 20)));
    m3.dispose();
    m1.dispose();
    data.dispose();
  });

  it('rejects, before any work and leaking nothing: labels for an unconditional model, no labels for a conditional one, a wrong length, a class out of range, a bad pUncond', async () => {
    const { data, labels } = labelled(12);
    const mlp = new MlpDenoiser({ hidden: 4, depth: 1 });
    const cond = new RecordingModel();
    const base = { schedule: s, data, steps: 1, batchSize: 4 };
    await noLeak('labels, unconditional model', () => train({ ...base, model: mlp, labels }), /labels need a conditional model \(numClasses >= 1.*got an unconditional model \(numClasses unset\)/);
    await noLeak('pUncond without labels', () => train({ ...base, model: mlp, pUncond: 0.1 }), /pUncond \(0\.1\) needs labels and a conditional model/);
    await noLeak('conditional model, no labels', () => train({ ...base, model: cond }), /model is conditional \(numClasses 3\): pass labels \(an Int32Array with one class in \[0, 2\] per example of data\)/);
    await noLeak('wrong length', () => train({ ...base, model: cond, labels: labels.slice(1) }), /labels must hold one class per example of data \(12\), got 11/);
    const bad = labels.slice();
    bad[5] = 3;
    await noLeak('class out of range', () => train({ ...base, model: cond, labels: bad }), /labels\[5\] must be a class in \[0, 2\] \(the model has 3 classes\), got 3/);
    bad[5] = -1;
    await noLeak('negative class', () => train({ ...base, model: cond, labels: bad }), /labels\[5\] must be a class in \[0, 2\].*got -1/);
    await noLeak('labels as a plain array', () => train({ ...base, model: cond, labels: Array.from(labels) as never }), /labels must be an Int32Array of classes, got \[object Array\]/);
    await noLeak('pUncond 1.5', () => train({ ...base, model: cond, labels, pUncond: 1.5 }), /pUncond must be a finite number in \[0, 1\], got 1\.5/);
    await noLeak('pUncond NaN', () => train({ ...base, model: cond, labels, pUncond: NaN }), /pUncond must be a finite number in \[0, 1\], got NaN/);
    expect(cond.calls, 'the model was never called').to.equal(0);
    // Wrong data shape for a model with inputShape: refused without a call.
    const wide = tf.zeros([12, 3]);
    await noLeak('data [12, 3]', () => train({ ...base, model: cond, labels, data: wide }), /data of shape \[12,3\] does not fit the model: xt must have shape \[batch, 2\]/);
    expect(cond.calls, 'the model was never called').to.equal(0);
    mlp.dispose();
    cond.dispose();
    tf.dispose([data, wide]);
  });
});
