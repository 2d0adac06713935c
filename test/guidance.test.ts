import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  Rng,
  UNetDenoiser,
  UNetDenoiserConfig,
  conditionalTrainStep,
  loadRun,
  saveCheckpoint,
  dropClassLabels,
  gaussianOptimalEps,
  guidedDenoiser,
  isConditional,
  linearSchedule,
  mixtureOptimalEps,
  sampleDDIM,
  sampleDDPM,
  useBestBackend,
} from '../lib';
import type { ConditionalDenoiser } from '../lib';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expectClose, expectNoLeak, expectRejects, take, useCpu } from './support';

/** log N(x; mu, C) for 2x2 C, in float64. */
function logN2(x: number[], mu: number[], C: number[][]): number {
  const det = C[0][0] * C[1][1] - C[0][1] * C[1][0];
  const dx = [x[0] - mu[0], x[1] - mu[1]];
  const q = (C[1][1] * dx[0] * dx[0] - 2 * C[0][1] * dx[0] * dx[1] + C[0][0] * dx[1] * dx[1]) / det;
  return -Math.log(2 * Math.PI) - 0.5 * Math.log(det) - 0.5 * q;
}

const W = [0.5, 0.3, 0.2];
const M = [[-1, 0], [1, 0.5], [0, -1.5]];
const S = [[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.4]], [[0.5, 0], [0, 0.1]]];

