/**
 * The GPU check (issue 13): trains the library's MNIST U-Net (UNetDenoiser, DDPM config) with the
 * library's train() on WebGPU for a fixed time, counts the compute dispatches of one training step
 * and one sampling step, samples a grid with the text's DDPM sampler, and measures bits/dim on
 * held-out digits (the ELBO with the discretised decoder). Only the public API ('../lib') is used.
 * gpu/pack.sh bundles this file with the library into one JS file for a machine without Node or
 * network; gpu/run-on-device.sh runs it, then the PyTorch peer (gpu/torch_peer.py).
 *
 * Settings (flags --name=value, or the environment variable in brackets):
 *   --steps [GPU_STEPS]          at most this many training steps (default 1000000: the time limit decides)
 *   --batch [GPU_BATCH]          batch size (default 128)
 *   --T [GPU_T]                  diffusion steps (default 1000; namedSchedule('linear', T))
 *   --samples [GPU_SAMPLES]      images in the sample grid (default 64, a square number)
 *   --bpd-n [GPU_BPD_N]          held-out digits for bits/dim (default 64)
 *   --train-seconds [GPU_TRAIN_SECONDS]  stop training after this long, through train()'s signal (default 150)
 *   --deadline [GPU_DEADLINE_S]  skip what is left (sampling, bits/dim) past this many seconds from the start (default 330)
 *   --backend [GPU_BACKEND]      default webgpu
 *   GPU_ALLOW_FALLBACK=1         run on a software (fallback) adapter instead of refusing it (GPU_SIZE=tiny implies it)
 *   GPU_SIZE=tiny                a smoke-test preset (steps 3, batch 4, T 10, samples 4, bpd-n 4)
 *   OUT / GPU_OUT                the output folder (default out/gpu)
 * Writes loss.csv, loss.png, samples.png and summary.json (rewritten after each phase and at every
 * progress report, so a run cut short still leaves what it finished).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';
import {
  ADAM_UPDATE,
  GROUP_NORM,
  UNetDenoiser,
  backendInfo,
  countDispatches,
  elboTerms,
  imageGridPng,
  loadMnist,
  namedSchedule,
  registerKernels,
  sampleDDPM,
  train,
  useBestBackend,
  writeFileAtomic,
} from '../lib';

interface Settings {
  steps: number;
  batch: number;
  T: number;
  samples: number;
  bpdN: number;
  trainSeconds: number;
  deadline: number;
  backend: string;
  allowFallback: boolean;
  out: string;
  lr: number;
}

function settings(): Settings {
  const tiny = process.env.GPU_SIZE === 'tiny';
  const d = tiny
    ? { steps: 3, batch: 4, T: 10, samples: 4, bpdN: 4 }
    : { steps: 1000000, batch: 128, T: 1000, samples: 64, bpdN: 64 };
  const flags: Record<string, string> = {};
  for (const a of process.argv.slice(2)) {
    const m = /^--([a-z-]+)=(.+)$/.exec(a);
    if (!m) throw new Error(`arguments must be --name=value, got ${JSON.stringify(a)}`);
    flags[m[1]] = m[2];
  }
  const get = (flag: string, env: string): string | undefined => flags[flag] ?? (process.env[env] || undefined);
  const int = (flag: string, env: string, dflt: number): number => {
    const v = get(flag, env);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} (${env}) must be an integer >= 1, got ${JSON.stringify(v)}`);
    return n;
  };
  const s: Settings = {
    steps: int('steps', 'GPU_STEPS', d.steps),
    batch: int('batch', 'GPU_BATCH', d.batch),
    T: int('T', 'GPU_T', d.T),
    samples: int('samples', 'GPU_SAMPLES', d.samples),
    bpdN: int('bpd-n', 'GPU_BPD_N', d.bpdN),
    trainSeconds: int('train-seconds', 'GPU_TRAIN_SECONDS', 150),
    deadline: int('deadline', 'GPU_DEADLINE_S', 330),
    backend: get('backend', 'GPU_BACKEND') ?? 'webgpu',
    allowFallback: tiny || process.env.GPU_ALLOW_FALLBACK === '1',
    out: get('out', 'GPU_OUT') ?? process.env.OUT ?? path.join('out', 'gpu'),
    // DDPM's learning rate (Ho et al. 2020, CIFAR-10 and MNIST-sized models).
    lr: 2e-4,
  };
  if (!Number.isInteger(Math.sqrt(s.samples))) throw new Error(`--samples (GPU_SAMPLES) must be a square number (a k x k grid), got ${s.samples}`);
  return s;
}

/** A line plot of the loss (raw in grey, moving average in black) on log-spaced y, no text; ranges go in summary.json. */
function lossPng(losses: number[]): Buffer {
  const W = 800;
  const H = 400;
  const m = 20;
  const png = new PNG({ width: W, height: H });
  png.data.fill(255);
  const put = (x: number, y: number, g: number) => {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    const o = (y * W + x) * 4;
    png.data[o] = png.data[o + 1] = png.data[o + 2] = g;
    png.data[o + 3] = 255;
  };
  const window = Math.max(1, Math.round(losses.length / 50));
  const smooth = losses.map((_, i) => {
    const from = Math.max(0, i - window + 1);
    return losses.slice(from, i + 1).reduce((a, b) => a + b, 0) / (i + 1 - from);
  });
  const lo = Math.log(Math.max(1e-6, Math.min(...losses)));
  const hi = Math.log(Math.max(...losses));
  const px = (i: number) => m + Math.round(((W - 2 * m) * i) / Math.max(1, losses.length - 1));
  const py = (v: number) => H - m - Math.round(((H - 2 * m) * (Math.log(Math.max(v, 1e-6)) - lo)) / Math.max(1e-9, hi - lo));
  for (let x = m; x < W - m; x++) put(x, H - m, 0);
  for (let y = m; y < H - m; y++) put(m, y, 0);
  const line = (vals: number[], g: number) => {
    for (let i = 1; i < vals.length; i++) {
      const [x0, y0, x1, y1] = [px(i - 1), py(vals[i - 1]), px(i), py(vals[i])];
      const n = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
      for (let k = 0; k <= n; k++) put(Math.round(x0 + ((x1 - x0) * k) / n), Math.round(y0 + ((y1 - y0) * k) / n), g);
    }
  };
  line(losses, 190);
  line(smooth, 0);
  return PNG.sync.write(png);
}

