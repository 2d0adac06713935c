import { execFileSync } from 'child_process';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { BACKEND_ENV, BACKEND_ORDER, BackendChoice, backendInfo, probeUNetGradient, useBestBackend, useTrainingBackend } from '../lib';
import { expectClose, expectRejects, useCpu } from './support';

/** Deterministic float32 inputs that do not depend on any backend's RNG. */
function values(n: number, seed: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.sin((i + 1) * 12.9898 * seed) * 1.5;
  return v;
}

/** A small matMul, a conv2d forward pass and the gradient of a small MLP loss, read back as numbers. */
function smallComputations(): { matMul: Float32Array; conv2d: Float32Array; mlpGrads: Float32Array[] } {
  return {
    matMul: tf.tidy(() => tf.matMul(tf.tensor2d(values(16 * 32, 1), [16, 32]), tf.tensor2d(values(32 * 8, 2), [32, 8])).dataSync() as Float32Array),
    conv2d: tf.tidy(
      () =>
        tf
          .conv2d(tf.tensor4d(values(2 * 6 * 6 * 3, 3), [2, 6, 6, 3]), tf.tensor4d(values(3 * 3 * 3 * 4, 4), [3, 3, 3, 4]), 1, 'same')
          .dataSync() as Float32Array,
    ),
    mlpGrads: tf.tidy(() => {
      const x = tf.tensor2d(values(8 * 4, 5), [8, 4]);
      const y = tf.tensor2d(values(8, 6), [8, 1]);
      const loss = (w1: tf.Tensor, b1: tf.Tensor, w2: tf.Tensor) =>
        tf.mean(tf.square(tf.sub(tf.matMul(tf.tanh(tf.add(tf.matMul(x, w1), b1)), w2 as tf.Tensor2D), y)));
      const grads = tf.grads(loss)([
        tf.tensor2d(values(4 * 16, 7), [4, 16]),
        tf.tensor1d(values(16, 8)),
        tf.tensor2d(values(16, 9), [16, 1]),
      ]);
      return grads.map((g) => g.dataSync() as Float32Array);
    }),
  };
}

/** Each test of the calling suite starts without DIFFUSION_BACKEND and ends with it restored and on cpu. */
function isolateBackendEnv(): void {
  let savedEnv: string | undefined;
  beforeEach(() => {
    savedEnv = process.env[BACKEND_ENV];
    delete process.env[BACKEND_ENV];
  });
  afterEach(async () => {
    if (savedEnv === undefined) delete process.env[BACKEND_ENV];
    else process.env[BACKEND_ENV] = savedEnv;
    await useCpu();
  });
}

