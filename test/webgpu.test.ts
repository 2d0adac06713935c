/**
 * The library on WebGPU (Dawn through the `webgpu` package) against the cpu backend: the same seeded
 * training (MlpDenoiser and a small UNetDenoiser, Adam), sampling, ELBO and U-Net forward pass must
 * give the same numbers within float32 round-off. Without a GPU, Mesa's lavapipe provides the
 * adapter (Debian bookworm-backports; bookworm's own Mesa 22 is too old for Dawn). Without any
 * adapter the tests are skipped with the reason, except under CI (CI=true, set by .ci/run), where a
 * missing adapter fails them. Only asynchronous reads (data(), array()) are used: dataSync() does
 * not work on webgpu under Node.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { FusedAdam, MlpDenoiser, UNetDenoiser, backendInfo, elboTerms, gaussianMixture2d, linearSchedule, sampleDDPM, train, useBestBackend } from '../lib';
import { ADAM_UPDATE, GROUP_NORM, adamVariablesPerDispatch, countDispatches, registerGroupNormKernel, registerWebgpuKernels } from '../lib/runtime/kernels';
import { groupNormAct } from '../lib/models/layers';
import { sumTensors } from '../lib/diffusion/validate';
import { expectClose, useCpu } from './support';

/** Every trainable weight of a model, read asynchronously and concatenated. */
async function weights(model: { trainableVariables: tf.Variable[] }): Promise<number[]> {
  const parts = await Promise.all(model.trainableVariables.map((v) => v.data()));
  return parts.flatMap((p) => Array.from(p as Float32Array));
}

/** The same seeded work on the current backend: losses, weights, samples, an ELBO, a U-Net forward pass. */
async function workload(): Promise<{ losses: number[]; weights: number[]; samples: number[]; bpd: number; unet: number[] }> {
  const s = linearSchedule(50, 1e-3, 0.2);
  const data = gaussianMixture2d(512, { seed: 1 });
  const model = new MlpDenoiser({ hidden: 32, depth: 2, seed: 0 });
  const { losses } = await train({ model, schedule: s, data, steps: 20, batchSize: 128, seed: 0, gradClip: 1 });
  const trained = await weights(model);
  const { x0 } = await sampleDDPM(model, s, [64, 2], { seed: 2 });
  const samples = Array.from(await x0.data());
  const head = data.slice(0, 32);
  const { bitsPerDim } = await elboTerms(model, s, head, { seed: 3 });
  const unetModel = new UNetDenoiser({ imageSize: 8, baseChannels: 8, groups: 4, channelMults: [1, 2], seed: 0, zeroInitOutput: false });
  const img = tf.randomUniform([2, 8, 8, 1], -1, 1, 'float32', 4);
  const eps = unetModel.predictEps(img, 7);
  const unet = Array.from(await eps.data());
  tf.dispose([data, head, x0, img, eps]);
  model.dispose();
  unetModel.dispose();
  return { losses: Array.from(losses), weights: trained, samples, bpd: bitsPerDim, unet };
}

/**
 * A few Adam steps of a small U-Net with every block kind the MNIST one has (GroupNorm, SiLU, time
 * projection, stride-2 down, nearest up + conv, skip concatenation, 1x1 skip convs, self-attention)
 * and no zero-initialised layers, so every weight gets a gradient.
 */
async function unetTraining(): Promise<{ losses: number[]; weights: number[][]; names: string[] }> {
  const s = linearSchedule(50, 1e-3, 0.2);
  const images = tf.randomUniform([16, 8, 8, 1], -1, 1, 'float32', 5);
  const model = new UNetDenoiser({ imageSize: 8, baseChannels: 8, groups: 4, channelMults: [1, 2], attention: true, seed: 1, zeroInitOutput: false });
  const { losses } = await train({ model, schedule: s, data: images, steps: 3, batchSize: 8, seed: 4, lr: 1e-3 });
  const w = (await Promise.all(model.trainableVariables.map((v) => v.data()))).map((d) => Array.from(d as Float32Array));
  const names = [...model.variableNames];
  images.dispose();
  model.dispose();
  return { losses: Array.from(losses), weights: w, names };
}

/** Deterministic values in [-1.5, 1.5] that depend on no backend's RNG. */
function values(n: number, seed: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.sin((i + 1) * 12.9898 * seed + seed) * 1.5;
  return v;
}

