/**
 * The kernels lib/runtime/kernels/wasm.ts registers for the wasm backend, each checked against the cpu
 * backend's own kernels (an independent implementation: plain JavaScript loops in
 * tfjs-backend-cpu): the conv gradients for strides 1 and 2, same/valid/explicit padding, batch > 1,
 * Cin != Cout and non-square shapes; the transposed and batched matMuls; and one training step of
 * a conv net and of a small UNetDenoiser. Also: no tensor left behind, in tfjs or in the backend.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { UNetDenoiser, linearSchedule, useBestBackend } from '../lib';
import { groupNormSilu } from '../lib/models/layers';
import { GROUP_NORM_SILU, GROUP_NORM_SILU_GRAD, setGroupNormRoute, simdCalls } from '../lib/runtime/kernels';
import { simpleLossUnchecked } from '../lib/diffusion/loss';
import { expectClose, useCpu } from './support';

/** Deterministic inputs in [-1.5, 1.5] that do not depend on any backend's RNG. */
function values(n: number, seed: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.sin((i + 1) * 12.9898 * seed + seed) * 1.5;
  return v;
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Runs fn on `backend` and returns its arrays (fn reads its tensors back itself). */
async function on<T>(backend: 'cpu' | 'wasm', fn: () => T): Promise<T> {
  if (backend === 'cpu') await useCpu();
  else await useBestBackend({ prefer: 'wasm' });
  return fn();
}

/** Backend-level buffers: catches TensorInfos a kernel made and never disposed (tf.memory() cannot see them). */
function backendBuffers(): number {
  return tf.backend().numDataIds();
}

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
interface ConvCase {
  x: [number, number, number, number];
  filter: [number, number, number, number];
  stride: number | [number, number];
  pad: Pad;
}

const CONV_CASES: ConvCase[] = [
  { x: [2, 5, 5, 3], filter: [3, 3, 3, 4], stride: 1, pad: 'same' },
  { x: [2, 6, 6, 3], filter: [3, 3, 3, 4], stride: 2, pad: 'same' },
  { x: [3, 7, 6, 2], filter: [3, 3, 2, 5], stride: 2, pad: 'valid' },
  { x: [1, 8, 5, 4], filter: [3, 2, 4, 2], stride: 1, pad: 'valid' },
  { x: [2, 9, 7, 3], filter: [3, 3, 3, 2], stride: [2, 1], pad: 'same' },
  { x: [2, 7, 7, 3], filter: [3, 3, 3, 2], stride: 2, pad: [[0, 0], [1, 2], [0, 1], [0, 0]] },
  { x: [2, 7, 6, 3], filter: [1, 1, 3, 6], stride: 1, pad: 'same' },
  { x: [4, 28, 28, 1], filter: [3, 3, 1, 8], stride: 1, pad: 'same' },
];

/** dx and dW of sum(conv2d(x, w) * dy) for a fixed, non-constant dy: the two backprop kernels' outputs. */
function convGrads(c: ConvCase): { dx: Float32Array; dW: Float32Array } {
  return tf.tidy(() => {
    const x = tf.tensor4d(values(size(c.x), 1), c.x);
    const w = tf.tensor4d(values(size(c.filter), 2), c.filter);
    const yShape = tf.conv2d(x, w, c.stride, c.pad).shape;
    const dy = tf.tensor4d(values(size(yShape), 3), yShape);
    const [dx, dW] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad))([x, w], dy);
    return { dx: dx.dataSync() as Float32Array, dW: dW.dataSync() as Float32Array };
  });
}