describe('backend choice (useBestBackend)', function () {
  // Everything here runs in well under a second except the one child process (about 1 s).
  this.timeout(15000);
  isolateBackendEnv();

  it('DIFFUSION_BACKEND=cpu chooses cpu, and tfjs really switches to it', async () => {
    await useBestBackend({ prefer: 'wasm' });
    expect(tf.getBackend()).to.equal('wasm');
    process.env[BACKEND_ENV] = 'cpu';
    const choice = await useBestBackend();
    expect(choice).to.deep.equal({ name: 'cpu', reasons: {}, tried: ['cpu'] });
    expect(tf.getBackend()).to.equal('cpu');
    expect(backendInfo().name).to.equal('cpu');
  });

  it('opts.prefer wins over DIFFUSION_BACKEND', async () => {
    process.env[BACKEND_ENV] = 'cpu';
    const choice = await useBestBackend({ prefer: 'wasm' });
    expect(choice.name).to.equal('wasm');
    expect(tf.getBackend()).to.equal('wasm');
  });

  it('wasm computes matMul, conv2d and an MLP gradient as the cpu backend does, to float32 rounding', async () => {
    const onCpu = smallComputations();
    const choice = await useBestBackend({ prefer: 'wasm' });
    expect(choice.name).to.equal('wasm');
    expect(tf.getBackend()).to.equal('wasm');
    const onWasm = smallComputations();
    // Both backends compute in float32 but sum in different orders (XNNPACK blocks and vectorises
    // its reductions), so the two results differ by rounding only, bounded by about
    // (reduction length <= 32) x (unit roundoff 6e-8) x (sum of |terms| <= 32 x 1.5 x 1.5 = 72)
    // = 1.4e-4; measured here: 7.6e-6 on matMul outputs up to 31. A layout bug is off by O(1).
    const atol = 2e-4;
    const rtol = 1e-5;
    expectClose(onWasm.matMul, onCpu.matMul, atol, rtol, 'matMul [16,32]x[32,8] on wasm vs cpu');
    expectClose(onWasm.conv2d, onCpu.conv2d, atol, rtol, 'conv2d 3x3 same on wasm vs cpu');
    onCpu.mlpGrads.forEach((g, i) => expectClose(onWasm.mlpGrads[i], g, atol, rtol, `MLP loss gradient #${i} on wasm vs cpu`));

    const info = backendInfo();
    expect(info.name).to.equal('wasm');
    expect(info.wasm, 'backendInfo().wasm').to.not.equal(undefined);
    expect(info.wasm!.threadCount).to.be.at.least(1);
    // tfjs-backend-wasm never enables threads under Node; the note must say so rather than stay silent.
    if (!info.wasm!.threads) expect(info.wasm!.note).to.match(/threads/);
  });

  it('an unknown name throws naming the parameter and listing the valid names, and changes nothing', async () => {
    process.env[BACKEND_ENV] = 'gpu';
    const fromEnv = await useBestBackend().then(
      () => expect.fail('DIFFUSION_BACKEND=gpu should throw'),
      (err: Error) => err.message,
    );
    expect(fromEnv).to.include('DIFFUSION_BACKEND').and.include('"gpu"');
    for (const name of BACKEND_ORDER) expect(fromEnv).to.include(`'${name}'`);

    const fromOpts = await useBestBackend({ prefer: 'WASM' }).then(
      () => expect.fail("prefer 'WASM' should throw"),
      (err: Error) => err.message,
    );
    expect(fromOpts).to.include('opts.prefer').and.include('"WASM"');
    for (const name of BACKEND_ORDER) expect(fromOpts).to.include(`'${name}'`);
    expect(tf.getBackend()).to.equal('cpu');
  });

  it("passes over 'tensorflow' saying tfjs-node is not installed, and refuses it when asked for", async function () {
    try {
      require.resolve('@tensorflow/tfjs-node');
      this.skip(); // installed here: the not-installed message cannot be checked
    } catch (err) {
      if ((err as { code?: string }).code !== 'MODULE_NOT_FOUND') throw err;
    }
    const choice = await useBestBackend();
    expect(choice.reasons.tensorflow).to.match(/@tensorflow\/tfjs-node is not installed/);

    process.env[BACKEND_ENV] = 'tensorflow';
    const message = await useBestBackend().then(
      () => expect.fail('DIFFUSION_BACKEND=tensorflow should throw without tfjs-node'),
      (err: Error) => err.message,
    );
    expect(message).to.include("DIFFUSION_BACKEND='tensorflow'").and.match(/not installed/);
    for (const name of BACKEND_ORDER) expect(message).to.include(`'${name}'`);
  });

  it('asking for webgpu without an adapter throws with the reason and leaves the previous backend working', async function () {
    const outcome = await useBestBackend({ prefer: 'webgpu' }).then(
      (choice) => choice,
      (err: Error) => err,
    );
    if (!(outcome instanceof Error)) {
      this.skip(); // this machine has a WebGPU adapter, so there is no failure to check
    }
    expect(outcome.message).to.include("opts.prefer='webgpu'").and.include('no WebGPU adapter');
    for (const name of BACKEND_ORDER) expect(outcome.message).to.include(`'${name}'`);
    expect(tf.getBackend()).to.equal('cpu');
    expect(tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(2)).dataSync()[0])).to.equal(3);
  });

  it('the automatic choice is the first available backend in BACKEND_ORDER, with a reason for each one before it', async () => {
    const choice = await useBestBackend();
    const k = BACKEND_ORDER.indexOf(choice.name);
    expect(k, `chosen ${choice.name}`).to.be.at.least(0);
    expect(tf.getBackend()).to.equal(choice.name);
    expect(choice.tried).to.deep.equal(BACKEND_ORDER.slice(0, k + 1));
    expect(Object.keys(choice.reasons)).to.have.members(BACKEND_ORDER.slice(0, k));
    for (const why of Object.values(choice.reasons)) expect(why).to.be.a('string').and.not.equal('');
    // Independently: each backend before the choice really is unavailable when asked for by name,
    // except a software WebGPU adapter (lavapipe), which is usable but passed over for being slower.
    for (const name of BACKEND_ORDER.slice(0, k)) {
      const refused = await useBestBackend({ prefer: name }).then(
        () => false,
        () => true,
      );
      if (name === 'webgpu' && /only a software WebGPU adapter/.test(choice.reasons.webgpu)) {
        expect(refused, 'a software adapter is still there when asked for by name').to.equal(false);
        expect(backendInfo().webgpu?.isFallbackAdapter, 'and it is a fallback adapter').to.equal(true);
        await useCpu();
        continue;
      }
      expect(refused, `${name} comes before ${choice.name}, so asking for it must fail`).to.equal(true);
    }
  });

  it('verbose prints one line with the choice and every reason', async () => {
    const lines: string[] = [];
    const log = console.log;
    console.log = (...args: unknown[]) => void lines.push(args.map(String).join(' '));
    let choice: BackendChoice;
    try {
      choice = await useBestBackend({ verbose: true });
    } finally {
      console.log = log;
    }
    expect(lines).to.have.length(1);
    expect(lines[0]).to.not.include('\n');
    expect(lines[0]).to.include(choice.name);
    for (const [name, why] of Object.entries(choice.reasons)) expect(lines[0]).to.include(`${name}: ${why}`);
  });

  it("opts.log takes the verbose line instead of console.log, and opts.preferLabel names the pin there and in errors (a CLI's '--backend')", async () => {
    const lines: string[] = [];
    const printed: string[] = [];
    const log = console.log;
    console.log = (...args: unknown[]) => void printed.push(args.map(String).join(' '));
    let choice: BackendChoice;
    try {
      choice = await useBestBackend({ prefer: 'cpu', preferLabel: '--backend', verbose: true, log: (line) => lines.push(line) });
    } finally {
      console.log = log;
    }
    expect(choice).to.deep.equal({ name: 'cpu', reasons: {}, tried: ['cpu'] });
    expect(printed, 'nothing went to console.log').to.deep.equal([]);
    expect(lines).to.deep.equal(['diffusion backend: cpu (pinned by --backend)']);

    const unknown = await useBestBackend({ prefer: 'gpu', preferLabel: '--backend' }).then(
      () => expect.fail("prefer 'gpu' should throw"),
      (err: Error) => err.message,
    );
    expect(unknown).to.match(/^--backend must be one of 'tensorflow', 'webgpu', 'wasm', 'cpu', got "gpu"$/);
    // Bad options are refused before any backend is touched.
    await useBestBackend({ prefer: 'wasm' });
    await expectRejects(() => useBestBackend({ prefer: 'cpu', log: 'stderr' as never }), /^opts\.log must be a function, got string$/);
    await expectRejects(() => useBestBackend({ prefer: 'cpu', preferLabel: '' }), /^opts\.preferLabel must be a non-empty string, got ""$/);
    expect(tf.getBackend()).to.equal('wasm');
  });

  it('a failed tf.setBackend is reported as the reason and leaves tfjs on a working backend', async () => {
    await useBestBackend({ prefer: 'wasm' }); // loads tfjs-backend-wasm so its registration exists
    await useCpu();
    const real = tf.engine().registryFactory.wasm;
    tf.removeBackend('wasm');
    tf.registerBackend(
      'wasm',
      async () => {
        throw new Error('simulated wasm init failure');
      },
      real.priority,
    );
    try {
      const message = await useBestBackend({ prefer: 'wasm' }).then(
        () => expect.fail('a failing wasm backend should throw'),
        (err: Error) => err.message,
      );
      expect(message).to.include("opts.prefer='wasm'").and.include('simulated wasm init failure');
      expect(tf.getBackend()).to.equal('cpu');
      expect(tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(2)).dataSync()[0])).to.equal(3);

      // Automatic choice falls through to cpu when wasm fails (tensorflow and webgpu being absent here).
      const choice = await useBestBackend();
      if (choice.name === 'cpu') expect(choice.reasons.wasm).to.include('simulated wasm init failure');
    } finally {
      tf.removeBackend('wasm');
      tf.registerBackend('wasm', real.factory, real.priority);
    }
    // The real wasm backend comes back for the tests that follow.
    expect((await useBestBackend({ prefer: 'wasm' })).name).to.equal('wasm');
  });

  it('importing lib/runtime/backend registers no backend, loads no optional package and sets no global', () => {
    const script = `
      const tf = require('@tensorflow/tfjs');
      const before = tf.engine().backendNames().join(',');
      const navigatorBefore = typeof globalThis.navigator;
      require('./lib/runtime/backend');
      const loaded = Object.keys(require.cache).filter((p) => /tfjs-backend-(wasm|webgpu)|tfjs-node|[\\\\/]webgpu[\\\\/]/.test(p));
      console.log(JSON.stringify({ before, after: tf.engine().backendNames().join(','), loaded,
        navigatorBefore, navigator: typeof globalThis.navigator, backend: tf.engine().backendName || null }));`;
    const out = execFileSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
      cwd: path.resolve(__dirname, '..'),
      encoding: 'utf8',
      timeout: 10000,
    });
    const seen = JSON.parse(out.trim().split('\n').pop()!);
    expect(seen.after, 'backends registered after the import').to.equal(seen.before);
    expect(seen.loaded, 'optional backend packages loaded by the import').to.deep.equal([]);
    expect(seen.navigator, 'typeof globalThis.navigator').to.equal(seen.navigatorBefore);
    expect(seen.backend, 'backend set by the import').to.equal(null);
  });
});

