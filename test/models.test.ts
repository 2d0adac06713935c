/**
 * The neural denoisers and their layers, each checked against an independent computation: float64
 * JS re-derivations of the embedding, GroupNorm and the whole MLP, finite differences for the
 * gradients, and behavioural properties (shapes, seeds, clones, leaks, per-example independence).
 * The U-Net is tested at a tiny size: the cpu backend's conv backprop is far too slow for 28x28.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { Rng } from '../lib';
import type { TrainableDenoiser } from '../lib';
import {
  MlpDenoiser,
  MlpDenoiserConfig,
  UNetDenoiser,
  UNetDenoiserConfig,
  groupNorm,
  initKernel,
  timestepEmbedding,
  upsampleNearest,
} from '../lib';
import { expectClose, expectNoLeak, take } from './support';

/** Standard-normal float32 tensor of `shape` from a seeded JS stream (independent of tf's RNG). */
function normalTensor(rng: Rng, shape: number[], scale = 1): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => scale * rng.normal()), shape);
}

/** The sinusoidal embedding row of one t, re-derived in float64. */
function sinusoid64(t: number, dim: number, maxPeriod = 10000): number[] {
  const half = dim / 2;
  const row = new Array<number>(dim);
  for (let i = 0; i < half; i++) {
    const f = Math.exp((-Math.log(maxPeriod) * i) / half);
    row[i] = Math.sin(t * f);
    row[half + i] = Math.cos(t * f);
  }
  return row;
}

/** Reads every variable of a model into float64 arrays (in trainableVariables order). */
function readWeights(m: TrainableDenoiser): Float64Array[] {
  return m.trainableVariables.map((v) => Float64Array.from(v.dataSync()));
}

/** Sets every weight to a seeded normal draw of the given scale, so no weight is zero or one. */
function perturbWeights(m: TrainableDenoiser, seed: number, scale = 0.3): void {
  const rng = new Rng(seed);
  for (const v of m.trainableVariables) {
    tf.tidy(() => v.assign(tf.add(v, normalTensor(rng, v.shape, scale))));
  }
}

/**
 * The MLP's forward pass in float64 JS, from its weights [W0, b0, ..., Wout, bout] (row-major
 * kernels [in, out]): concat(x, sinusoid(t)) -> [dense -> SiLU] x depth -> dense.
 */
function mlpForward64(w: Float64Array[], c: MlpDenoiserConfig, x: number[][], t: number[]): number[][] {
  const silu = (z: number) => z / (1 + Math.exp(-z));
  return x.map((xRow, b) => {
    let h = [...xRow, ...sinusoid64(t[b], c.embedDim)];
    for (let layer = 0; layer <= c.depth; layer++) {
      const kernel = w[2 * layer];
      const bias = w[2 * layer + 1];
      const outDim = bias.length;
      const out = Array.from(bias);
      for (let i = 0; i < h.length; i++) for (let j = 0; j < outDim; j++) out[j] += h[i] * kernel[i * outDim + j];
      h = layer < c.depth ? out.map(silu) : out;
    }
    return h;
  });
}

const TINY_UNET: Partial<UNetDenoiserConfig> = {
  imageSize: 8,
  channels: 2,
  baseChannels: 8,
  channelMults: [1, 2, 2],
  numResBlocks: 1,
  groups: 4,
  attention: true,
  zeroInitOutput: false,
};