// 10 variables: more than one dispatch's worth at any limit up to 20 storage buffers, a remainder
// group, sizes 1 and odd, and one of 1.1M elements, more than the 4096 x 256 threads of one
// dispatch (the shader's grid-stride loop).
const ADAM_SHAPES = [[5, 4], [4], [1], [300], [3, 3, 2, 7], [1100000], [17], [2, 9], [64, 3], [5]];

/**
 * `steps` Adam steps from fixed weights with a fixed gradient sequence that does not depend on the
 * weights, so that two backends see the same gradients and differ only in the update arithmetic.
 */
async function adamRun(makeOptimizer: () => tf.Optimizer, steps: number): Promise<number[][]> {
  const vars = tf.tidy(() => ADAM_SHAPES.map((shape, i) => tf.variable(tf.tensor(values(shape.reduce((a, b) => a * b, 1), i + 1), shape))));
  const optimizer = makeOptimizer();
  for (let step = 1; step <= steps; step++) {
    tf.tidy(() => {
      const grads = vars.map((v, i) => ({ name: v.name, tensor: tf.tensor(values(v.size, 100 * step + i + 0.5), v.shape) }));
      optimizer.applyGradients(grads);
    });
  }
  const out = (await Promise.all(vars.map((v) => v.data()))).map((d) => Array.from(d as Float32Array));
  optimizer.dispose();
  tf.dispose(vars);
  return out;
}

/** act(GroupNorm(x + bias)) in float64, plain loops: the independent reference of the fused kernel. */
function groupNormReference(x: Float32Array, shape: number[], gamma: Float32Array, beta: Float32Array, groups: number, silu: boolean, bias?: Float32Array): Float64Array {
  const [B, H, W, C] = shape;
  const cpg = C / groups;
  const y = new Float64Array(x.length);
  const v = (b: number, p: number, c: number) => x[(b * H * W + p) * C + c] + (bias ? bias[b * C + c] : 0);
  for (let b = 0; b < B; b++) {
    for (let g = 0; g < groups; g++) {
      let sum = 0;
      for (let p = 0; p < H * W; p++) for (let c = g * cpg; c < (g + 1) * cpg; c++) sum += v(b, p, c);
      const mean = sum / (H * W * cpg);
      let sq = 0;
      for (let p = 0; p < H * W; p++) for (let c = g * cpg; c < (g + 1) * cpg; c++) sq += (v(b, p, c) - mean) ** 2;
      const inv = 1 / Math.sqrt(sq / (H * W * cpg) + 1e-5);
      for (let p = 0; p < H * W; p++) {
        for (let c = g * cpg; c < (g + 1) * cpg; c++) {
          const n = (v(b, p, c) - mean) * inv * gamma[c] + beta[c];
          y[(b * H * W + p) * C + c] = silu ? n / (1 + Math.exp(-n)) : n;
        }
      }
    }
  }
  return y;
}