describe('wasm kernels (lib/runtime/kernels/wasm.ts) against the cpu backend', function () {
  this.timeout(60000);

  after(useCpu);

  it('registers Conv2DBackpropFilter for wasm, which tfjs-backend-wasm 4.22 lacks', async () => {
    await useBestBackend({ prefer: 'wasm' });
    expect(tf.getKernel('Conv2DBackpropFilter', 'wasm'), 'Conv2DBackpropFilter on wasm').to.not.equal(undefined);
  });

  for (const c of CONV_CASES) {
    it(`conv2d gradients (dx and dW) match cpu: x [${c.x}], filter [${c.filter}], stride ${c.stride}, pad ${JSON.stringify(c.pad)}`, async () => {
      const cpu = await on('cpu', () => convGrads(c));
      const buffers = await on('wasm', backendBuffers);
      const tensors = tf.memory().numTensors;
      const wasm = await on('wasm', () => convGrads(c));
      // float32 sums of up to ~300 terms in different orders: 1e-5 of the largest entry.
      expectClose(wasm.dx, cpu.dx, 1e-5 * Math.max(...cpu.dx.map(Math.abs)), 0, 'dx');
      expectClose(wasm.dW, cpu.dW, 1e-5 * Math.max(...cpu.dW.map(Math.abs)), 0, 'dW');
      expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
      expect(backendBuffers(), 'wasm buffers left behind by the kernels').to.equal(buffers);
    });
  }

  it('throws a clear Error for what the conv kernels do not support (NCHW data format)', async () => {
    await useBestBackend({ prefer: 'wasm' });
    const x = tf.zeros([1, 4, 4, 2]);
    const dy = tf.zeros([1, 4, 4, 3]);
    const run = () =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 2, 3] } as never);
    expect(run).to.throw(/wasm Conv2DBackpropFilter: dataFormat must be 'NHWC'.*got 'NCHW'/);
    const wrongDy = tf.zeros([1, 2, 2, 3]);
    expect(() =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: wrongDy }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 2, 3] } as never),
    ).to.throw(/dy must have shape \[1,4,4,3\], got \[1,2,2,3\]/);
    tf.dispose([x, dy, wrongDy]);
  });

  const MATMUL_CASES: [number[], number[], boolean, boolean][] = [
    [[64, 32], [64, 48], true, false],
    [[32, 64], [48, 64], false, true],
    [[64, 32], [48, 64], true, true],
    [[4, 32, 64], [4, 48, 64], false, true],
    [[4, 32, 64], [4, 64, 48], false, false],
    [[1, 32, 64], [4, 64, 48], false, false],
    [[4, 64, 32], [1, 64, 48], true, false],
    [[2, 3, 16, 20], [2, 3, 16, 24], true, false],
  ];
  for (const [aShape, bShape, ta, tb] of MATMUL_CASES) {
    it(`matMul matches cpu: a [${aShape}]${ta ? '^T' : ''} x b [${bShape}]${tb ? '^T' : ''}`, async () => {
      const product = () =>
        tf.tidy(() => tf.matMul(tf.tensor(values(size(aShape), 4), aShape), tf.tensor(values(size(bShape), 5), bShape), ta, tb).dataSync());
      const cpu = await on('cpu', product);
      const buffers = await on('wasm', backendBuffers);
      const wasm = await on('wasm', product);
      expectClose(wasm, cpu, 1e-5 * Math.max(...Array.from(cpu, Math.abs)), 0, 'product');
      expect(backendBuffers(), 'wasm buffers left behind').to.equal(buffers);
    });
  }

  it('Identity and same-dtype Cast share the input buffer (no copy), which outlives either tensor alone', async () => {
    await useBestBackend({ prefer: 'wasm' });
    const buffers = backendBuffers();
    const x = tf.tensor2d(values(6, 9), [2, 3]);
    const copy = tf.clone(x);
    const same = tf.cast(x, 'float32');
    const floats = tf.tensor1d([1.7, -2.2, 3]);
    const asInt = tf.cast(floats, 'int32');
    expect(backendBuffers(), 'clone and same-dtype cast add no buffer (x, and the int cast its input and output)').to.equal(buffers + 3);
    x.dispose();
    expectClose(copy.dataSync(), values(6, 9), 0, 0, 'clone after its source is disposed');
    expectClose(same.dataSync(), values(6, 9), 0, 0, 'cast after its source is disposed');
    expect(Array.from(asInt.dataSync())).to.deep.equal([1, -2, 3]);
    tf.dispose([copy, same, floats, asInt]);
    expect(backendBuffers(), 'buffers left behind').to.equal(buffers);
  });

  it('fused matMul with transposes, bias and relu matches cpu', async () => {
    const product = () =>
      tf.tidy(() =>
        tf.fused
          .matMul({
            a: tf.tensor2d(values(40 * 24, 6), [40, 24]),
            b: tf.tensor2d(values(16 * 40, 7), [16, 40]),
            transposeA: true,
            transposeB: true,
            bias: tf.tensor1d(values(16, 8)),
            activation: 'relu',
          })
          .dataSync(),
      );
    const cpu = await on('cpu', product);
    const wasm = await on('wasm', product);
    expectClose(wasm, cpu, 1e-5 * Math.max(...Array.from(cpu, Math.abs)), 0, 'fused product');
  });

  /** Loss, gradients and the weights after one Adam step (lr 1e-3) of a model given by its variables and loss. */
  function adamStep(vars: tf.Variable[], loss: () => tf.Scalar): { loss: number; grads: Float32Array[]; after: Float32Array[] } {
    const optimizer = tf.train.adam(1e-3);
    const out = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(loss, vars);
      const g = vars.map((v) => grads[v.name].dataSync() as Float32Array);
      optimizer.applyGradients(grads as tf.NamedTensorMap as never);
      return { loss: value.dataSync()[0], grads: g, after: vars.map((v) => v.dataSync() as Float32Array) };
    });
    optimizer.dispose();
    return out;
  }

  /**
   * Tolerances of the end-to-end steps: loss within 1e-5 relative; each variable's gradient within
   * 1e-4 of max(its largest entry, 1e-3 of the largest gradient entry of the model) (the floor is
   * for gradients that are zero in exact arithmetic and float noise on both backends, such as the
   * attention key bias's: softmax ignores a shift shared by all keys). Adam's first step moves each
   * weight by about lr sign(g): the weights agree within 1e-2 lr where |g| is above that floor (the
   * sign is certain), and within 2 lr (both moved by at most lr) where g is noise.
   */
  function compareSteps(name: string, wasm: ReturnType<typeof adamStep>, cpu: ReturnType<typeof adamStep>, before: Float32Array[]): void {
    const lr = 1e-3;
    expectClose(wasm.loss, cpu.loss, 0, 1e-5, `${name} loss`);
    const modelScale = Math.max(...cpu.grads.map((g) => Math.max(...g.map(Math.abs))));
    cpu.grads.forEach((g, k) => {
      const scale = Math.max(...g.map(Math.abs), 1e-3 * modelScale);
      expectClose(wasm.grads[k], g, 1e-4 * scale, 0, `${name} gradient of variable ${k}`);
      for (let i = 0; i < g.length; i++) {
        const tol = Math.abs(g[i]) > 1e-3 * scale ? 1e-2 * lr : 2 * lr;
        const moved = cpu.after[k][i] - before[k][i];
        if (Math.abs(wasm.after[k][i] - cpu.after[k][i]) > tol) {
          expect.fail(`${name}: variable ${k}[${i}] after one Adam step is ${wasm.after[k][i]} on wasm, ${cpu.after[k][i]} on cpu (moved ${moved}), tolerance ${tol}`);
        }
      }
    });
  }

  it('one Adam step of a 3x3 conv net (1 -> 8 -> 8 -> 1 channels, 12x10 images, batch 3, ReLU) matches cpu, leaving no tensor behind', async () => {
    const build = () => {
      const shapes: number[][] = [[3, 3, 1, 8], [8], [3, 3, 8, 8], [8], [3, 3, 8, 1], [1]];
      const vars = tf.tidy(() => shapes.map((s, i) => tf.variable(tf.tensor(values(size(s), 10 + i), s).mul(0.3))));
      const x = tf.tensor4d(values(3 * 12 * 10, 20), [3, 12, 10, 1]);
      const target = tf.tensor4d(values(3 * 12 * 10, 21), [3, 12, 10, 1]);
      const loss = () =>
        tf.tidy(() => {
          let h: tf.Tensor4D = x;
          for (let l = 0; l < 3; l++) {
            h = tf.add(tf.conv2d(h, vars[2 * l] as tf.Tensor4D, 1, 'same'), vars[2 * l + 1]);
            if (l < 2) h = tf.relu(h);
          }
          return tf.losses.meanSquaredError(target, h) as tf.Scalar;
        });
      return { vars, loss, dispose: () => tf.dispose([...vars, x, target]) };
    };
    const run = () => {
      const m = build();
      const before = m.vars.map((v) => v.dataSync().slice() as Float32Array);
      const out = adamStep(m.vars, m.loss);
      m.dispose();
      return { ...out, before };
    };
    const cpu = await on('cpu', run);
    await on('wasm', () => undefined);
    const tensors = tf.memory().numTensors;
    const buffers = backendBuffers();
    const wasm = await on('wasm', run);
    expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
    expect(backendBuffers(), 'wasm buffers left behind').to.equal(buffers);
    compareSteps('conv net', wasm, cpu, cpu.before);
  });

  it('one Adam step of a small UNetDenoiser (8x8, 8 channels, two levels, attention) matches cpu, leaving no tensor behind', async () => {
    const config = { imageSize: 8, baseChannels: 8, channelMults: [1, 2], groups: 2, zeroInitOutput: false, seed: 3 };
    const s = linearSchedule(100);
    const run = () => {
      const model = new UNetDenoiser(config);
      // Weights drawn on cpu and copied, so both backends start from the same numbers.
      const x0 = tf.tensor4d(values(2 * 8 * 8, 30), [2, 8, 8, 1]);
      const eps = tf.tensor4d(values(2 * 8 * 8, 31), [2, 8, 8, 1]);
      const t = tf.tensor1d([3, 70], 'int32');
      const before = model.trainableVariables.map((v) => v.dataSync().slice() as Float32Array);
      const out = adamStep(model.trainableVariables, () => simpleLossUnchecked(model, s, x0, t, eps));
      model.dispose();
      tf.dispose([x0, eps, t]);
      return { ...out, before };
    };
    const cpu = await on('cpu', run);
    // The seeded draws differ between backends: give wasm the cpu model's weights.
    const weights = cpu.before;
    const runFrom = () => {
      const model = new UNetDenoiser(config);
      tf.tidy(() => model.trainableVariables.forEach((v, i) => v.assign(tf.tensor(weights[i], v.shape))));
      const x0 = tf.tensor4d(values(2 * 8 * 8, 30), [2, 8, 8, 1]);
      const eps = tf.tensor4d(values(2 * 8 * 8, 31), [2, 8, 8, 1]);
      const t = tf.tensor1d([3, 70], 'int32');
      const out = adamStep(model.trainableVariables, () => simpleLossUnchecked(model, s, x0, t, eps));
      model.dispose();
      tf.dispose([x0, eps, t]);
      return out;
    };
    await on('wasm', () => undefined);
    const tensors = tf.memory().numTensors;
    const buffers = backendBuffers();
    const wasm = await on('wasm', runFrom);
    expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
    expect(backendBuffers(), 'wasm buffers left behind').to.equal(buffers);
    compareSteps('UNetDenoiser', wasm, cpu, weights);
  });
});