describe('timestepEmbedding', () => {
  it('equals the float64 sin/cos formula, first half sin and second half cos', () => {
    const ts = [1, 2, 37, 500, 1000];
    for (const [dim, maxPeriod] of [[16, 10000], [6, 100]]) {
      const got = take(timestepEmbedding(tf.tensor1d(ts, 'int32'), ts.length, dim, maxPeriod));
      // float32 rounds the argument t f_i <= 1000 to within 1000 * 2^-24 = 6e-5, and sin/cos
      // pass that error on unchanged; 1e-4 leaves room for the float32 sin/cos themselves.
      expectClose(got, ts.flatMap((t) => sinusoid64(t, dim, maxPeriod)), 1e-4, 0, `embedding dim ${dim}`);
    }
  });

  it('gives a number t the same rows as a tensor holding that t for every example', () => {
    const fromNumber = take(timestepEmbedding(123, 3, 8));
    const fromTensor = take(timestepEmbedding(tf.tensor1d([123, 123, 123], 'int32'), 3, 8));
    expect(Array.from(fromNumber)).to.deep.equal(Array.from(fromTensor));
  });

  it('rejects an odd dim and a t tensor of the wrong length, naming the parameter', () => {
    expect(() => timestepEmbedding(1, 2, 7)).to.throw(/dim must be an even integer.*got 7/);
    const t = tf.tensor1d([1, 2, 3], 'int32');
    expect(() => timestepEmbedding(t, 2, 8)).to.throw(/t must have one timestep per example \(shape \[2\]\), got shape \[3\]/);
    t.dispose();
    expect(() => timestepEmbedding(NaN, 2, 8)).to.throw(/t must be a finite number/);
  });
});

describe('groupNorm', () => {
  it('normalises each (example, group) by its own mean and biased variance, then applies gamma and beta per channel', () => {
    const rng = new Rng(1);
    const [B, H, W, C, G] = [2, 3, 4, 8, 4];
    // An offset and a scale per channel, so that a norm over the wrong axes gives a wrong answer.
    const x = Float64Array.from({ length: B * H * W * C }, (_, i) => (1 + (i % C)) * rng.normal() + 3 * (i % C) - 5);
    const gamma = Float64Array.from({ length: C }, () => rng.normal());
    const beta = Float64Array.from({ length: C }, () => rng.normal());
    const eps = 1e-5;
    const expected = new Float64Array(x.length);
    const at = (b: number, h: number, w: number, c: number) => ((b * H + h) * W + w) * C + c;
    const per = C / G;
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < G; g++) {
        let sum = 0;
        let count = 0;
        for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) for (let c = g * per; c < (g + 1) * per; c++) (sum += x[at(b, h, w, c)]), count++;
        const mean = sum / count;
        let sq = 0;
        for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) for (let c = g * per; c < (g + 1) * per; c++) sq += (x[at(b, h, w, c)] - mean) ** 2;
        const sd = Math.sqrt(sq / count + eps);
        for (let h = 0; h < H; h++) {
          for (let w = 0; w < W; w++) {
            for (let c = g * per; c < (g + 1) * per; c++) expected[at(b, h, w, c)] = ((x[at(b, h, w, c)] - mean) / sd) * gamma[c] + beta[c];
          }
        }
      }
    }
    const got = tf.tidy(() =>
      groupNorm(tf.tensor4d(Float32Array.from(x), [B, H, W, C]), tf.tensor1d(Float32Array.from(gamma)), tf.tensor1d(Float32Array.from(beta)), G),
    );
    // Normalised values are O(1) and each statistic sums 24 float32 values: errors are ~1e-6.
    expectClose(take(got), expected, 2e-5, 0, 'groupNorm');
  });

  it('rejects groups that do not divide the channels, naming groups', () => {
    const x = tf.zeros([1, 2, 2, 6]) as tf.Tensor4D;
    const ones = tf.ones([6]);
    expect(() => groupNorm(x, ones, ones, 4)).to.throw(/groups must divide the 6 channels, got 4/);
    tf.dispose([x, ones]);
  });
});