/** Max |a - b| and the index where it is reached (for the failure message and the note). */
function maxAbsDiff(a: number[], b: number[]): number {
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

describe('the library on webgpu (Dawn)', function () {
  // Measured on lavapipe: about 25 s in all on 2 cores (most of it WGSL shader compilation), but
  // 2.4 min with the machine at load 15 (the U-Net test alone 103 s): a generous per-test limit.
  this.timeout(300000);
  const inCI = process.env.CI === 'true';
  let noAdapter: string | null = null;

  before(async () => {
    try {
      await useBestBackend({ prefer: 'webgpu' });
    } catch (e) {
      noAdapter = (e as Error).message;
    }
    await useCpu();
  });

  afterEach(useCpu);

  /** Skips the test (fails it under CI) when there is no adapter. */
  function requireAdapter(ctx: Mocha.Context): void {
    if (noAdapter === null) return;
    if (inCI) expect.fail(`CI=true requires WebGPU (Mesa lavapipe from bookworm-backports, see .ci/run), but there is no adapter: ${noAdapter}`);
    console.log(`      skipped: no WebGPU adapter (${noAdapter.slice(0, 200)}); under CI=true this fails`);
    ctx.skip();
  }

  it('trains an MlpDenoiser, samples, evaluates the ELBO and runs the U-Net as the cpu backend does', async function () {
    requireAdapter(this);
    await useCpu();
    const onCpu = await workload();
    await useBestBackend({ prefer: 'webgpu' });
    const before = tf.memory().numTensors;
    const onGpu = await workload();
    expect(tf.memory().numTensors, 'no leak on webgpu').to.equal(before);
    // Same arithmetic in a different summation order: float32 round-off (~1e-7 relative per
    // reduction) grows over 20 Adam steps and 50 sampling steps; 1e-4 relative leaves room for that
    // and still catches any real difference in the computation.
    expectClose(onGpu.losses, onCpu.losses, 1e-5, 1e-4, 'training losses');
    // Weights: each Adam step moves a weight by at most about lr = 1e-3, and by lr * m/sqrt(v), a
    // ratio that float32 round-off in the gradient changes only in the 6th digit unless the gradient
    // itself is at round-off level (a weight with |g| ~ 1e-7 can step either way). 20 steps x
    // 1e-3 x 1e-3 relative = 2e-5; 1e-5 + 1e-4 |w| (weights are O(0.1-1)) covers that with margin,
    // while one wrong step of one weight (1e-3) would fail.
    expectClose(onGpu.weights, onCpu.weights, 2e-5, 1e-4, 'MlpDenoiser weights after 20 Adam steps');
    expectClose(onGpu.samples, onCpu.samples, 1e-4, 1e-4, 'DDPM samples');
    expectClose(onGpu.bpd, onCpu.bpd, 1e-5, 1e-4, 'bits per dim');
    expectClose(onGpu.unet, onCpu.unet, 1e-5, 1e-4, 'U-Net eps');
    console.log(`      max |webgpu - cpu|: MLP weights ${maxAbsDiff(onGpu.weights, onCpu.weights).toExponential(1)}, losses ${maxAbsDiff(onGpu.losses, onCpu.losses).toExponential(1)}`);
  });

  it('trains a small UNetDenoiser (attention, down/up, skips) for 3 Adam steps as the cpu backend does', async function () {
    requireAdapter(this);
    await useCpu();
    const onCpu = await unetTraining();
    await useBestBackend({ prefer: 'webgpu' });
    const before = tf.memory().numTensors;
    const onGpu = await unetTraining();
    expect(tf.memory().numTensors, 'no leak on webgpu').to.equal(before);
    expect(onGpu.names).to.deep.equal(onCpu.names);
    // The U-Net's losses are means over 8 x 64 outputs of ~20 layers: float32 round-off is ~1e-6
    // relative there; 1e-4 relative leaves a factor 100.
    expectClose(onGpu.losses, onCpu.losses, 1e-5, 1e-4, 'U-Net training losses');
    // 3 Adam steps of lr 1e-3 move each weight by up to ~3e-3, by lr * m/sqrt(v). Float32 round-off
    // changes a gradient entry by ~1e-6 relative, more where the entry is a sum of cancelling terms
    // and small, and there m/sqrt(v) is most sensitive: the largest difference measured on lavapipe
    // was 4e-6 (middle.res2.conv2.kernel). 3e-5 + 1e-4 |w| allows 1e-5 per step and is still 30x
    // below one wrong step of one weight (~1e-3).
    // Except the attention key biases: q.(k + b) shifts every key's score for a query by the same
    // q.b, which softmax ignores, so their gradient is exactly 0 and what the backends compute is
    // round-off (~1e-9). Adam divides by sqrt(v) + 1e-7, turning that noise into steps of up to lr
    // in either direction (seen: -2.4e-5 on webgpu vs 1.6e-6 on cpu). For those: both stay within
    // the 3 steps' bound |w| <= 3 lr, and the forward pass does not depend on them anyway.
    let worst = 0;
    let worstName = '';
    onCpu.names.forEach((name, i) => {
      if (/\.attention\.k\.bias$/.test(name)) {
        for (const w of [...onCpu.weights[i], ...onGpu.weights[i]]) expect(Math.abs(w), `${name} (zero gradient)`).to.be.at.most(3e-3);
        return;
      }
      expectClose(onGpu.weights[i], onCpu.weights[i], 3e-5, 1e-4, `U-Net ${name} after 3 Adam steps`);
      const d = maxAbsDiff(onGpu.weights[i], onCpu.weights[i]);
      if (d > worst) [worst, worstName] = [d, name];
    });
    console.log(`      max |webgpu - cpu|: U-Net weights ${worst.toExponential(1)} (${worstName}), losses ${maxAbsDiff(onGpu.losses, onCpu.losses).toExponential(1)}`);
  });

  it('sums 12 tensors exactly (the library adds pairwise: tf.addN of >= 8 inputs exceeds the 8 storage buffers and returns a stale result)', async function () {
    requireAdapter(this);
    await useBestBackend({ prefer: 'webgpu' });
    // Small integers: every partial sum is exact in float32, so any other value is a wrong kernel.
    const xs = Array.from({ length: 12 }, (_, i) => tf.fill([5], i + 1));
    const total = sumTensors(xs);
    expect(Array.from(await total.data())).to.deep.equal([78, 78, 78, 78, 78]);
    tf.dispose([...xs, total]);
  });

  it('the webgpu Adam kernel (FusedAdam) gives tf.train.adam-on-cpu weights over 20 steps, in ceil(n / k) dispatches, leaving nothing behind', async function () {
    requireAdapter(this);
    await useCpu();
    const expected = await adamRun(() => tf.train.adam(0.01), 20);
    await useBestBackend({ prefer: 'webgpu' });
    expect(tf.getKernel(ADAM_UPDATE, 'webgpu'), 'the Adam kernel on webgpu').to.not.equal(undefined);
    const tensors = tf.memory().numTensors;
    const buffers = tf.backend().numDataIds();
    const actual = await adamRun(() => new FusedAdam(0.01), 20);
    expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
    expect(tf.backend().numDataIds(), 'backend buffers left behind').to.equal(buffers);
    // The same float32 formula in a different order (bias corrections folded differently, WGSL's
    // sqrt and division within 2.5 ulp). Weights stay below 2 in magnitude (start <= 1.5, 20 steps
    // of at most lr = 0.01), where one ulp is 1.2e-7; each step rounds w - update once on each side,
    // and the update itself (<= 0.01) differs by a few ulp of 0.01 (~1e-9). 20 steps x 1.2e-7 =
    // 2.4e-6 in the worst case, so 4e-6; a wrong moment, bias correction or variable slot moves a
    // weight by up to lr = 1e-2 in one step.
    expected.forEach((e, i) => expectClose(actual[i], e, 4e-6, 0, `variable ${i} [${ADAM_SHAPES[i]}] after 20 steps`));

    // One step's dispatches: the kernel's groups of k variables, against the tensor-op path.
    const k = adamVariablesPerDispatch((tf.backend() as unknown as { device: { limits: Record<string, number> } }).device.limits);
    const oneStep = async (withKernel: boolean) => {
      // tf.fill runs on the GPU: weights and gradients start in GPU buffers, as in training
      // (tensors made from JavaScript arrays may be computed on the CPU by tfjs-backend-webgpu).
      const v = tf.tidy(() => ADAM_SHAPES.map((shape) => tf.variable(tf.fill(shape, 0.5))));
      const opt = new FusedAdam(0.01);
      // FusedAdam registers its kernels when constructed: take the webgpu one away after that
      if (!withKernel) tf.unregisterKernel(ADAM_UPDATE, 'webgpu');
      try {
        const grads = v.map((x) => ({ name: x.name, tensor: tf.fill(x.shape, 1) }));
        await Promise.all(grads.map((g) => g.tensor.data()));
        const { dispatches } = await countDispatches(async () => {
          opt.applyGradients(grads);
          await v[0].data();
        });
        opt.dispose();
        tf.dispose([...v, ...grads.map((g) => g.tensor)]);
        return dispatches;
      } finally {
        if (!withKernel) registerWebgpuKernels();
      }
    };
    const fused = await oneStep(true);
    const ops = await oneStep(false);
    expect(fused, `dispatches of one fused Adam step (k = ${k})`).to.equal(Math.ceil(ADAM_SHAPES.length / k));
    expect(fused, 'fused vs tensor-op Adam dispatches').to.be.below(ops);
    console.log(`      Adam step of ${ADAM_SHAPES.length} variables: ${fused} dispatches (k = ${k}), ${ops} as tensor ops`);
  });

  it('asks the adapter for its storage-buffer and binding limits instead of the WebGPU defaults', async function () {
    requireAdapter(this);
    await useBestBackend({ prefer: 'webgpu' });
    const device = (tf.backend() as unknown as { device: { limits: Record<string, number> } }).device;
    // The adapter itself, asked independently of the backend.
    const adapter = await (globalThis as unknown as { navigator: { gpu: { requestAdapter(o: object): Promise<{ limits: Record<string, number> }> } } }).navigator.gpu.requestAdapter({
      powerPreference: 'high-performance',
    });
    for (const name of ['maxStorageBuffersPerShaderStage', 'maxBindingsPerBindGroup', 'maxStorageBufferBindingSize', 'maxComputeWorkgroupSizeX']) {
      expect(device.limits[name], `device.limits.${name}`).to.equal(adapter.limits[name]);
    }
    expect(backendInfo().webgpu?.limits?.maxStorageBuffersPerShaderStage, 'backendInfo().webgpu.limits').to.equal(adapter.limits.maxStorageBuffersPerShaderStage);
  });

  it('fused GroupNorm (+ bias, + SiLU) in one dispatch equals a float64 reference, and cuts the U-Net forward pass dispatches', async function () {
    requireAdapter(this);
    await useBestBackend({ prefer: 'webgpu' });
    expect(tf.getKernel(GROUP_NORM, 'webgpu'), 'the GroupNorm kernel on webgpu').to.not.equal(undefined);
    const cases: { shape: [number, number, number, number]; groups: number; silu: boolean; bias: boolean }[] = [
      { shape: [3, 5, 4, 8], groups: 4, silu: true, bias: true },
      { shape: [2, 7, 7, 64], groups: 8, silu: false, bias: false },
      { shape: [2, 28, 28, 32], groups: 8, silu: true, bias: false },
    ];
    const tensors = tf.memory().numTensors;
    for (const c of cases) {
      const [B, , , C] = c.shape;
      const n = c.shape.reduce((a, b) => a * b, 1);
      const xv = values(n, 7);
      const gv = values(C, 8).map((v) => 1 + v / 3);
      const bv = values(C, 9);
      const biasv = values(B * C, 10);
      const x = tf.tensor4d(xv, c.shape);
      const gamma = tf.tensor1d(gv);
      const beta = tf.tensor1d(bv);
      const bias = c.bias ? tf.tensor2d(biasv, [B, C]) : undefined;
      const { result: y, dispatches } = await countDispatches(async () => {
        const out = groupNormAct(x, gamma, beta, c.groups, { silu: c.silu, bias });
        await out.data();
        return out;
      });
      expect(dispatches, `dispatches of one fused GroupNorm ${JSON.stringify(c)}`).to.equal(1);
      const expected = groupNormReference(xv, c.shape, gv, bv, c.groups, c.silu, c.bias ? biasv : undefined);
      // Float32 sums over at most 3136 terms of |x| <= 3 in a tree of depth 8 (256 partial sums,
      // then 12 terms each): the mean and variance carry ~1e-6 relative error, and the output,
      // |y| <= ~5, inherits it: 2e-5 + 2e-5 |y| is a 4x margin, and a wrong group, channel or
      // bias index moves outputs by O(1).
      expectClose(Array.from(await y.data()), Array.from(expected), 2e-5, 2e-5, `GroupNorm ${JSON.stringify(c)}`);
      tf.dispose([x, gamma, beta, y, ...(bias ? [bias] : [])]);
    }
    expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);

    // The MNIST U-Net's forward pass (26 GroupNorms), fused against tensor ops.
    const model = new UNetDenoiser({ seed: 0 });
    const img = tf.randomUniform([2, 28, 28, 1], -1, 1, 'float32', 4);
    const forward = async () => {
      const { result: eps, dispatches } = await countDispatches(async () => {
        const e = model.predictEps(img, 500);
        await e.data();
        return e;
      });
      const out = Array.from(await eps.data());
      eps.dispose();
      return { out, dispatches };
    };
    await forward(); // compiles the shaders
    const fused = await forward();
    tf.unregisterKernel(GROUP_NORM, 'webgpu');
    let ops: { out: number[]; dispatches: number };
    try {
      await forward();
      ops = await forward();
    } finally {
      registerGroupNormKernel();
    }
    tf.dispose(img);
    model.dispose();
    // Same network, GroupNorm computed two ways in float32: eps is O(1); 1e-4 absolute allows the
    // ~1e-6 per-norm differences to grow through ~40 layers and still catches any wrong norm.
    expectClose(fused.out, ops.out, 1e-4, 1e-4, 'U-Net eps, fused vs tensor-op GroupNorm');
    expect(fused.dispatches, 'U-Net forward dispatches, fused vs tensor-op GroupNorm').to.be.below(ops.dispatches);
    console.log(`      U-Net forward pass: ${fused.dispatches} dispatches with fused GroupNorm, ${ops.dispatches} with tensor ops`);
  });
});