describe('kernel registration (lib/runtime/kernels/index.ts)', function () {
  this.timeout(60000);

  it('importing lib/runtime/kernels registers no kernel; registerKernels() registers the Adam step for cpu, wasm and webgpu, and the fused GroupNorm for wasm (forward, backward) and webgpu', () => {
    // A fresh process: in this one, earlier tests have registered everything already.
    const script = `
      const tf = require('@tensorflow/tfjs');
      const count = () => ['cpu', 'wasm', 'webgpu'].map((b) => tf.getKernelsForBackend(b).length).join(',');
      const before = count();
      const k = require('./lib/runtime/kernels');
      const afterImport = count();
      const adamAfterImport = ['cpu', 'wasm', 'webgpu'].filter((b) => tf.getKernel(k.ADAM_UPDATE, b));
      k.registerKernels();
      const adamAfterCall = ['cpu', 'wasm', 'webgpu'].filter((b) => tf.getKernel(k.ADAM_UPDATE, b));
      const filter = Boolean(tf.getKernel('Conv2DBackpropFilter', 'wasm'));
      const norms = [k.GROUP_NORM_SILU, k.GROUP_NORM_SILU_GRAD].map((n) => Boolean(tf.getKernel(n, 'wasm'))).concat(Boolean(tf.getKernel(k.GROUP_NORM, 'webgpu')));
      k.registerKernels();
      console.log(JSON.stringify({ before, afterImport, adamAfterImport, adamAfterCall, filter, norms, again: count() }));`;
    const out = execFileSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
      cwd: path.resolve(__dirname, '..'),
      encoding: 'utf8',
      timeout: 60000, // a fresh tsx + tfjs load: 1.4 s idle, 18 s measured at load 22
    });
    const seen = JSON.parse(out.trim().split('\n').pop()!);
    expect(seen.afterImport, 'kernels per backend (cpu,wasm,webgpu) after the import').to.equal(seen.before);
    expect(seen.adamAfterImport, 'backends with the Adam kernel after the import').to.deep.equal([]);
    expect(seen.adamAfterCall, 'backends with the Adam kernel after registerKernels()').to.deep.equal(['cpu', 'wasm', 'webgpu']);
    expect(seen.filter, 'Conv2DBackpropFilter for wasm after registerKernels()').to.equal(true);
    expect(seen.norms, 'GroupNorm-SiLU forward and backward for wasm, GroupNorm for webgpu').to.deep.equal([true, true, true]);
    // Idempotent: a second call adds nothing. cpu: Adam; wasm: Adam, Conv2DBackpropFilter and the two
    // GroupNorm-SiLU kernels; webgpu: Adam and GroupNorm.
    const [cpu, wasm, webgpu] = seen.before.split(',').map(Number);
    expect(seen.again, 'kernels per backend after a second registerKernels()').to.equal(`${cpu + 1},${wasm + 4},${webgpu + 2}`);
  });
});
interface NormCase {
  x: [number, number, number, number];
  groups: number;
  bias: boolean;
  /** Added to every x: GroupNorm must not lose precision to a large mean. */
  offset: number;
}