describe('class-conditional eps and classifier-free guidance', () => {
  const s = linearSchedule(100, 1e-3, 0.1);
  const mix = mixtureOptimalEps(W, M, S, s);
  /** Sigma_t of component k at t, float64. */
  const sigmaT = (k: number, t: number) => S[k].map((row, i) => row.map((v, j) => s.alphaBars[t] * v + (i === j ? 1 - s.alphaBars[t] : 0)));
  const logJoint = (x: number[], t: number, k: number) => Math.log(W[k]) + logN2(x, M[k].map((m) => Math.sqrt(s.alphaBars[t]) * m), sigmaT(k, t));
  /** log q_t(k | x) in float64 (log-sum-exp over the components). */
  const logPost = (x: number[], t: number, k: number) => {
    const l = W.map((_, j) => logJoint(x, t, j));
    const top = Math.max(...l);
    return l[k] - top - Math.log(l.reduce((a, v) => a + Math.exp(v - top), 0));
  };
  const points = [[-0.8, 0.2], [0.4, 0.1], [0.1, -1.2], [1.5, 1.0], [-0.2, -0.4]];
  const xs = () => tf.tensor2d(points);

  it('the mixture is a conditional denoiser: eps*(x, t | k) is component k\'s closed form, eps*(x, t | null) the mixture\'s, and q_t(k | x) the float64 posterior', async () => {
    expect(isConditional(mix)).to.equal(true);
    expect([mix.numClasses, mix.nullClass]).to.deep.equal([3, 3]);
    for (const t of [1, 30, 100]) {
      const x = xs();
      const post = take(await expectNoLeak(() => mix.classPosterior(x, t)));
      const expectedPost = points.flatMap((p) => W.map((_, k) => Math.exp(logPost(p, t, k))));
      // float32 log-terms of size <= ~40 carry ~40 * 6e-8 absolute error, so posteriors agree to ~3e-6 relative: 1e-5.
      expectClose(post, expectedPost, 1e-6, 1e-5, `q_${t}(k | x)`);
      for (let k = 0; k < 3; k++) {
        const got = take(await expectNoLeak(() => mix.predictEps(x, t, k)));
        // eps*_k = sqrt(1 - abar) Sigma_t^{-1} (x - sqrt(abar) m_k), by hand for 2x2.
        const C = sigmaT(k, t);
        const det = C[0][0] * C[1][1] - C[0][1] ** 2;
        const expected = points.flatMap((p) => {
          const d = [p[0] - Math.sqrt(s.alphaBars[t]) * M[k][0], p[1] - Math.sqrt(s.alphaBars[t]) * M[k][1]];
          const b = Math.sqrt(1 - s.alphaBars[t]) / det;
          return [b * (C[1][1] * d[0] - C[0][1] * d[1]), b * (C[0][0] * d[1] - C[0][1] * d[0])];
        });
        // float32 tables and a 2-term product: |eps| <= ~300 at t = 1 (tiny 1 - abar), ~1e-6 relative.
        expectClose(got, expected, 1e-5, 1e-5, `eps*(x, ${t} | ${k})`);
      }
      const uncond = take(mix.predictEps(x, t));
      expect(Array.from(take(mix.predictEps(x, t, mix.nullClass))), 'c = null is the unconditional eps*, bit for bit').to.deep.equal(Array.from(uncond));
      // per-example classes pick the same rows as one class per call
      const labels = [0, 3, 2, 1, 3];
      const c = tf.tensor1d(labels, 'int32');
      const perExample = take(await expectNoLeak(() => mix.predictEps(x, t, c)));
      const rows = labels.map((k, i) => Array.from(take(mix.predictEps(x, t, k))).slice(2 * i, 2 * i + 2));
      expectClose(perExample, rows.flat(), 0, 1e-6, `eps*(x, ${t} | c per example)`);
      c.dispose();
      x.dispose();
    }
  });

  it('Bayes for the conditional score: (eps*(x) - eps*(x | k)) / sqrt(1 - abar_t) is grad log q_t(k | x) (central differences in float64)', () => {
    const h = 1e-4;
    for (const t of [10, 50, 100]) {
      const x = xs();
      const uncond = take(mix.predictEps(x, t));
      for (let k = 0; k < 3; k++) {
        const cond = take(mix.predictEps(x, t, k));
        const lhs = Array.from(uncond, (u, i) => (u - cond[i]) / Math.sqrt(1 - s.alphaBars[t]));
        const fd = points.flatMap((p) =>
          [0, 1].map((j) => {
            const up = [...p];
            const down = [...p];
            up[j] += h;
            down[j] -= h;
            return (logPost(up, t, k) - logPost(down, t, k)) / (2 * h);
          }),
        );
        // truncation h^2/6 |f'''| <= 1e-8 * O(100) and float64 rounding 1e-16 / h = 1e-12 are far below the
        // library's float32 eps* (~1e-6 relative of |eps| <= 10, divided by sqrt(1 - abar) >= 0.3): 1e-4.
        expectClose(lhs, fd, 1e-4, 1e-4, `grad log q_${t}(${k} | x)`);
      }
      x.dispose();
    }
  });

  it('guidedDenoiser gives (1 + w) eps(x | c) - w eps(x), is the conditional model itself at w = 0, and drives both samplers', async () => {
    const x = xs();
    for (const w of [0, 0.5, 3]) {
      const g = guidedDenoiser(mix, 1, w);
      const got = take(await expectNoLeak(() => g.predictEps(x, 40)));
      const cond = take(mix.predictEps(x, 40, 1));
      const uncond = take(mix.predictEps(x, 40));
      if (w === 0) expect(Array.from(got)).to.deep.equal(Array.from(cond));
      // two float32 products and a difference of terms up to (1 + w) 10: 1e-6 relative of that.
      expectClose(got, Array.from(cond, (v, i) => (1 + w) * v - w * uncond[i]), 1e-5 * (1 + w), 0, `eps~ at w = ${w}`);
    }
    x.dispose();
    const g = guidedDenoiser(mix, 2, 1);
    for (const sampler of [sampleDDPM, sampleDDIM]) {
      const r = await expectNoLeak(() => sampler(g, s, [64, 2], { seed: 3 }));
      expect(r.x0.shape).to.deep.equal([64, 2]);
      const v = take(r.x0);
      expect(v.every(Number.isFinite)).to.equal(true);
    }
  });

  it('bad input is refused by name: a class out of range, a negative or NaN w, the null class to guide, a class for an unconditional model', () => {
    const x = xs();
    expect(() => mix.predictEps(x, 5, 4)).to.throw(/c must be an integer in \[0, 2\] or the null class 3, got 4/);
    expect(() => mix.predictEps(x, 5, -1)).to.throw(/c must be an integer in \[0, 2\] or the null class 3, got -1/);
    expect(() => mix.predictEps(x, 5, 1.5)).to.throw(/got 1\.5/);
    const bad = tf.tensor1d([0, 1, 7, 0, 0], 'int32');
    expect(() => mix.predictEps(x, 5, bad)).to.throw(/c\[2\] must be an integer in \[0, 2\] or the null class 3, got 7/);
    const short = tf.tensor1d([0, 1], 'int32');
    expect(() => mix.predictEps(x, 5, short)).to.throw(/c must have one class per example \(shape \[5\]\), got shape \[2\]/);
    const floats = tf.tensor1d([0, 1, 2, 0, 0]);
    expect(() => mix.predictEps(x, 5, floats as tf.Tensor1D)).to.throw(/c must be an int32 tensor, got dtype float32/);
    tf.dispose([bad, short, floats, x]);
    expect(() => guidedDenoiser(mix, 1, -0.5)).to.throw(/w must be a finite number in \[0, Infinity\], got -0.5/);
    expect(() => guidedDenoiser(mix, 1, NaN)).to.throw(/w must be a finite number in \[0, Infinity\], got NaN/);
    expect(() => guidedDenoiser(mix, 3, 1)).to.throw(/c must be an integer in \[0, 2\] \(a real class, not the null class 3\), got 3/);
    const gauss = gaussianOptimalEps([0, 0], [[1, 0], [0, 1]], s);
    expect(() => guidedDenoiser(gauss as unknown as ConditionalDenoiser, 0, 1)).to.throw(/model must be conditional \(numClasses >= 1\), got an unconditional model/);
    const unet = new UNetDenoiser(TINY);
    const img = tf.zeros([2, 8, 8, 1]);
    expect(() => unet.predictEps(img, 3, 1)).to.throw(/c must be left out: this U-Net is unconditional \(numClasses 0\), got class 1/);
    expect(() => guidedDenoiser(unet, 0, 1)).to.throw(/model must be conditional/);
    expect(() => new UNetDenoiser({ ...TINY, numClasses: 4, nullClass: 2 })).to.throw(/nullClass must be an integer in \[4, 4\], got 2/);
    expect(() => new UNetDenoiser({ ...TINY, nullClass: 2 })).to.throw(/nullClass needs numClasses >= 1/);
    expect(() => new UNetDenoiser({ ...TINY, numClasses: -1 })).to.throw(/numClasses must be an integer >= 0, got -1/);
    const cond = new UNetDenoiser({ ...TINY, numClasses: 4 });
    expect(() => cond.predictEps(img, 3, 5)).to.throw(/c must be an integer in \[0, 3\] or the null class 4, got 5/);
    expect(() => dropClassLabels([0, 1, 4], 4, 0.1, new Rng(0))).to.throw(/labels\[2\] must be an integer in \[0, 3\], got 4/);
    expect(() => dropClassLabels([0], 4, 1.5, new Rng(0))).to.throw(/pUncond must be a finite number in \[0, 1\], got 1.5/);
    tf.dispose(img);
    unet.dispose();
    cond.dispose();
  });
});