/**
 * Dispatches of one train() step (fused Adam kernel, then Adam as tensor ops for comparison) and of
 * one sampling step (fused GroupNorm, then as tensor ops), on a throwaway copy of the model so that training starts from the seed.
 */
async function dispatchCounts(model: UNetDenoiser, data: tf.Tensor, s: Settings): Promise<Record<string, unknown>> {
  const probe = model.clone();
  const sched = namedSchedule('linear', Math.min(s.T, 20));
  const batch = data.slice(0, s.batch);
  const step = async () => (await countDispatches(() => train({ model: probe, schedule: sched, data: batch, steps: 1, batchSize: s.batch, lr: s.lr }))).dispatches;
  await step(); // compiles the shaders and uploads the weights
  const fused = await step();
  tf.unregisterKernel(ADAM_UPDATE, tf.getBackend());
  let tensorOps: number;
  try {
    await step();
    tensorOps = await step();
  } finally {
    registerKernels();
  }
  const x = tf.randomNormal([s.samples, 28, 28, 1], 0, 1, 'float32', 3);
  const sample = async () =>
    (
      await countDispatches(async () => {
        const { x0 } = await sampleDDPM(probe, sched, [s.samples, 28, 28, 1], { seed: 1, xT: x });
        await x0.data();
        x0.dispose();
      })
    ).dispatches / sched.T;
  const sampling = await sample();
  tf.unregisterKernel(GROUP_NORM, tf.getBackend());
  let samplingOps: number;
  try {
    samplingOps = await sample();
  } finally {
    registerKernels();
  }
  tf.dispose([x, batch]);
  probe.dispose();
  return {
    trainStep: { fusedAdam: fused, tensorOpAdam: tensorOps },
    samplingStep: { fusedGroupNorm: sampling, tensorOpGroupNorm: samplingOps },
    note: `one train() step at batch ${s.batch} (loss read back once, as train() does every progressEvery steps); sampling: ${sched.T} DDPM steps of ${s.samples} images, per step`,
  };
}