const NORM_CASES: NormCase[] = [
  { x: [2, 5, 4, 8], groups: 2, bias: true, offset: 0 },
  { x: [3, 4, 4, 6], groups: 3, bias: false, offset: 0 },
  { x: [1, 7, 3, 4], groups: 1, bias: true, offset: 0 },
  // One channel per group (instance norm); a per-channel bias would be normalised away, so none.
  { x: [2, 3, 3, 4], groups: 4, bias: false, offset: 0 },
  { x: [2, 3, 3, 4], groups: 2, bias: true, offset: 0 },
  { x: [2, 6, 6, 16], groups: 8, bias: true, offset: 50 },
  // More pixels than the SIMD kernel's float32 block (64): a full block and a partial one, 200 terms a group.
  { x: [1, 10, 10, 8], groups: 4, bias: true, offset: 0 },
  { x: [2, 10, 10, 12], groups: 6, bias: true, offset: 50 },
];

/** y and the gradients of sum(y dy) in x, bias, gamma and beta for a fixed, non-constant dy. */
function normGrads(c: NormCase): Record<'y' | 'dx' | 'dbias' | 'dgamma' | 'dbeta', Float32Array> {
  return tf.tidy(() => {
    const [n, , , ch] = c.x;
    const x = tf.add(tf.tensor4d(values(size(c.x), 41), c.x), c.offset) as tf.Tensor4D;
    const bias = tf.tensor2d(values(n * ch, 42), [n, ch]);
    const gamma = tf.add(tf.tensor1d(values(ch, 43)), 1);
    const beta = tf.tensor1d(values(ch, 44));
    const dy = tf.tensor4d(values(size(c.x), 45), c.x);
    const f = (a: tf.Tensor, b: tf.Tensor, g: tf.Tensor, be: tf.Tensor) =>
      groupNormSilu(a as tf.Tensor4D, g, be, c.groups, c.bias ? (b as tf.Tensor2D) : undefined);
    const y = f(x, bias, gamma, beta);
    const read = (t: tf.Tensor) => t.dataSync() as Float32Array;
    if (!c.bias) {
      const [dx, dgamma, dbeta] = tf.grads((a: tf.Tensor, g: tf.Tensor, be: tf.Tensor) => f(a, bias, g, be))([x, gamma, beta], dy);
      return { y: read(y), dx: read(dx), dbias: new Float32Array(0), dgamma: read(dgamma), dbeta: read(dbeta) };
    }
    const [dx, dbias, dgamma, dbeta] = tf.grads(f)([x, bias, gamma, beta], dy);
    return { y: read(y), dx: read(dx), dbias: read(dbias), dgamma: read(dgamma), dbeta: read(dbeta) };
  });
}