describe('training backend (useTrainingBackend: the best backend that takes a U-Net gradient)', function () {
  this.timeout(30000);
  isolateBackendEnv();

  it("trains on useBestBackend's choice when its U-Net probe passes (wasm on a machine without GPU), leaving no tensor", async () => {
    const best = await useBestBackend();
    await useCpu();
    const before = tf.memory().numTensors;
    const chosen = await useTrainingBackend();
    expect(tf.memory().numTensors, 'tensors left by the probe').to.equal(before);
    expect(chosen.name).to.equal(best.name);
    expect(tf.getBackend()).to.equal(best.name);
    expect(chosen.passedOver, 'the chosen backend is not passed over').to.not.have.property(best.name);
    expect(chosen.reason).to.include(`training on ${best.name}`).and.include('takes a U-Net gradient').and.not.include('\n');
    for (const [name, why] of Object.entries(best.reasons)) expect(chosen.reason).to.include(`${name}: ${why}`);
    if (best.name === 'wasm') {
      expect(chosen.fastCpu).to.equal(true);
      expect(chosen.onGpu).to.equal(false);
      expect(chosen.info.name).to.equal('wasm');
    }
  });

  it('when the probe fails on the first choice it falls back (webgpu, then cpu) and names each reason', async () => {
    const best = await useBestBackend();
    const probed: string[] = [];
    const chosen = await useTrainingBackend({
      probe: async () => {
        probed.push(tf.getBackend());
        return tf.getBackend() === 'cpu' ? null : `simulated: no gradient on ${tf.getBackend()}`;
      },
    });
    expect(probed[0]).to.equal(best.name);
    expect(probed[probed.length - 1]).to.equal('cpu');
    expect(chosen.name).to.equal('cpu');
    expect(tf.getBackend()).to.equal('cpu');
    expect(chosen.passedOver[best.name]).to.equal(`cannot train a U-Net: simulated: no gradient on ${best.name}`);
    // webgpu is either unavailable (its start-up error) or starts and fails the simulated probe
    if (best.name !== 'webgpu') expect(chosen.passedOver.webgpu).to.be.a('string').and.not.equal('');
    expect(chosen.reason).to.include('training on cpu').and.include(`${best.name}: cannot train a U-Net: simulated`);
    expect(chosen.fastCpu).to.equal(false);
  });

  it('a pinned backend gets no fallback: its failed probe throws naming the pin; no backend at all throws every reason', async () => {
    process.env[BACKEND_ENV] = 'cpu';
    const pinned = await useTrainingBackend({ probe: async () => 'simulated failure' }).then(
      () => expect.fail('a pinned backend that cannot train should throw'),
      (err: Error) => err.message,
    );
    expect(pinned).to.equal("DIFFUSION_BACKEND='cpu' cannot train a U-Net: simulated failure");
    const flag = await useTrainingBackend({ prefer: 'cpu', preferLabel: '--backend', probe: async () => 'simulated failure' }).then(
      () => expect.fail('a pinned backend that cannot train should throw'),
      (err: Error) => err.message,
    );
    expect(flag, "opts.preferLabel names the pin (the CLI's flag)").to.equal("--backend='cpu' cannot train a U-Net: simulated failure");
    delete process.env[BACKEND_ENV];
    const none = await useTrainingBackend({ probe: async () => `simulated on ${tf.getBackend()}` }).then(
      () => expect.fail('no backend can train: should throw'),
      (err: Error) => err.message,
    );
    expect(none).to.match(/^no backend can train a U-Net here: /).and.include('cpu: cannot train a U-Net: simulated on cpu');
    await expectRejects(() => useTrainingBackend({ fallbacks: ['gpu' as never] }), /opts\.fallbacks must hold names from .*got "gpu"/);
  });

  it('a real failed backward pass (Conv2D gradient removed) is reported, and the tensors tfjs kept for it are freed', async () => {
    const conv = tf.getGradient('Conv2D');
    expect(conv, "tfjs registers Conv2D's gradient").to.not.equal(undefined);
    const before = tf.memory().numTensors;
    tf.unregisterGradient('Conv2D');
    let why: string | null;
    try {
      why = await probeUNetGradient();
    } finally {
      tf.registerGradient(conv!);
    }
    expect(why).to.equal('Cannot compute gradient: gradient function not found for Conv2D.');
    // without the clean-up tfjs keeps 705 saved forward-pass tensors here
    expect(tf.memory().numTensors, 'tensors left by the failed probe').to.equal(before);
    expect(await probeUNetGradient(), 'the probe passes again once the gradient is back').to.equal(null);
    expect(tf.memory().numTensors).to.equal(before);
  });
});