describe('upsampleNearest', () => {
  it('copies each pixel into a 2x2 block, and its gradient sums each block, for a batch of several', () => {
    const rng = new Rng(16);
    const [B, H, W, C] = [3, 2, 3, 2];
    const x = normalTensor(rng, [B, H, W, C]) as tf.Tensor4D;
    const dy = normalTensor(rng, [B, 2 * H, 2 * W, C]);
    const xv = x.dataSync();
    const dyv = dy.dataSync();
    const expectedY: number[] = [];
    const expectedGrad = new Float64Array(xv.length);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < 2 * H; i++) {
        for (let j = 0; j < 2 * W; j++) {
          for (let c = 0; c < C; c++) {
            const src = ((b * H + (i >> 1)) * W + (j >> 1)) * C + c;
            expectedY.push(xv[src]);
            expectedGrad[src] += dyv[((b * 2 * H + i) * 2 * W + j) * C + c];
          }
        }
      }
    }
    expectClose(take(upsampleNearest(x)), expectedY, 0, 0, 'upsampled');
    // Each gradient entry sums 4 float32 values. (tf.image.resizeNearestNeighbor fails this for batch > 1.)
    const grad = tf.grad((z: tf.Tensor) => tf.sum(tf.mul(upsampleNearest(z as tf.Tensor4D), dy)))(x);
    expectClose(take(grad), expectedGrad, 1e-6, 1e-6, 'gradient');
    tf.dispose([x, dy]);
  });
});

describe('initKernel', () => {
  it('draws He kernels with variance 2/fan_in and Glorot kernels with variance 2/(fan_in + fan_out), mean 0', () => {
    // Dense [in, out] and conv [kh, kw, in, out]: for a conv the receptive field counts in both fans.
    const cases: [number[], 'heNormal' | 'heUniform' | 'glorotNormal' | 'glorotUniform', number][] = [
      [[400, 200], 'heNormal', 2 / 400],
      [[400, 200], 'heUniform', 2 / 400],
      [[400, 200], 'glorotNormal', 2 / 600],
      [[3, 3, 64, 128], 'glorotUniform', 2 / (9 * 64 + 9 * 128)],
    ];
    for (const [shape, init, variance] of cases) {
      const v = take(initKernel(shape, init, 7));
      const n = v.length;
      const mean = v.reduce((a, b) => a + b, 0) / n;
      const sampleVar = v.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
      // With n >= 73728 draws the sample variance has relative sd <= sqrt(2/n) = 0.5%: 3% is > 5 sd.
      expectClose(sampleVar, variance, 0, 0.03, `${init} variance`);
      expectClose(mean, 0, 5 * Math.sqrt(variance / n), 0, `${init} mean`);
      if (init.endsWith('Uniform')) expect(Math.max(...v.map(Math.abs))).to.be.at.most(Math.sqrt(3 * variance));
    }
  });

  it('draws the same kernel from the same seed and a different one from another seed', () => {
    const a = take(initKernel([5, 7], 'heNormal', 3));
    const b = take(initKernel([5, 7], 'heNormal', 3));
    const c = take(initKernel([5, 7], 'heNormal', 4));
    expect(Array.from(a)).to.deep.equal(Array.from(b));
    expect(Array.from(a)).to.not.deep.equal(Array.from(c));
  });
});

/**
 * The properties every trainable denoiser must have, run for each model. `make` builds a model
 * with non-trivial weights; `input` draws an xt batch.
 */