describe('fused GroupNorm-SiLU kernels (lib/runtime/kernels/groupnorm.ts) against the cpu backend\'s unfused ops', function () {
  this.timeout(60000);

  after(useCpu);

  it('is used on wasm (one forward and one backward kernel, no Mean or Sum) and not on cpu', async () => {
    const kernelsOf = async () => {
      const x = tf.tensor4d(values(2 * 4 * 4 * 4, 1), [2, 4, 4, 4]);
      const g = tf.ones([4]);
      const b = tf.zeros([4]);
      const info = await tf.profile(() => tf.grads((a: tf.Tensor) => groupNormSilu(a as tf.Tensor4D, g, b, 2))([x]));
      tf.dispose([x, g, b, ...(info.result as tf.Tensor[])]);
      return info.kernels.map((k) => k.name);
    };
    await useBestBackend({ prefer: 'wasm' });
    const wasm = await kernelsOf();
    expect(wasm.filter((k) => k === GROUP_NORM_SILU), 'forward kernels on wasm').to.have.length(1);
    expect(wasm.filter((k) => k === GROUP_NORM_SILU_GRAD), 'backward kernels on wasm').to.have.length(1);
    expect(wasm.filter((k) => k === 'Mean' || k === 'Sum'), 'reductions on wasm').to.have.length(0);
    await useCpu();
    const cpu = await kernelsOf();
    expect(cpu.filter((k) => k.startsWith('DiffusionGroupNorm')), 'fused kernels on cpu').to.have.length(0);
    expect(cpu, 'the unfused ops on cpu').to.include('Mean');
  });

  for (const route of ['auto', 'js'] as const) {
    for (const c of NORM_CASES) {
      const simd = route === 'auto' && c.x[3] % 4 === 0;
      it(`forward and the gradients in x, bias, gamma, beta match cpu (${simd ? 'wasm SIMD' : 'JavaScript'}): x [${c.x}], ${c.groups} groups, ${c.bias ? 'with' : 'without'} bias, offset ${c.offset}`, async () => {
        const cpu = await on('cpu', () => normGrads(c));
        await on('wasm', () => undefined);
        const tensors = tf.memory().numTensors;
        const buffers = backendBuffers();
        const before = setGroupNormRoute(route);
        const calls = simdCalls();
        let wasm: ReturnType<typeof normGrads>;
        try {
          wasm = await on('wasm', () => normGrads(c));
        } finally {
          setGroupNormRoute(before);
        }
        const now = simdCalls();
        expect([now.group_norm_silu - calls.group_norm_silu, now.group_norm_silu_grad - calls.group_norm_silu_grad], 'SIMD GroupNorm calls (forward, backward)').to.deep.equal(simd ? [2, 1] : [0, 0]);
        expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
        expect(backendBuffers(), 'wasm buffers left behind').to.equal(buffers);
        // cpu's float32 moments and gradient sums run over up to N H W C / G = 216 terms, each with
        // relative rounding 6e-8, and x's offset of 50 costs log2(50) ~ 6 bits more in z - mean on
        // cpu: 1e-5 of each output's largest entry (times 64 with the offset) covers both.
        const rel = (c.offset > 0 ? 64 : 1) * 1e-5;
        for (const key of ['y', 'dx', 'dbias', 'dgamma', 'dbeta'] as const) {
          if (key === 'dbias' && !c.bias) continue;
          const scale = Math.max(...Array.from(cpu[key], Math.abs));
          expect(scale, `${key} is not trivially zero`).to.be.greaterThan(1e-3);
          expectClose(wasm[key], cpu[key], rel * scale, 0, key);
        }
      });
    }
  }

  it('setGroupNormRoute rejects an unknown route, naming it and the valid ones', () => {
    expect(() => setGroupNormRoute('c' as never)).to.throw(/route must be 'auto' or 'js', got 'c'/);
  });

  it('rejects a bias of the wrong shape and groups that do not divide the channels, naming them', async () => {
    await useBestBackend({ prefer: 'wasm' });
    const x = tf.zeros([2, 3, 3, 4]) as tf.Tensor4D;
    const g = tf.ones([4]);
    const b = tf.zeros([4]);
    const wrongBias = tf.zeros([2, 3]) as tf.Tensor2D;
    expect(() => groupNormSilu(x, g, b, 2, wrongBias)).to.throw(/bias must have shape \[2, 4\].*got \[2,3\]/);
    expect(() => groupNormSilu(x, g, b, 3)).to.throw(/groups must divide the 4 channels, got 3/);
    expect(() => tf.engine().runKernel(GROUP_NORM_SILU, { x, bias: wrongBias, gamma: g, beta: b }, { groups: 2, eps: 1e-5 })).to.throw(
      /DiffusionGroupNormSilu: bias must have shape \[2,4\], got \[2,3\]/,
    );
    tf.dispose([x, g, b, wrongBias]);
  });
});