async function main(): Promise<void> {
  const s = settings();
  const started = Date.now();
  const elapsed = () => (Date.now() - started) / 1000;
  fs.mkdirSync(s.out, { recursive: true });
  const summary: Record<string, unknown> = { settings: s, date: new Date().toISOString(), node: process.version, tfjs: tf.version.tfjs };
  const save = () => writeFileAtomic(path.join(s.out, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  const say = (line: string) => console.log(`[${elapsed().toFixed(1)} s] ${line}`);

  const choice = await useBestBackend({ prefer: s.backend });
  summary.backend = { ...backendInfo(), chosen: choice.name };
  say(`backend ${JSON.stringify(summary.backend)}`);
  if (backendInfo().webgpu?.isFallbackAdapter) {
    if (!s.allowFallback) {
      summary.refused = `a software (fallback) WebGPU adapter (${backendInfo().webgpu?.adapter}): it measures the CPU, not a GPU; set GPU_ALLOW_FALLBACK=1 to run anyway`;
      save();
      throw new Error(summary.refused as string);
    }
    say('WARNING: a software (fallback) WebGPU adapter: this measures the CPU, not a GPU');
  }
  save();

  const trainSet = loadMnist({ split: 'train' });
  const heldOut = loadMnist({ split: 'test', limit: s.bpdN });
  const data = trainSet.images;
  say(`MNIST: ${data.shape[0]} training images, ${heldOut.images.shape[0]} held-out for bits/dim`);
  const sched = namedSchedule('linear', s.T);
  const model = new UNetDenoiser({ seed: 0 });
  const params = model.trainableVariables.reduce((n, v) => n + v.size, 0);
  summary.model = { config: model.config, params, variables: model.trainableVariables.length };

  if (tf.getBackend() === 'webgpu') {
    summary.dispatches = await dispatchCounts(model, data, s);
    say(`dispatches: ${JSON.stringify(summary.dispatches)}`);
    save();
  }

  say(`UNetDenoiser: ${params} parameters; train() for at most ${s.trainSeconds} s (${s.steps} steps) at batch ${s.batch}, Adam lr ${s.lr}`);
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), s.trainSeconds * 1000);
  const warmSteps = Math.min(25, Math.max(1, Math.floor(s.steps / 4)));
  let warm: { step: number; t: number } | null = null;
  let last: { step: number; t: number } | null = null;
  const curve: { step: number; loss: number; seconds: number }[] = [];
  const trainStart = Date.now();
  const training: Record<string, unknown> = { batch: s.batch, warmupSteps: warmSteps };
  summary.training = training;
  const steady = () => (warm && last && last.step > warm.step ? (last.step - warm.step) / ((last.t - warm.t) / 1000) : null);
  let result;
  try {
    result = await train({
      model,
      schedule: sched,
      data,
      steps: s.steps,
      batchSize: s.batch,
      lr: s.lr,
      seed: 0,
      progressEvery: Math.min(25, Math.max(1, Math.floor(s.steps / 3))),
      signal: stop.signal,
      onProgress: (p) => {
        // Each report follows a read of the losses, so the device has finished every step up to p.step.
        const now = Date.now();
        if (!warm && p.step >= warmSteps) warm = { step: p.step, t: now };
        last = { step: p.step, t: now };
        curve.push({ step: p.step, loss: p.loss, seconds: p.elapsedSeconds });
        Object.assign(training, { steps: p.step, seconds: p.elapsedSeconds, stepsPerSecondAfterWarmup: steady(), lastLoss: p.loss });
        if (curve.length % 20 === 1) say(`step ${p.step}: loss ${p.loss.toFixed(4)}, ${steady()?.toFixed(2) ?? '-'} steps/s`);
        save();
      },
    });
  } finally {
    clearTimeout(timer);
  }
  const losses = Array.from(result.losses);
  Object.assign(training, {
    steps: result.step,
    stoppedByTimeLimit: result.stopped,
    seconds: (Date.now() - trainStart) / 1000,
    stepsPerSecond: result.step / ((Date.now() - trainStart) / 1000),
    stepsPerSecondAfterWarmup: steady(),
    firstLoss: losses[0],
    lastLoss100: losses.slice(-100).reduce((a, b) => a + b, 0) / Math.min(100, losses.length),
    lossRange: [Math.min(...losses), Math.max(...losses)],
  });
  say(`trained ${result.step} steps in ${(training.seconds as number).toFixed(1)} s: ${steady()?.toFixed(2) ?? 'n/a'} steps/s after ${warmSteps} warm-up steps`);
  writeFileAtomic(path.join(s.out, 'loss.csv'), 'step,loss\n' + losses.map((l, i) => `${i + 1},${l}`).join('\n') + '\n');
  fs.writeFileSync(path.join(s.out, 'loss.png'), lossPng(losses));
  save();

  // The sample grid: the text's DDPM sampler, all images at once.
  const sampleStart = Date.now();
  try {
    const { x0 } = await sampleDDPM(model, sched, [s.samples, 28, 28, 1], {
      seed: 1,
      clipX0: true,
      onStep: (i) => {
        if (elapsed() > s.deadline) throw new Error(`deadline: ${s.deadline} s passed at sampling step ${i.step} of ${i.steps}`);
      },
    });
    const pixels = (await x0.data()) as Float32Array;
    x0.dispose();
    fs.writeFileSync(path.join(s.out, 'samples.png'), imageGridPng(pixels, s.samples, 28, 1, 2));
    summary.sampling = { samples: s.samples, T: sched.T, seconds: (Date.now() - sampleStart) / 1000 };
    say(`sampled ${s.samples} images (T = ${sched.T}) in ${((Date.now() - sampleStart) / 1000).toFixed(1)} s`);
  } catch (e) {
    summary.sampling = { skipped: (e as Error).message };
    say(`sampling stopped: ${(e as Error).message}`);
  }
  save();

  // Bits/dim on held-out digits: T model evaluations of the held-out batch; skipped if it cannot end by the deadline.
  const sampledSeconds = (summary.sampling as { seconds?: number }).seconds;
  const estimate = sampledSeconds !== undefined ? (sampledSeconds * s.bpdN) / s.samples : Infinity;
  if (elapsed() + estimate > s.deadline) {
    summary.bitsPerDim = { skipped: `estimated ${estimate.toFixed(0)} s would pass the ${s.deadline} s deadline` };
    say(`bits/dim skipped: ${(summary.bitsPerDim as { skipped: string }).skipped}`);
  } else {
    const bpdStart = Date.now();
    const terms = await elboTerms(model, sched, heldOut.images, { decoder: 'discretized', seed: 2 });
    summary.bitsPerDim = {
      value: terms.bitsPerDim,
      examples: s.bpdN,
      T: sched.T,
      seconds: (Date.now() - bpdStart) / 1000,
      note: 'one-sample ELBO estimate (one x_t per timestep), discretised decoder, held-out digits (loadMnist test split)',
    };
    say(`bits/dim on ${s.bpdN} held-out digits: ${terms.bitsPerDim.toFixed(3)} (${((Date.now() - bpdStart) / 1000).toFixed(1)} s)`);
  }
  summary.totalSeconds = elapsed();
  save();
  tf.dispose([data, heldOut.images]);
  model.dispose();
  say(`done; wrote ${fs.readdirSync(s.out).join(', ')} to ${s.out}`);
}

main()
  .then(() => process.exit(0)) // Dawn keeps the event loop alive
  .catch((e) => {
    console.error(e instanceof Error ? e.stack : e);
    process.exit(1);
  });