function denoiserContract(name: string, make: (seed: number) => TrainableDenoiser, input: (rng: Rng, batch: number) => tf.Tensor): void {
  describe(`${name} (TrainableDenoiser contract)`, () => {
    it('returns eps with the shape of xt', () => {
      const m = make(0);
      const x = input(new Rng(1), 3);
      const eps = m.predictEps(x, 5);
      expect(eps.shape).to.deep.equal(x.shape);
      tf.dispose([x, eps]);
      m.dispose();
    });

    it('builds identical weights from the same seed and different weights from another seed', () => {
      const [a, b, c] = [make(11), make(11), make(12)];
      const [wa, wb, wc] = [a, b, c].map(readWeights);
      expect(wa.length).to.equal(wc.length);
      wa.forEach((w, i) => expect(Array.from(w), `variable ${i}`).to.deep.equal(Array.from(wb[i])));
      // Zero biases and unit gammas agree across seeds; every drawn kernel must differ.
      const differing = wa.filter((w, i) => w.some((v, j) => v !== wc[i][j])).length;
      const drawn = a.trainableVariables.filter((v) => v.shape.length >= 2).length;
      expect(differing).to.be.at.least(drawn);
      [a, b, c].forEach((m) => m.dispose());
    });

    it('clones into an independent model: same output, and changing the clone leaves the original alone', () => {
      const m = make(0);
      const x = input(new Rng(2), 2);
      const before = take(m.predictEps(x, 10));
      const copy = m.clone();
      expect(copy.config).to.deep.equal(m.config);
      expect(Array.from(take(copy.predictEps(x, 10)))).to.deep.equal(Array.from(before));
      for (const v of copy.trainableVariables) tf.tidy(() => v.assign(tf.add(v, 1)));
      expect(Array.from(take(m.predictEps(x, 10))), 'original after the clone changed').to.deep.equal(Array.from(before));
      expect(Array.from(take(copy.predictEps(x, 10)))).to.not.deep.equal(Array.from(before));
      copy.dispose();
      expect(Array.from(take(m.predictEps(x, 10))), 'original after the clone was disposed').to.deep.equal(Array.from(before));
      x.dispose();
      m.dispose();
    });

    it('frees every tensor it made when disposed', () => {
      const before = tf.memory().numTensors;
      const m = make(0);
      expect(tf.memory().numTensors - before, 'tensors held by a new model').to.equal(m.trainableVariables.length);
      const copy = m.clone();
      m.dispose();
      copy.dispose();
      expect(tf.memory().numTensors).to.equal(before);
    });

    it('leaks no tensors in predictEps, for a number t and a tensor t', async () => {
      const m = make(0);
      const x = input(new Rng(3), 2);
      const t = tf.tensor1d([3, 40], 'int32');
      await expectNoLeak(() => take(m.predictEps(x, 7)), 'predictEps(x, number)');
      await expectNoLeak(() => take(m.predictEps(x, t)), 'predictEps(x, tensor)');
      tf.dispose([x, t]);
      m.dispose();
    });

    it('gives example i with per-example t_i the output it gets alone with the number t_i', () => {
      const m = make(0);
      const x = input(new Rng(4), 3);
      const ts = [1, 17, 250];
      const batched = take(m.predictEps(x, tf.tensor1d(ts, 'int32')));
      const per = batched.length / 3;
      ts.forEach((ti, i) => {
        const alone = tf.tidy(() => m.predictEps(tf.slice(x, i, 1), ti));
        // Same arithmetic on the same example; only summation order inside kernels may differ.
        expectClose(batched.subarray(i * per, (i + 1) * per), take(alone), 1e-5, 1e-5, `example ${i}`);
      });
      x.dispose();
      m.dispose();
    });

    it('conditions on time: the same xt at different t gives a different eps', () => {
      const m = make(0);
      const x = input(new Rng(5), 2);
      const a = take(m.predictEps(x, 1));
      const b = take(m.predictEps(x, 500));
      const maxDiff = Math.max(...a.map((v, i) => Math.abs(v - b[i])));
      expect(maxDiff).to.be.greaterThan(1e-3);
      x.dispose();
      m.dispose();
    });

    it('rejects a t tensor of the wrong length or dtype and a t below 1, naming t', () => {
      const m = make(0);
      const x = input(new Rng(6), 2);
      const long = tf.tensor1d([1, 2, 3], 'int32');
      const float = tf.tensor1d([1, 2], 'float32');
      expect(() => m.predictEps(x, long)).to.throw(/t must have one timestep per example \(shape \[2\]\), got shape \[3\]/);
      expect(() => m.predictEps(x, float)).to.throw(/t must be an int32 tensor, got dtype float32/);
      expect(() => m.predictEps(x, 0)).to.throw(/t must be an integer >= 1, got 0/);
      expect(() => m.predictEps(x, 2.5)).to.throw(/t must be an integer >= 1, got 2.5/);
      tf.dispose([x, long, float]);
      m.dispose();
    });
  });
}

denoiserContract(
  'MlpDenoiser',
  (seed) => new MlpDenoiser({ seed }),
  (rng, batch) => normalTensor(rng, [batch, 2]),
);

denoiserContract(
  'UNetDenoiser (tiny)',
  (seed) => new UNetDenoiser({ ...TINY_UNET, seed }),
  (rng, batch) => normalTensor(rng, [batch, 8, 8, 2]),
);

