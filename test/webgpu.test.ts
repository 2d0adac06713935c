import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { MlpDenoiser, UNetDenoiser, elboTerms, gaussianMixture2d, linearSchedule, sampleDDPM, train, useBestBackend } from '../lib';
import { expectClose, useCpu } from './support';

/** The same seeded work on the current backend: losses, samples, an ELBO, a U-Net forward pass. */
async function workload(): Promise<{ losses: number[]; samples: number[]; bpd: number; unet: number[] }> {
  const s = linearSchedule(50, 1e-3, 0.2);
  const data = gaussianMixture2d(512, { seed: 1 });
  const model = new MlpDenoiser({ hidden: 32, depth: 2, seed: 0 });
  const { losses } = await train({ model, schedule: s, data, steps: 20, batchSize: 128, seed: 0, gradClip: 1 });
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
  return { losses: Array.from(losses), samples, bpd: bitsPerDim, unet };
}

describe('the library on webgpu (Dawn)', () => {
  afterEach(useCpu);

  it('trains, samples, evaluates the ELBO and runs the U-Net as the cpu backend does', async function () {
    await useCpu();
    const onCpu = await workload();
    try {
      await useBestBackend({ prefer: 'webgpu' });
    } catch (e) {
      // Without a GPU, Mesa's lavapipe (Debian bookworm-backports) provides one; bookworm's own Mesa is too old for Dawn.
      console.log(`      skipped: no WebGPU adapter (${(e as Error).message.slice(0, 160)})`);
      this.skip();
    }
    const before = tf.memory().numTensors;
    const onGpu = await workload();
    expect(tf.memory().numTensors, 'no leak on webgpu').to.equal(before);
    // Same arithmetic in a different summation order: float32 round-off (~1e-7 relative per
    // reduction) grows over 20 Adam steps and 50 sampling steps; 1e-4 relative leaves room for that
    // and still catches any real difference in the computation.
    expectClose(onGpu.losses, onCpu.losses, 1e-5, 1e-4, 'training losses');
    expectClose(onGpu.samples, onCpu.samples, 1e-4, 1e-4, 'DDPM samples');
    expectClose(onGpu.bpd, onCpu.bpd, 1e-5, 1e-4, 'bits per dim');
    expectClose(onGpu.unet, onCpu.unet, 1e-5, 1e-4, 'U-Net eps');
  });
});