const TINY: Partial<UNetDenoiserConfig> = {
  imageSize: 8,
  channels: 1,
  baseChannels: 8,
  channelMults: [1, 2],
  numResBlocks: 1,
  groups: 4,
  attention: true,
  zeroInitOutput: false,
  seed: 5,
};

describe('the class-conditional U-Net', () => {
  const s = linearSchedule(50, 1e-3, 0.2);
  const img = () => tf.randomNormal([4, 8, 8, 1], 0, 1, 'float32', 11);

  it('an unconditional U-Net is unchanged: numClasses 0 is bit-identical to no numClasses, and a conditional one shares every other weight', () => {
    const plain = new UNetDenoiser(TINY);
    const zero = new UNetDenoiser({ ...TINY, numClasses: 0 });
    const cond = new UNetDenoiser({ ...TINY, numClasses: 10 });
    expect(plain.numClasses).to.equal(0);
    expect(plain.config).to.not.have.property('numClasses');
    expect(cond.config).to.include({ numClasses: 10, nullClass: 10 });
    expect([cond.numClasses, cond.nullClass]).to.deep.equal([10, 10]);
    const x = img();
    expect(Array.from(take(zero.predictEps(x, 7)))).to.deep.equal(Array.from(take(plain.predictEps(x, 7))));
    expect(cond.variableNames.slice(0, -1)).to.deep.equal(plain.variableNames);
    expect(cond.variableNames[cond.variableNames.length - 1]).to.equal('classEmbedding');
    expect(cond.trainableVariables[cond.trainableVariables.length - 1].shape).to.deep.equal([11, 32]);
    plain.trainableVariables.forEach((v, i) => expect(Array.from(v.dataSync()), plain.variableNames[i]).to.deep.equal(Array.from(cond.trainableVariables[i].dataSync())));
    // With the null row set to zero the conditional model's eps(x) is the unconditional model's, bit for bit:
    // the class embedding is the only difference, and it is added to the time embedding.
    const table = cond.trainableVariables[cond.trainableVariables.length - 1];
    const zeroed = tf.tidy(() => tf.concat([table.slice([0, 0], [10, 32]), tf.zeros([1, 32])], 0));
    table.assign(zeroed);
    zeroed.dispose();
    expect(Array.from(take(cond.predictEps(x, 7)))).to.deep.equal(Array.from(take(plain.predictEps(x, 7))));
    const clone = cond.clone();
    expect(Array.from(take(clone.predictEps(x, 7, 3)))).to.deep.equal(Array.from(take(cond.predictEps(x, 7, 3))));
    tf.dispose(x);
    [plain, zero, cond, clone].forEach((m) => m.dispose());
  });

  it('one network gives eps(x | c) and eps(x); the class embedding changes the output only when c is given', async () => {
    const m = new UNetDenoiser({ ...TINY, numClasses: 10 });
    const x = img();
    const uncond = take(await expectNoLeak(() => m.predictEps(x, 9)));
    expect(Array.from(take(m.predictEps(x, 9, m.nullClass))), 'c left out is the null class').to.deep.equal(Array.from(uncond));
    const byClass = [0, 3, 7].map((k) => take(m.predictEps(x, 9, k)));
    const rms = (a: Float64Array, b: Float64Array) => Math.sqrt(a.reduce((acc, v, i) => acc + (v - b[i]) ** 2, 0) / a.length);
    // N(0, 1) embedding rows move the time embedding by O(1): far more than float32 rounding (1e-6).
    for (const e of byClass) expect(rms(e, uncond)).to.be.above(1e-3);
    expect(rms(byClass[0], byClass[1])).to.be.above(1e-3);
    // Per-example classes: each example's row is its class's (GroupNorm never mixes examples).
    const labels = [3, 10, 0, 7];
    const c = tf.tensor1d(labels, 'int32');
    const mixed = take(await expectNoLeak(() => m.predictEps(x, 9, c)));
    const per = 64;
    labels.forEach((k, i) => {
      const ref = k === 10 ? uncond : byClass[[0, 3, 7].indexOf(k)];
      expectClose(mixed.slice(i * per, (i + 1) * per), ref.slice(i * per, (i + 1) * per), 1e-6, 1e-5, `example ${i} (class ${k})`);
    });
    // Changing class 3's row changes eps(x | 3) and nothing else.
    const table = m.trainableVariables[m.trainableVariables.length - 1];
    const bumped = tf.tidy(() => table.add(tf.oneHot([3], 11).reshape([11, 1]).mul(0.5)));
    table.assign(bumped);
    bumped.dispose();
    expect(Array.from(take(m.predictEps(x, 9)))).to.deep.equal(Array.from(uncond));
    expect(Array.from(take(m.predictEps(x, 9, 7)))).to.deep.equal(Array.from(byClass[2]));
    expect(rms(take(m.predictEps(x, 9, 3)), byClass[1])).to.be.above(1e-3);
    tf.dispose([x, c]);
    m.dispose();
  });

  it('training drops labels to the null class with probability p_uncond, and a step moves only the embedding rows of the labels it saw', async () => {
    const n = 20000;
    const labels = Array.from({ length: n }, (_, i) => i % 10);
    const dropped = dropClassLabels(labels, 10, 0.1, new Rng(4));
    const nullCount = dropped.filter((v) => v === 10).length;
    // Binomial(20000, 0.1): sd sqrt(n p (1 - p)) = 42.4; 4.5 sd.
    expect(Math.abs(nullCount - 0.1 * n)).to.be.below(4.5 * Math.sqrt(n * 0.1 * 0.9));
    dropped.forEach((v, i) => expect(v === 10 || v === labels[i]).to.equal(true));

    const x0 = tf.randomNormal([6, 8, 8, 1], 0, 1, 'float32', 2);
    for (const [pUncond, seen] of [[0, [2, 5]], [1, [10]]] as [number, number[]][]) {
      const m = new UNetDenoiser({ ...TINY, numClasses: 10 });
      const table = m.trainableVariables[m.trainableVariables.length - 1];
      const before = Array.from(table.dataSync());
      const tensorsBefore = tf.memory().numTensors;
      const opt = tf.train.adam(1e-2);
      await expectRejects(() => conditionalTrainStep(m, opt, s, x0, [2, 5], { pUncond }), /labels must have one class per example \(6\), got 2/);
      await expectRejects(() => conditionalTrainStep(m, opt, s, x0, [2, 5, 2, 5, 2, 11], { pUncond }), /labels\[5\] must be an integer in \[0, 9\], got 11/);
      const r = await conditionalTrainStep(m, opt, s, x0, [2, 5, 2, 5, 2, 2], { pUncond, seed: 1 });
      opt.dispose(); // Adam's two moment slots per weight are its state, not a leak
      expect(tf.memory().numTensors, 'tensors left by the step besides the optimizer state').to.equal(tensorsBefore);
      expect(Number.isFinite(r.loss)).to.equal(true);
      expect(Array.from(r.labels)).to.deep.equal(pUncond === 0 ? [2, 5, 2, 5, 2, 2] : [10, 10, 10, 10, 10, 10]);
      const after = table.dataSync();
      for (let k = 0; k <= 10; k++) {
        const moved = before.slice(k * 32, (k + 1) * 32).some((v, j) => v !== after[k * 32 + j]);
        expect(moved, `row ${k} (seen: ${seen})`).to.equal(seen.includes(k));
      }
      m.dispose();
    }
    x0.dispose();
  });

  it('a conditional U-Net trains on the wasm backend: its loss gradient, class embedding included, is the cpu backend\'s', async () => {
    // tf.gather's gradient (UnsortedSegmentSum) has no wasm kernel in tfjs 4.22: a gathered class
    // embedding made every training step on wasm throw. The same weights, inputs and labels (one of
    // them the null class) must give the same gradients on both backends.
    const labels = [3, 10, 0, 7];
    const grads = async (backend: 'cpu' | 'wasm', weights?: Float32Array[]) => {
      if (backend === 'cpu') await useCpu();
      else await useBestBackend({ prefer: 'wasm' });
      const m = new UNetDenoiser({ ...TINY, numClasses: 10 });
      if (weights) m.trainableVariables.forEach((v, i) => v.assign(tf.tensor(weights[i], v.shape)));
      const w = m.trainableVariables.map((v) => v.dataSync().slice() as Float32Array);
      const before = tf.memory().numTensors;
      const out = tf.tidy(() => {
        const x = tf.tensor4d(Float32Array.from({ length: 4 * 64 }, (_, i) => Math.sin(i * 0.37)), [4, 8, 8, 1]);
        const eps = tf.tensor4d(Float32Array.from({ length: 4 * 64 }, (_, i) => Math.cos(i * 0.21)), [4, 8, 8, 1]);
        const c = tf.tensor1d(labels, 'int32');
        const t = tf.tensor1d([3, 17, 30, 49], 'int32');
        const { grads: g } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(m.predictEps(x, t, c), eps))) as tf.Scalar, m.trainableVariables);
        return m.trainableVariables.map((v) => g[v.name].dataSync().slice() as Float32Array);
      });
      expect(tf.memory().numTensors, `tensors left on ${backend}`).to.equal(before);
      m.dispose();
      return { w, g: out };
    };
    const cpu = await grads('cpu');
    const wasm = await grads('wasm', cpu.w);
    await useCpu();
    const names = new UNetDenoiser({ ...TINY, numClasses: 10 });
    names.variableNames.forEach((name, i) => {
      const scale = Math.max(...cpu.g[i].map(Math.abs));
      // Two float32 evaluations of the same sums in different orders: their difference is a few
      // hundred units of roundoff (6e-8) of the largest entry at most, as the wasm kernel tests bound it.
      expectClose(wasm.g[i], cpu.g[i], 1e-5 * scale + 1e-7, 0, name);
    });
    const table = cpu.g[cpu.g.length - 1];
    for (let k = 0; k <= 10; k++) {
      const row = table.slice(k * 32, (k + 1) * 32);
      expect(row.some((v) => v !== 0), `embedding row ${k} gets a gradient only if a label in the batch is ${k}`).to.equal(labels.includes(k));
    }
    names.dispose();
  });

  it('a checkpoint of a conditional U-Net records numClasses and the null class, and loads into the same conditional model', async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-guidance-')), 'run');
    const m = new UNetDenoiser({ ...TINY, numClasses: 10 });
    await saveCheckpoint(dir, { model: m, ema: null, optimizer: null, schedule: s, step: 0, seed: 0, rngState: { rng: [1, 2, 3, 4, 0], samplerOrder: Int32Array.from([0]), samplerPos: 0 }, losses: new Float32Array(0), skipped: 0, train: {} });
    const run = await loadRun(dir);
    expect(run.manifest.model.config).to.include({ numClasses: 10, nullClass: 10 });
    const loaded = run.model as UNetDenoiser;
    expect([loaded.numClasses, loaded.nullClass]).to.deep.equal([10, 10]);
    const x = img();
    expect(Array.from(take(loaded.predictEps(x, 4, 6)))).to.deep.equal(Array.from(take(m.predictEps(x, 4, 6))));
    x.dispose();
    run.dispose();
    m.dispose();
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  });
});
