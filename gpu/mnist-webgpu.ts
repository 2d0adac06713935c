/**
 * The GPU check (issue 3): trains the MNIST U-Net (UNetDenoiser, default config) on WebGPU for a
 * fixed number of steps, samples a grid with the text's DDPM sampler, and measures bits/dim on
 * held-out digits (the ELBO with the discretised decoder). gpu/pack.sh bundles this file with the
 * library into one JS file for a machine without Node or network; gpu/run-on-device.sh runs it.
 *
 * Settings (flags --name=value, or the environment variable in brackets):
 *   --steps [GPU_STEPS]          training steps (default 2000)
 *   --batch [GPU_BATCH]          batch size (default 128)
 *   --T [GPU_T]                  diffusion steps (default 1000; other T scale DDPM's linear betas by 1000/T)
 *   --samples [GPU_SAMPLES]      images in the sample grid (default 64, a square number)
 *   --bpd-n [GPU_BPD_N]          held-out digits for bits/dim (default 64)
 *   --train-seconds [GPU_TRAIN_SECONDS]  stop training early after this long (default 240)
 *   --deadline [GPU_DEADLINE_S]  skip what is left (sampling, bits/dim) past this many seconds from the start (default 420)
 *   --backend [GPU_BACKEND]      default webgpu
 *   GPU_SIZE=tiny                a smoke-test preset (steps 3, batch 4, T 10, samples 4, bpd-n 4)
 *   OUT / GPU_OUT                the output folder (default out/gpu)
 * Writes loss.csv, loss.png, samples.png and summary.json (rewritten after each phase, so a run cut
 * short still leaves what it finished).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';
import { UNetDenoiser, backendInfo, elboTerms, linearSchedule, loadMnist, sampleDDPM, useBestBackend } from '../lib';
import { drawTimesteps, simpleLossUnchecked } from '../lib/diffusion/loss';
import { Rng, deriveSeed } from '../lib/diffusion/random';
import { imageGridPng } from '../lib/data/image';
import { writeFileAtomic } from '../lib/workbook/report';

interface Settings {
  steps: number;
  batch: number;
  T: number;
  samples: number;
  bpdN: number;
  trainSeconds: number;
  deadline: number;
  backend: string;
  out: string;
  lr: number;
}

function settings(): Settings {
  const tiny = process.env.GPU_SIZE === 'tiny';
  const d: Settings = tiny
    ? { steps: 3, batch: 4, T: 10, samples: 4, bpdN: 4, trainSeconds: 240, deadline: 420, backend: 'webgpu', out: '', lr: 2e-4 }
    : { steps: 2000, batch: 128, T: 1000, samples: 64, bpdN: 64, trainSeconds: 240, deadline: 420, backend: 'webgpu', out: '', lr: 2e-4 };
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
    trainSeconds: int('train-seconds', 'GPU_TRAIN_SECONDS', d.trainSeconds),
    deadline: int('deadline', 'GPU_DEADLINE_S', d.deadline),
    backend: get('backend', 'GPU_BACKEND') ?? d.backend,
    out: get('out', 'GPU_OUT') ?? process.env.OUT ?? path.join('out', 'gpu'),
    lr: d.lr,
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
  if (backendInfo().webgpu?.isFallbackAdapter) say('WARNING: a software (fallback) WebGPU adapter: this measures the CPU, not a GPU');
  save();

  const train = loadMnist({ split: 'train' });
  const heldOut = loadMnist({ split: 'test', limit: s.bpdN });
  const data = train.images;
  const N = data.shape[0];
  say(`MNIST: ${N} training images, ${heldOut.images.shape[0]} held-out for bits/dim`);
  const sched = s.T === 1000 ? linearSchedule(1000) : linearSchedule(s.T, (1e-4 * 1000) / s.T, Math.min(0.999, (0.02 * 1000) / s.T));
  const model = new UNetDenoiser({ seed: 0 });
  const params = model.trainableVariables.reduce((n, v) => n + v.size, 0);
  summary.model = { config: model.config, params };
  say(`UNetDenoiser: ${params} parameters; training ${s.steps} steps of batch ${s.batch} (at most ${s.trainSeconds} s), Adam lr ${s.lr}`);

  // The training loop of lib/training/train.ts (simple loss, Adam), with a time cap and losses read back
  // asynchronously every `every` steps only, so the device is not stalled each step.
  const optimizer = tf.train.adam(s.lr);
  const rng = new Rng(deriveSeed(0, 0x7a1));
  const losses: number[] = [];
  const pending: tf.Scalar[] = [];
  const warmSteps = Math.min(10, Math.max(1, Math.floor(s.steps / 4)));
  let warmAt: { step: number; t: number } | null = null;
  const trainStart = Date.now();
  let step = 0;
  const flush = async () => {
    const stacked = tf.stack(pending);
    const values = await stacked.data();
    stacked.dispose();
    pending.forEach((l) => l.dispose());
    pending.length = 0;
    for (const v of values) {
      if (!Number.isFinite(v)) throw new Error(`the loss at step ${losses.length + 1} is ${v}`);
      losses.push(v);
    }
  };
  while (step < s.steps) {
    step++;
    const idx = Int32Array.from({ length: s.batch }, () => rng.int(0, N - 1));
    const tValues = drawTimesteps(sched.T, s.batch, rng);
    const noiseSeed = deriveSeed(0, 0xe95, step);
    pending.push(
      tf.tidy(() => {
        const x0 = tf.gather(data, tf.tensor1d(idx, 'int32'));
        const eps = tf.randomNormal(x0.shape, 0, 1, 'float32', noiseSeed);
        const t = tf.tensor1d(tValues, 'int32');
        const { value, grads } = tf.variableGrads(() => simpleLossUnchecked(model, sched, x0, t, eps), model.trainableVariables);
        optimizer.applyGradients(Object.keys(grads).map((name) => ({ name, tensor: grads[name] })));
        return value;
      }),
    );
    if (step === warmSteps || step % 50 === 0 || step === s.steps) {
      await flush();
      if (step === warmSteps) warmAt = { step, t: Date.now() };
      if (step % 200 === 0 || step === warmSteps) say(`step ${step}: loss ${losses[losses.length - 1].toFixed(4)}`);
      if ((Date.now() - trainStart) / 1000 > s.trainSeconds) break;
    }
  }
  if (pending.length) await flush();
  const trainSeconds = (Date.now() - trainStart) / 1000;
  const steady = warmAt && step > warmAt.step ? (step - warmAt.step) / ((Date.now() - warmAt.t) / 1000) : null;
  optimizer.dispose();
  summary.training = {
    steps: step,
    stoppedEarly: step < s.steps,
    seconds: trainSeconds,
    stepsPerSecond: step / trainSeconds,
    stepsPerSecondAfterWarmup: steady,
    warmupSteps: warmSteps,
    batch: s.batch,
    firstLoss: losses[0],
    lastLoss100: losses.slice(-100).reduce((a, b) => a + b, 0) / Math.min(100, losses.length),
    lossRange: [Math.min(...losses), Math.max(...losses)],
  };
  say(`trained ${step} steps in ${trainSeconds.toFixed(1)} s: ${(step / trainSeconds).toFixed(2)} steps/s overall, ${steady?.toFixed(2) ?? 'n/a'} steps/s after ${warmSteps} warm-up steps`);
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