describe('wasm Sum over leading axes and SplitV (lib/runtime/kernels/layout.ts) against the cpu backend', function () {
  this.timeout(60000);

  after(useCpu);

  const SUM_CASES: { shape: number[]; axis: number | number[]; keepDims: boolean }[] = [
    { shape: [4, 5, 6, 7], axis: [0, 1, 2], keepDims: false },
    { shape: [4, 5, 6, 7], axis: [2, 0, 1], keepDims: true },
    { shape: [9, 13], axis: 0, keepDims: false },
    { shape: [3, 4, 5], axis: [-3, -2], keepDims: false },
    // Not leading axes: the package's own kernel, still checked.
    { shape: [4, 5, 6], axis: [1, 2], keepDims: false },
  ];
  for (const c of SUM_CASES) {
    it(`sum of x [${c.shape}] over axis ${JSON.stringify(c.axis)} (keepDims ${c.keepDims}) matches cpu, leaving no buffer behind`, async () => {
      const reduce = () => tf.tidy(() => {
        const y = tf.sum(tf.tensor(values(size(c.shape), 51), c.shape), c.axis, c.keepDims);
        return { shape: y.shape, data: y.dataSync() as Float32Array };
      });
      const cpu = await on('cpu', reduce);
      const buffers = await on('wasm', backendBuffers);
      const wasm = await on('wasm', reduce);
      expect(wasm.shape, 'shape').to.deep.equal(cpu.shape);
      // Sums of up to 120 terms of magnitude <= 1.5 in float32 on cpu: 120 * 1.5 * 6e-8 ~ 1e-5.
      expectClose(wasm.data, cpu.data, 2e-5, 0, 'sum');
      expect(backendBuffers(), 'wasm buffers left behind').to.equal(buffers);
    });
  }

  it('gradients of a sum over leading axes (the bias gradient of a conv) match cpu', async () => {
    const grad = () => tf.tidy(() => {
      const bias = tf.tensor1d(values(6, 52));
      const dy = tf.tensor4d(values(2 * 3 * 4 * 6, 53), [2, 3, 4, 6]);
      const x = tf.tensor4d(values(2 * 3 * 4 * 6, 54), [2, 3, 4, 6]);
      return tf.grad((b: tf.Tensor) => tf.add(x, b))(bias, dy).dataSync() as Float32Array;
    });
    const cpu = await on('cpu', grad);
    const wasm = await on('wasm', grad);
    expectClose(wasm, cpu, 1e-5, 0, 'bias gradient');
  });

  const SPLIT_CASES: { shape: number[]; sizes: number | number[]; axis: number }[] = [
    { shape: [2, 3, 4, 40], sizes: [16, 24], axis: 3 },
    { shape: [2, 3, 4, 200], sizes: [72, 128], axis: -1 },
    { shape: [2, 6, 5], sizes: 3, axis: 1 },
    { shape: [4, 3, 2], sizes: [1, -1], axis: 0 },
  ];
  for (const c of SPLIT_CASES) {
    it(`split of x [${c.shape}] into ${JSON.stringify(c.sizes)} on axis ${c.axis} matches cpu exactly, and the concat's gradient does too`, async () => {
      const split = () => tf.tidy(() => {
        const x = tf.tensor(values(size(c.shape), 55), c.shape);
        const parts = tf.split(x, c.sizes, c.axis);
        return parts.map((p) => ({ shape: p.shape, data: p.dataSync() as Float32Array }));
      });
      const concatGrad = () => tf.tidy(() => {
        const a = tf.tensor4d(values(2 * 3 * 3 * 5, 56), [2, 3, 3, 5]);
        const b = tf.tensor4d(values(2 * 3 * 3 * 7, 57), [2, 3, 3, 7]);
        const dy = tf.tensor4d(values(2 * 3 * 3 * 12, 58), [2, 3, 3, 12]);
        return tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.concat([p, q], 3))([a, b], dy).map((g) => g.dataSync() as Float32Array);
      });
      const cpu = await on('cpu', split);
      const cpuGrad = await on('cpu', concatGrad);
      const buffers = await on('wasm', backendBuffers);
      const wasm = await on('wasm', split);
      const wasmGrad = await on('wasm', concatGrad);
      expect(wasm.map((p) => p.shape), 'shapes').to.deep.equal(cpu.map((p) => p.shape));
      // A split copies: bit for bit.
      wasm.forEach((p, i) => expectClose(p.data, cpu[i].data, 0, 0, `part ${i}`));
      wasmGrad.forEach((g, i) => expectClose(g, cpuGrad[i], 0, 0, `concat gradient ${i}`));
      expect(backendBuffers(), 'wasm buffers left behind').to.equal(buffers);
    });
  }
});