describe('MlpDenoiser', () => {
  it('computes the same eps as a float64 re-derivation from its weights', () => {
    const m = new MlpDenoiser({ dataDim: 3, seed: 4 });
    perturbWeights(m, 9, 0.05); // non-zero biases, so a dropped bias would show
    const rng = new Rng(8);
    const xs = Array.from({ length: 5 }, () => [rng.normal(), rng.normal(), rng.normal()]);
    const ts = [1, 2, 100, 999, 1000];
    const got = take(m.predictEps(tf.tensor2d(xs), tf.tensor1d(ts, 'int32')));
    const expected = mlpForward64(readWeights(m), m.config, xs, ts).flat();
    // Three 128-wide float32 layers: relative error ~1e-6 per layer on O(1) values; 1e-4 is ample.
    expectClose(got, expected, 1e-4, 1e-4, 'eps');
    m.dispose();
  });

  it('has the gradients of central finite differences of its float64 re-derivation, for every weight and the input', () => {
    const m = new MlpDenoiser({ dataDim: 3, hidden: 16, depth: 2, embedDim: 8, seed: 5 });
    perturbWeights(m, 10, 0.1);
    const rng = new Rng(11);
    const xs = Array.from({ length: 4 }, () => [rng.normal(), rng.normal(), rng.normal()]);
    const ts = [1, 30, 300, 900];
    const lossWeights = xs.map(() => [rng.normal(), rng.normal(), rng.normal()]);
    const loss64 = (w: Float64Array[], x: number[][]) =>
      mlpForward64(w, m.config, x, ts).reduce((s, row, b) => s + row.reduce((r, v, d) => r + v * lossWeights[b][d], 0), 0);

    const x = tf.variable(tf.tensor2d(xs));
    const { grads } = tf.variableGrads(
      () => tf.sum(tf.mul(m.predictEps(x, tf.tensor1d(ts, 'int32')), tf.tensor2d(lossWeights))) as tf.Scalar,
      [...m.trainableVariables, x],
    );
    const weights = readWeights(m);
    // Central differences in float64 with h = 1e-6: truncation ~h^2 = 1e-12 and rounding
    // ~1e-16 / h = 1e-10, so the reference is exact for a float32 gradient, whose own error is
    // ~1e-6 relative on O(1) values; 1e-4 absolute + 1e-3 relative leaves a wide margin.
    const h = 1e-6;
    m.trainableVariables.forEach((v, k) => {
      const g = take(grads[v.name]);
      const fd = weights[k].map((w0, j) => {
        weights[k][j] = w0 + h;
        const up = loss64(weights, xs);
        weights[k][j] = w0 - h;
        const down = loss64(weights, xs);
        weights[k][j] = w0;
        return (up - down) / (2 * h);
      });
      expectClose(g, fd, 1e-4, 1e-3, `dL/d${m.variableNames[k]}`);
    });
    const gx = take(grads[x.name]);
    const fdx = xs.flatMap((row, b) =>
      row.map((x0, d) => {
        row[d] = x0 + h;
        const up = loss64(weights, xs);
        row[d] = x0 - h;
        const down = loss64(weights, xs);
        row[d] = x0;
        return (up - down) / (2 * h);
      }),
    );
    expectClose(gx, fdx, 1e-4, 1e-3, 'dL/dxt');
    x.dispose();
    m.dispose();
  });

  it('works for any data dimension D', () => {
    const m = new MlpDenoiser({ dataDim: 5, hidden: 8, depth: 1 });
    const eps = m.predictEps(tf.zeros([4, 5]), 3);
    expect(eps.shape).to.deep.equal([4, 5]);
    eps.dispose();
    m.dispose();
  });

  it('rebuilds from saved weights and rejects weights of the wrong shape, naming the variable', () => {
    const m = new MlpDenoiser({ seed: 3 });
    const x = tf.tensor2d([[0.5, -1]]);
    const rebuilt = new MlpDenoiser(m.config, m.trainableVariables.map((v) => v.clone()));
    expect(Array.from(take(rebuilt.predictEps(x, 9)))).to.deep.equal(Array.from(take(m.predictEps(x, 9))));
    const wrong = tf.zeros([3, 3]);
    expect(() => new MlpDenoiser({ seed: 3, dataDim: 2 }, [wrong])).to.throw(/weights\[0\] \(hidden\.0\.kernel\) must have shape \[34,128\], got \[3,3\]/);
    tf.dispose([x, wrong]);
    rebuilt.dispose();
    m.dispose();
  });

  it('rejects xt of the wrong shape and bad configs, naming the parameter and the valid range', () => {
    const m = new MlpDenoiser();
    const x = tf.zeros([4, 3]);
    const x1 = tf.zeros([4]);
    expect(() => m.predictEps(x, 1)).to.throw('xt must have shape [batch, 2], got [4,3]');
    expect(() => m.predictEps(x1, 1)).to.throw('xt must have shape [batch, 2], got [4]');
    expect(() => new MlpDenoiser({ embedDim: 7 })).to.throw(/embedDim must be an even integer >= 2, got 7/);
    expect(() => new MlpDenoiser({ depth: 0 })).to.throw(/depth must be an integer >= 1, got 0/);
    expect(() => new MlpDenoiser({ seed: -1 })).to.throw(/seed must be an integer >= 0, got -1/);
    tf.dispose([x, x1]);
    m.dispose();
  });
});

describe('UNetDenoiser', () => {
  it('maps the default 28x28 MNIST shape to itself through 28 -> 14 -> 7 and back', () => {
    const m = new UNetDenoiser({ baseChannels: 8, groups: 4 }); // default levels, narrower for speed
    const eps = m.predictEps(tf.zeros([1, 28, 28, 1]), 1);
    expect(eps.shape).to.deep.equal([1, 28, 28, 1]);
    eps.dispose();
    m.dispose();
  });

  it('starts as eps = 0 with zero-initialised outputs (DDPM), yet the output conv gets a gradient', () => {
    const m = new UNetDenoiser({ ...TINY_UNET, zeroInitOutput: true });
    const x = normalTensor(new Rng(12), [2, 8, 8, 2]);
    const eps = take(m.predictEps(x, 20));
    expect(eps.every((v) => v === 0)).to.equal(true);
    const outKernel = m.trainableVariables[m.variableNames.indexOf('out.conv.kernel')];
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(m.predictEps(x, 20), x)) as tf.Scalar, [outKernel]);
    const g = take(grads[outKernel.name]);
    expect(Math.max(...g.map(Math.abs))).to.be.greaterThan(1e-3);
    tf.dispose([x, value]);
    m.dispose();
  });

  it("keeps examples independent: changing example j never changes example i's eps", () => {
    const m = new UNetDenoiser(TINY_UNET);
    const rng = new Rng(13);
    const x = normalTensor(rng, [3, 8, 8, 2]);
    const t = tf.tensor1d([5, 5, 5], 'int32');
    const before = take(m.predictEps(x, t));
    const x2 = tf.tidy(() => tf.concat([tf.slice(x, 0, 2), tf.mul(tf.slice(x, 2, 1), 10)]));
    const after = take(m.predictEps(x2, t));
    const per = before.length / 3;
    // GroupNorm's statistics and attention's softmax are per example; the conv kernels compute
    // each example separately, so examples 0 and 1 should agree to float32 rounding.
    expectClose(after.subarray(0, 2 * per), before.subarray(0, 2 * per), 1e-6, 1e-6, 'unchanged examples');
    expect(Math.max(...after.subarray(2 * per).map((v, i) => Math.abs(v - before[2 * per + i])))).to.be.greaterThan(1e-3);
    tf.dispose([x, x2, t]);
    m.dispose();
  });

  it('has the gradients of central finite differences, for weights in every kind of layer and the input', () => {
    const m = new UNetDenoiser(TINY_UNET);
    perturbWeights(m, 14, 0.05); // non-zero biases and betas, gammas away from 1
    const rng = new Rng(15);
    const x = tf.variable(normalTensor(rng, [2, 8, 8, 2]));
    const t = tf.tensor1d([3, 700], 'int32');
    const lossWeights = normalTensor(rng, [2, 8, 8, 2]);
    const loss = () => tf.sum(tf.mul(m.predictEps(x, t), lossWeights)) as tf.Scalar;
    const picks: [string, number][] = [
      ['time.0.kernel', 5],
      ['convIn.kernel', 17],
      ['down.0.0.res.norm1.gamma', 3],
      ['down.0.0.res.conv1.kernel', 100],
      ['down.0.0.res.timeProjection.kernel', 40],
      ['down.1.0.res.skip.kernel', 9],
      ['down.0.downsample.kernel', 200],
      ['down.2.0.attention.q.kernel', 30],
      ['middle.attention.v.bias', 2],
      ['middle.res2.conv2.kernel', 123],
      ['up.1.0.res.norm2.beta', 6],
      ['up.1.upsample.kernel', 77],
      ['out.norm.gamma', 1],
      ['out.conv.kernel', 50],
    ];
    const vars = picks.map(([name]) => {
      const k = m.variableNames.indexOf(name);
      expect(k, `variable ${name}`).to.be.at.least(0);
      return m.trainableVariables[k];
    });
    const { value, grads } = tf.variableGrads(loss, [...vars, x]);
    value.dispose();
    // Central differences through the float32 model: the loss sums 256 O(1) terms to ~10, so
    // each evaluation is rounded by ~1e-5, which / 2h gives ~1e-3 with h = 1e-2; the truncation
    // h^2 f''' / 6 is ~1e-5 relative. Float32 finite differences are good to ~1e-3 relative
    // (2.7e-3 at worst here), so we allow 2e-3 + 1e-2 |g|; a wrong gradient is off by O(|g|).
    const h = 1e-2;
    const fdAt = (v: tf.Variable, j: number): number => {
      // A copy: dataSync may hand back the backend's own buffer, which must not be written to.
      const values = Float32Array.from(v.dataSync());
      const w0 = values[j];
      const at = (w: number) => {
        values[j] = w;
        tf.tidy(() => v.assign(tf.tensor(Float32Array.from(values), v.shape)));
        return take(loss())[0];
      };
      const d = (at(w0 + h) - at(w0 - h)) / (2 * h);
      at(w0);
      return d;
    };
    picks.forEach(([name, j], i) => {
      const g = take(grads[vars[i].name])[j];
      expectClose(g, fdAt(vars[i], j), 2e-3, 1e-2, `dL/d${name}[${j}]`);
    });
    const gx = take(grads[x.name]);
    for (const j of [0, 45, 127, 200]) expectClose(gx[j], fdAt(x, j), 2e-3, 1e-2, `dL/dxt[${j}]`);
    tf.dispose([x, t, lossWeights]);
    m.dispose();
  });

  it('rejects xt of the wrong shape and configs it cannot build, naming the parameter', () => {
    const m = new UNetDenoiser(TINY_UNET);
    const flat = tf.zeros([2, 128]);
    const wrongChannels = tf.zeros([2, 8, 8, 1]);
    expect(() => m.predictEps(flat, 1)).to.throw('xt must have shape [batch, 8, 8, 2], got [2,128]');
    expect(() => m.predictEps(wrongChannels, 1)).to.throw('xt must have shape [batch, 8, 8, 2], got [2,8,8,1]');
    expect(() => new UNetDenoiser({ imageSize: 30 })).to.throw(/imageSize must be divisible by 2\^\(levels - 1\) = 4.*got 30/);
    expect(() => new UNetDenoiser({ groups: 6 })).to.throw(/groups must divide every level's channels.*got 6/);
    expect(() => new UNetDenoiser({ baseChannels: 7, groups: 1 })).to.throw(/baseChannels must be even.*got 7/);
    expect(() => new UNetDenoiser({ channelMults: [] })).to.throw(/channelMults must be a non-empty array/);
    expect(() => new UNetDenoiser({ channelMults: [1, 0] })).to.throw(/channelMults\[1\] must be an integer >= 1, got 0/);
    tf.dispose([flat, wrongChannels]);
    m.dispose();
  });
});
