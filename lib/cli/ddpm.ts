#!/usr/bin/env node
/**
 * The command-line tool `ddpm` (package.json "bin"): train a denoiser into a run directory, resume
 * it, sample from it (PNG grid for images, CSV/JSON for 2-D points), evaluate it (bits/dim on
 * held-out MNIST digits, energy distance for 2-D sets) and describe it. Exit codes: 0 done, 1 a
 * failure while running (bad checkpoint, full disk, non-finite loss), 2 a usage error (unknown flag,
 * bad value), 130 stopped by SIGINT after saving a checkpoint (143 for SIGTERM).
 */
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { useBestBackend } from '../runtime/backend';
import { LoadedRun, MANIFEST_FILE, ModelKind, buildModel, modelKind, loadRun, loadRunForResume, readManifest, saveCheckpoint } from '../training/checkpoint';
import { checkerboard, gaussianMixture2d, moons, swissRoll } from '../data/toy';
import type { TrainableDenoiser } from '../diffusion/denoiser';
import { elboTerms } from '../diffusion/elbo';
import { imageGridPng } from '../data/image';
import { LOSS_TYPES, LossType } from '../diffusion/loss';
import { energyDistance } from '../data/metrics';
import { loadMnist } from '../data/mnist';
import { Progress, formatDuration } from '../runtime/progress';
import { deriveSeed } from '../diffusion/random';
import { sampleDDIM, sampleDDPM } from '../diffusion/sampling';
import { Schedule, cosineSchedule, linearSchedule } from '../diffusion/schedule';
import { createOptimizer, train } from '../training/train';

/** A mistake in the command line: printed with the command's usage hint, exit code 2. */
export class UsageError extends Error {}

const DATASETS = ['swissroll', 'moons', 'mixture', 'checkerboard', 'mnist'] as const;
type Dataset = (typeof DATASETS)[number];
const SCHEDULES = ['linear', 'cosine'] as const;
const BACKENDS = ['auto', 'cpu', 'wasm', 'webgpu', 'tensorflow'] as const;

/** Where the CLI writes; tests pass their own. */
export interface CliIO {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  err: NodeJS.WritableStream;
}

type OptionSpec = { type: 'string' | 'boolean'; short?: string };
type Values = Record<string, string | boolean | undefined>;

const COMMON_HELP = `  --backend NAME      auto (the fastest that works), cpu, wasm, webgpu or tensorflow; default auto
  -h, --help          this help`;

const HELP: Record<string, string> = {
  main: `ddpm: train, sample, evaluate and inspect denoising diffusion models (ddpm-workbook)

usage: ddpm <command> [options]      (ddpm <command> --help for its options)

commands:
  train    train a model into a run directory, or resume one (--resume)
  sample   draw samples from a run: a PNG grid of images, or CSV/JSON of 2-D points
  eval     bits/dim on held-out MNIST digits, or the energy distance of 2-D samples
  info     a run's config, steps done, last loss and backend

exit codes: 0 done, 1 failed while running, 2 bad command line, 130 interrupted (checkpoint saved)`,
  train: `usage: ddpm train --data SET --out RUN_DIR [options]
       ddpm train --out RUN_DIR --resume [--steps N] [--backend NAME] [--checkpoint-every N]

  --data SET              swissroll, moons, mixture, checkerboard or mnist (required unless --resume)
  --model KIND            mlp or unet; default mlp for 2-D sets, unet for mnist
  --steps N               total training steps; default 2000 (2-D) or 1000 (mnist)
  --batch B               batch size; default 128 (2-D) or 32 (mnist)
  --lr LR                 Adam's learning rate; default 1e-3
  --schedule NAME         linear or cosine; default linear
  --T T                   diffusion steps; default 1000
  --seed S                seed of the weights, data, batches and noise; default 0
  --out RUN_DIR           the run directory (required)
  --resume                continue the run in RUN_DIR from its last checkpoint
  --ema DECAY             keep an EMA of the weights, decay min(DECAY, (1+k)/(10+k)) at step k; 0 = none; default 0.999
  --checkpoint-every N    save a checkpoint every N steps (and at the end); default 100
  --skip-nonfinite        skip (and count) a batch whose loss or gradient is NaN/Inf instead of stopping
  --grad-clip C           clip the gradients' global norm to C; default none
  --loss NAME             simple, vlb or hybrid; default simple
  --n-data N              training examples: 2-D sets default 10000, mnist default all (9,000 train digits)
  mlp: --hidden H (128)  --depth D (3)  --embed-dim E (32)
  unet: --channels C (32)  --channel-mults 1,2,2  --res-blocks R (1)  --groups G (8)  --no-attention
  --quiet                 no progress bar
${COMMON_HELP}

A progress bar shows steps/s, loss and ETA (plain lines when stdout is not a terminal). Ctrl-C
saves a checkpoint, prints where, and exits with 130; --resume continues bit for bit.`,
  sample: `usage: ddpm sample --run RUN_DIR --out FILE [options]

  --run RUN_DIR       the run directory (required)
  --out FILE          .png (image runs: a grid), .csv or .json (2-D runs) (required)
  --n N               how many samples; default 16 (images) or 1000 (2-D)
  --sampler NAME      ddpm (T steps) or ddim; default ddpm
  --steps K           DDIM steps in [1, T]; default 50 (ddim only)
  --eta E             DDIM's eta >= 0 (0 deterministic); default 0 (ddim only)
  --seed S            seed of the noise; default 0
  --weights W         ema or model; default ema when the run keeps one
${COMMON_HELP}`,
  eval: `usage: ddpm eval --run RUN_DIR [options]

  mnist runs: bits/dim (the discretised ELBO, T model evaluations) on held-out digits;
  2-D runs: energy distance of DDPM samples to fresh data, with two references for scale.
  --run RUN_DIR       the run directory (required)
  --n N               held-out digits (default 16) or 2-D samples (default 1000)
  --seed S            seed; default 0
  --weights W         ema or model; default ema when the run keeps one
  --json              print the result as JSON
${COMMON_HELP}`,
  info: `usage: ddpm info --run RUN_DIR [--json]

  Prints the run's model and schedule config, training settings, steps done, last loss, backend,
  format and library version. --json prints the manifest (without the tensor list).
  --run RUN_DIR       the run directory (required)
  --json              machine-readable output
  -h, --help          this help`,
};

const SPECS: Record<string, Record<string, OptionSpec>> = {
  train: {
    data: { type: 'string' },
    model: { type: 'string' },
    steps: { type: 'string' },
    batch: { type: 'string' },
    lr: { type: 'string' },
    schedule: { type: 'string' },
    T: { type: 'string' },
    seed: { type: 'string' },
    out: { type: 'string' },
    resume: { type: 'boolean' },
    ema: { type: 'string' },
    'checkpoint-every': { type: 'string' },
    'skip-nonfinite': { type: 'boolean' },
    'grad-clip': { type: 'string' },
    loss: { type: 'string' },
    'n-data': { type: 'string' },
    hidden: { type: 'string' },
    depth: { type: 'string' },
    'embed-dim': { type: 'string' },
    channels: { type: 'string' },
    'channel-mults': { type: 'string' },
    'res-blocks': { type: 'string' },
    groups: { type: 'string' },
    'no-attention': { type: 'boolean' },
    quiet: { type: 'boolean' },
    backend: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  sample: {
    run: { type: 'string' },
    out: { type: 'string' },
    n: { type: 'string' },
    sampler: { type: 'string' },
    steps: { type: 'string' },
    eta: { type: 'string' },
    seed: { type: 'string' },
    weights: { type: 'string' },
    backend: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  eval: {
    run: { type: 'string' },
    n: { type: 'string' },
    seed: { type: 'string' },
    weights: { type: 'string' },
    json: { type: 'boolean' },
    backend: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  info: {
    run: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
};

// ---- value parsing: every bad value is a UsageError naming the flag, the value and the range ----

function intFlag(v: Values, name: string, lo: number, hi = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  const s = String(raw).trim();
  const n = /^[+-]?\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < lo || n > hi) {
    const range = hi === Number.MAX_SAFE_INTEGER ? `>= ${lo}` : `in [${lo}, ${hi}]`;
    throw new UsageError(`--${name} must be an integer ${range}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

function numFlag(v: Values, name: string, lo: number, hi: number, range: string, open: { lo?: boolean; hi?: boolean } = {}): number | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  const s = String(raw).trim();
  const n = s === '' ? NaN : Number(s);
  const ok = Number.isFinite(n) && (open.lo ? n > lo : n >= lo) && (open.hi ? n < hi : n <= hi);
  if (!ok) throw new UsageError(`--${name} must be a number ${range}, got ${JSON.stringify(raw)}`);
  return n;
}

function choiceFlag<T extends string>(v: Values, name: string, choices: readonly T[]): T | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  if (!choices.includes(raw as T)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
  return raw as T;
}

function requireFlag(v: Values, name: string, cmd: string): string {
  const raw = v[name];
  if (typeof raw !== 'string' || raw === '') throw new UsageError(`ddpm ${cmd} needs --${name}`);
  return raw;
}

function parse(cmd: string, args: string[]): Values {
  try {
    const { values, positionals } = parseArgs({ args, options: SPECS[cmd], strict: true, allowPositionals: true });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])} (options start with --)`);
    return values as Values;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

async function chooseBackend(v: Values, io: CliIO): Promise<string> {
  const name = choiceFlag(v, 'backend', BACKENDS) ?? 'auto';
  const choice = await useBestBackend(name === 'auto' ? {} : { prefer: name });
  const passed = Object.entries(choice.reasons).map(([k, r]) => `${k}: ${r.split('\n')[0]}`);
  io.err.write(`backend: ${choice.name}${passed.length ? ` (passed over ${passed.join('; ')})` : ''}\n`);
  return choice.name;
}

// ---- data ----

interface DataSpec {
  data: Dataset;
  nData: number | null;
  seed: number;
}

function loadData(d: DataSpec): tf.Tensor {
  const seed = deriveSeed(d.seed, 0xda7a);
  const n = d.nData ?? 10000;
  switch (d.data) {
    case 'swissroll':
      return swissRoll(n, { seed });
    case 'moons':
      return moons(n, { seed });
    case 'checkerboard':
      return checkerboard(n, { seed });
    case 'mixture':
      return gaussianMixture2d(n, { seed });
    case 'mnist': {
      const { images } = loadMnist({ split: 'train', limit: d.nData ?? undefined });
      return images;
    }
  }
}

/** Fresh 2-D points from the run's data distribution, never the training draw. */
function heldOutPoints(data: Dataset, n: number, seed: number): tf.Tensor2D {
  const s = deriveSeed(seed, 0x4e1d);
  if (data === 'swissroll') return swissRoll(n, { seed: s });
  if (data === 'moons') return moons(n, { seed: s });
  if (data === 'checkerboard') return checkerboard(n, { seed: s });
  return gaussianMixture2d(n, { seed: s });
}

// ---- train ----

/** The training settings a run keeps in its manifest ("train"), enough to rebuild data and optimizer. */
interface RunTrainSettings extends DataSpec {
  steps: number;
  batch: number;
  lr: number;
  emaDecay: number | null;
  gradClip: number | null;
  loss: LossType;
  checkpointEvery: number;
  skipNonFinite: boolean;
}

/** The manifest's training settings, checked field by field (a hand-edited manifest gets a clear error). */
function savedSettings(dir: string, t: Record<string, unknown>): RunTrainSettings {
  const where = `${path.join(dir, MANIFEST_FILE)}: train`;
  const bad = (field: string, want: string) => new Error(`${where}.${field} must be ${want}, got ${JSON.stringify(t[field])}`);
  const int = (k: string, lo: number) => typeof t[k] === 'number' && Number.isInteger(t[k]) && (t[k] as number) >= lo;
  if (!DATASETS.includes(t.data as Dataset)) throw bad('data', `one of ${DATASETS.join(', ')}`);
  if (!(t.nData === null || int('nData', 1))) throw bad('nData', 'an integer >= 1 or null');
  if (!int('seed', 0)) throw bad('seed', 'an integer >= 0');
  if (!int('steps', 1)) throw bad('steps', 'an integer >= 1');
  if (!int('batch', 1)) throw bad('batch', 'an integer >= 1');
  if (!(typeof t.lr === 'number' && t.lr > 0 && Number.isFinite(t.lr))) throw bad('lr', 'a number > 0');
  if (!(t.emaDecay === null || (typeof t.emaDecay === 'number' && t.emaDecay > 0 && t.emaDecay < 1))) throw bad('emaDecay', 'a number in (0, 1) or null');
  if (!(t.gradClip === null || (typeof t.gradClip === 'number' && t.gradClip > 0))) throw bad('gradClip', 'a number > 0 or null');
  if (!LOSS_TYPES.includes(t.loss as LossType)) throw bad('loss', `one of ${LOSS_TYPES.join(', ')}`);
  if (!int('checkpointEvery', 1)) throw bad('checkpointEvery', 'an integer >= 1');
  if (typeof t.skipNonFinite !== 'boolean') throw bad('skipNonFinite', 'true or false');
  return { ...(t as unknown as RunTrainSettings) };
}

const RESUME_FLAGS = new Set(['out', 'resume', 'steps', 'backend', 'checkpoint-every', 'skip-nonfinite', 'quiet', 'help']);

function trainSettings(v: Values): { settings: RunTrainSettings; kind: ModelKind; modelConfig: Record<string, unknown>; schedule: Schedule } {
  const data = choiceFlag(v, 'data', DATASETS);
  if (!data) throw new UsageError('ddpm train needs --data (swissroll, moons, mixture, checkerboard or mnist), or --resume');
  const image = data === 'mnist';
  const kind = choiceFlag(v, 'model', ['mlp', 'unet'] as const) ?? (image ? 'unet' : 'mlp');
  if (image && kind !== 'unet') throw new UsageError('--model mlp needs 2-D data; mnist images train with --model unet');
  if (!image && kind !== 'mlp') throw new UsageError(`--model unet needs images (--data mnist); ${data} is 2-D: use --model mlp`);
  const T = intFlag(v, 'T', 1, 100000) ?? 1000;
  const scheduleName = choiceFlag(v, 'schedule', SCHEDULES) ?? 'linear';
  const seed = intFlag(v, 'seed', 0, 2 ** 31 - 1) ?? 0;
  const nData = intFlag(v, 'n-data', 1, image ? 1e5 : 1e7) ?? null;
  const ema = numFlag(v, 'ema', 0, 1, 'in [0, 1)', { hi: true }) ?? 0.999;
  const settings: RunTrainSettings = {
    data,
    nData,
    seed,
    steps: intFlag(v, 'steps', 1) ?? (image ? 1000 : 2000),
    batch: intFlag(v, 'batch', 1) ?? (image ? 32 : 128),
    lr: numFlag(v, 'lr', 0, 1e6, 'in (0, 1e6]', { lo: true }) ?? 1e-3,
    emaDecay: ema === 0 ? null : ema,
    gradClip: numFlag(v, 'grad-clip', 0, Infinity, '> 0', { lo: true }) ?? null,
    loss: choiceFlag(v, 'loss', LOSS_TYPES) ?? 'simple',
    checkpointEvery: intFlag(v, 'checkpoint-every', 1) ?? 100,
    skipNonFinite: v['skip-nonfinite'] === true,
  };
  for (const [flag, other] of [['hidden', 'unet'], ['depth', 'unet'], ['embed-dim', 'unet'], ['channels', 'mlp'], ['channel-mults', 'mlp'], ['res-blocks', 'mlp'], ['groups', 'mlp'], ['no-attention', 'mlp']]) {
    if (v[flag] !== undefined && kind === other) throw new UsageError(`--${flag} is a ${other === 'mlp' ? 'unet' : 'mlp'} option; this run trains --model ${kind}`);
  }
  let modelConfig: Record<string, unknown>;
  if (kind === 'mlp') {
    modelConfig = { dataDim: 2, seed };
    const h = intFlag(v, 'hidden', 1, 1 << 16);
    const d = intFlag(v, 'depth', 1, 64);
    const e = intFlag(v, 'embed-dim', 2, 4096);
    if (e !== undefined && e % 2 !== 0) throw new UsageError(`--embed-dim must be an even integer >= 2, got ${JSON.stringify(v['embed-dim'])}`);
    if (h !== undefined) modelConfig.hidden = h;
    if (d !== undefined) modelConfig.depth = d;
    if (e !== undefined) modelConfig.embedDim = e;
  } else {
    modelConfig = { imageSize: 28, channels: 1, seed };
    const c = intFlag(v, 'channels', 2, 4096);
    if (c !== undefined) modelConfig.baseChannels = c;
    const mults = v['channel-mults'];
    if (mults !== undefined) {
      const parts = String(mults).split(',').map((p) => p.trim());
      if (!parts.every((p) => /^\d+$/.test(p) && Number(p) >= 1) || parts.length > 3) {
        throw new UsageError(`--channel-mults must be 1 to 3 comma-separated integers >= 1 (28x28 images halve at most twice), got ${JSON.stringify(mults)}`);
      }
      modelConfig.channelMults = parts.map(Number);
    }
    const r = intFlag(v, 'res-blocks', 1, 16);
    if (r !== undefined) modelConfig.numResBlocks = r;
    const g = intFlag(v, 'groups', 1, 4096);
    if (g !== undefined) modelConfig.groups = g;
    if (v['no-attention']) modelConfig.attention = false;
  }
  // The model's own checks (groups dividing channels, even channels, ...) become usage errors.
  try {
    buildModel(kind, modelConfig).dispose();
  } catch (e) {
    throw new UsageError(`the model options do not make a valid ${kind}: ${(e as Error).message}`);
  }
  const schedule = scheduleName === 'linear' ? linearSchedule(T) : cosineSchedule(T);
  return { settings, kind, modelConfig, schedule };
}

/** Test hook (docs/contributing.md): DDPM_TEST_NAN_AT_STEP=k makes the model's output NaN at step k. */
function withNanHook(model: TrainableDenoiser, initialStep: number): TrainableDenoiser {
  const at = Number(process.env.DDPM_TEST_NAN_AT_STEP);
  if (!Number.isInteger(at) || at < 1) return model;
  let step = initialStep;
  return {
    trainableVariables: model.trainableVariables,
    config: model.config,
    clone: () => model.clone(),
    dispose: () => model.dispose(),
    predictEps: (xt, t) => {
      step++;
      const eps = model.predictEps(xt, t);
      return step === at ? tf.tidy(() => eps.mul(NaN)) : eps;
    },
  };
}

async function cmdTrain(v: Values, io: CliIO): Promise<number> {
  const out = requireFlag(v, 'out', 'train');
  const resume = v.resume === true;
  if (resume) {
    const extra = Object.keys(v).filter((k) => v[k] !== undefined && !RESUME_FLAGS.has(k));
    if (extra.length) {
      throw new UsageError(`with --resume the run's settings come from ${path.join(out, MANIFEST_FILE)}; --${extra[0]} cannot be changed (allowed: --steps, --backend, --checkpoint-every, --skip-nonfinite, --quiet)`);
    }
    if (!fs.existsSync(path.join(out, MANIFEST_FILE))) throw new UsageError(`--resume: ${out} holds no run (${MANIFEST_FILE} is missing)`);
  } else if (fs.existsSync(path.join(out, MANIFEST_FILE))) {
    const step = (() => {
      try {
        return readManifest(out).step;
      } catch {
        return '?';
      }
    })();
    throw new UsageError(`${out} already holds a run (step ${step}); continue it with --resume, or choose another --out`);
  }
  // Options are checked before any backend or data is touched.
  const fresh = resume ? null : trainSettings(v);
  const saved = resume ? savedSettings(out, readManifest(out).train) : null;
  const stepsFlag = intFlag(v, 'steps', 1);
  const everyFlag = intFlag(v, 'checkpoint-every', 1);

  const backend = await chooseBackend(v, io);
  let model: TrainableDenoiser;
  let ema: TrainableDenoiser | null;
  let optimizer: tf.Optimizer;
  let settings: RunTrainSettings;
  let schedule: Schedule;
  let initialStep = 0;
  let history: Float32Array = new Float32Array(0);
  let skipped = 0;
  let rngState;
  if (resume) {
    const m = readManifest(out);
    settings = saved!;
    const run = await loadRunForResume(out, () => createOptimizer(settings.lr));
    ({ model, ema, optimizer, schedule, rngState } = run);
    if ((settings.emaDecay !== null) !== (ema !== null)) {
      run.dispose();
      optimizer.dispose();
      throw new Error(`${path.join(out, MANIFEST_FILE)}: train.emaDecay is ${settings.emaDecay} but the weights ${ema ? 'hold' : 'lack'} EMA weights`);
    }
    initialStep = m.step;
    history = run.losses;
    skipped = m.skipped;
    if (stepsFlag !== undefined) settings.steps = stepsFlag;
    if (everyFlag !== undefined) settings.checkpointEvery = everyFlag;
    if (v['skip-nonfinite']) settings.skipNonFinite = true;
    if (settings.steps <= initialStep) {
      run.dispose();
      optimizer.dispose();
      io.out.write(`${out} has already done ${initialStep} of ${settings.steps} steps; pass --steps N (N > ${initialStep}) to train further\n`);
      return 0;
    }
    if (m.backend !== backend) io.err.write(`note: the run trained on ${m.backend} so far and continues on ${backend}; results will not match an uninterrupted ${m.backend} run bit for bit\n`);
    io.out.write(`resuming ${out} at step ${initialStep} of ${settings.steps}\n`);
  } else {
    const f = fresh!;
    settings = f.settings;
    schedule = f.schedule;
    model = buildModel(f.kind, f.modelConfig);
    ema = settings.emaDecay !== null ? model.clone() : null;
    optimizer = createOptimizer(settings.lr);
  }
  const data = loadData(settings);
  if (settings.batch > data.shape[0]) {
    tf.dispose(data);
    throw new UsageError(`--batch must be at most the number of training examples (${data.shape[0]}), got ${settings.batch}`);
  }
  const nWeights = model.trainableVariables.reduce((n, w) => n + w.size, 0);
  io.out.write(
    `training ${readableKind(model)} (${nWeights.toLocaleString('en')} weights) on ${data.shape[0]} ${settings.data} examples, T = ${schedule.T}, ` +
      `steps ${initialStep + 1}..${settings.steps}, batch ${settings.batch}, lr ${settings.lr}, backend ${backend}, run ${out}\n`,
  );

  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      io.err.write(`\n${sig} again: exiting without waiting for the checkpoint (the previous one is intact)\n`);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
    io.err.write(`\n${sig}: finishing this step and saving a checkpoint (${sig} again to quit at once)\n`);
    controller.abort(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const bar = v.quiet ? null : new Progress('train', settings.steps - initialStep, io.out as NodeJS.WriteStream);
  let lastSaved: { step: number } | null = resume ? { step: initialStep } : null;
  const seed = settings.seed;
  const trainConfig = settings as unknown as Record<string, unknown>;
  try {
    const result = await train({
      model: withNanHook(model, initialStep),
      schedule,
      data,
      steps: settings.steps,
      batchSize: settings.batch,
      lr: settings.lr,
      emaDecay: settings.emaDecay ?? undefined,
      emaWarmup: true,
      ema: ema ?? undefined,
      optimizer,
      gradClip: settings.gradClip ?? undefined,
      loss: settings.loss,
      seed,
      initialStep,
      initialSkipped: skipped,
      rngState,
      skipNonFinite: settings.skipNonFinite,
      checkpointEvery: settings.checkpointEvery,
      signal: controller.signal,
      onProgress: (p) => bar?.update(p.step - initialStep, `step ${p.step} · loss ${p.loss.toFixed(4)}`),
      onCheckpoint: async (c) => {
        const losses = new Float32Array(initialStep + c.losses.length);
        losses.set(history.subarray(0, initialStep));
        losses.set(c.losses, initialStep);
        await saveCheckpoint(out, { model, ema, optimizer, schedule, step: c.step, seed, rngState: c.rngState, losses, skipped: c.skipped, train: trainConfig });
        lastSaved = { step: c.step };
      },
    });
    const tail = result.losses.slice(-50).filter(Number.isFinite);
    const last = tail.length ? (tail.reduce((a, b) => a + b, 0) / tail.length).toFixed(4) : 'n/a';
    if (result.stopped) {
      io.out.write(`\ninterrupted at step ${result.step} of ${settings.steps}: checkpoint saved in ${path.resolve(out)}\nresume with: ddpm train --out ${out} --resume\n`);
      return controller.signal.reason === 'SIGTERM' ? 143 : 130;
    }
    io.out.write(
      `done: ${result.step} steps in ${formatDuration(result.seconds)}, last loss ${last}` +
        `${result.skipped ? `, ${result.skipped} non-finite batches skipped` : ''}; run saved in ${path.resolve(out)}\n`,
    );
    return 0;
  } catch (e) {
    const kernel = /Kernel '(\w+)' not registered for backend '(\w+)'/.exec((e as Error).message);
    if (kernel) (e as Error).message += ` (the ${kernel[2]} backend cannot train this model yet; pass --backend cpu or another backend)`;
    const where = lastSaved ? `the last good checkpoint is step ${(lastSaved as { step: number }).step} in ${path.resolve(out)} (intact; resume with --resume)` : 'no checkpoint was saved yet';
    throw new Error(`${(e as Error).message}; ${where}`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    tf.dispose(data);
    model.dispose();
    ema?.dispose();
    optimizer.dispose();
  }
}

function readableKind(model: TrainableDenoiser): string {
  return modelKind(model) === 'mlp' ? 'MlpDenoiser' : 'UNetDenoiser';
}

// ---- sample / eval / info ----

async function openRun(v: Values, cmd: string, io: CliIO): Promise<{ run: LoadedRun; model: TrainableDenoiser; which: string; image: boolean }> {
  const dir = requireFlag(v, 'run', cmd);
  const which = choiceFlag(v, 'weights', ['ema', 'model'] as const);
  readManifest(dir); // manifest problems before the backend starts
  await chooseBackend(v, io);
  const run = await loadRun(dir);
  if (which === 'ema' && !run.ema) {
    run.dispose();
    throw new UsageError(`--weights ema: the run in ${dir} keeps no EMA (it trained with --ema 0); use --weights model`);
  }
  const useEma = which !== 'model' && run.ema !== null;
  return { run, model: useEma ? run.ema! : run.model, which: useEma ? 'ema' : 'model', image: run.manifest.model.kind === 'unet' };
}

function writeAtomicBytes(file: string, bytes: Uint8Array | string): void {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`could not write ${file}: ${(e as Error).message}`);
  }
}

async function cmdSample(v: Values, io: CliIO): Promise<number> {
  const out = requireFlag(v, 'out', 'sample');
  const sampler = choiceFlag(v, 'sampler', ['ddpm', 'ddim'] as const) ?? 'ddpm';
  if (sampler === 'ddpm' && (v.steps !== undefined || v.eta !== undefined)) {
    throw new UsageError(`--${v.steps !== undefined ? 'steps' : 'eta'} is a DDIM option; add --sampler ddim (DDPM takes all T steps)`);
  }
  const ext = path.extname(out).toLowerCase();
  if (!['.png', '.csv', '.json'].includes(ext)) throw new UsageError(`--out must end in .png (images), .csv or .json (2-D points), got ${JSON.stringify(out)}`);
  const seed = intFlag(v, 'seed', 0, 2 ** 31 - 1) ?? 0;
  const nFlag = intFlag(v, 'n', 1, 100000);
  const eta = numFlag(v, 'eta', 0, Infinity, '>= 0') ?? 0;
  const stepsFlag = intFlag(v, 'steps', 1);
  const { run, model, which, image } = await openRun(v, 'sample', io);
  try {
    if (image && ext !== '.png') throw new UsageError(`this run makes images: --out must end in .png, got ${JSON.stringify(out)}`);
    if (!image && ext === '.png') throw new UsageError(`this run makes 2-D points: --out must end in .csv or .json, got ${JSON.stringify(out)}`);
    const T = run.schedule.T;
    if (stepsFlag !== undefined && stepsFlag > T) throw new UsageError(`--steps must be an integer in [1, ${T}] (the run's T), got ${stepsFlag}`);
    const n = nFlag ?? (image ? 16 : 1000);
    const cfg = run.manifest.model.config as { imageSize?: number; channels?: number };
    const shape = image ? [n, cfg.imageSize ?? 28, cfg.imageSize ?? 28, cfg.channels ?? 1] : [n, 2];
    const steps = sampler === 'ddpm' ? T : stepsFlag ?? Math.min(50, T);
    io.out.write(`sampling ${n} with ${sampler} (${steps} steps) from the ${which} weights of ${run.dir} (step ${run.manifest.step})\n`);
    const bar = new Progress('sample', steps, io.out as NodeJS.WriteStream);
    const onStep = (i: { step: number; steps: number }) => bar.update(i.step);
    const { x0 } =
      sampler === 'ddpm'
        ? await sampleDDPM(model, run.schedule, shape, { seed, onStep })
        : await sampleDDIM(model, run.schedule, shape, { seed, steps, eta, onStep });
    const values = (await x0.data()) as Float32Array;
    x0.dispose();
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) throw new Error(`the samples hold a non-finite value (${values[i]} at ${i}); the model at step ${run.manifest.step} is unusable`);
    }
    if (ext === '.png') writeAtomicBytes(out, imageGridPng(values, n, shape[1], shape[3]));
    else if (ext === '.csv') {
      const lines = ['x,y'];
      for (let i = 0; i < n; i++) lines.push(`${values[2 * i]},${values[2 * i + 1]}`);
      writeAtomicBytes(out, lines.join('\n') + '\n');
    } else {
      const points = Array.from({ length: n }, (_, i) => [values[2 * i], values[2 * i + 1]]);
      writeAtomicBytes(out, JSON.stringify({ run: path.resolve(run.dir), step: run.manifest.step, sampler, steps, eta, seed, weights: which, points }) + '\n');
    }
    io.out.write(`wrote ${path.resolve(out)}\n`);
    return 0;
  } finally {
    run.dispose();
  }
}

async function cmdEval(v: Values, io: CliIO): Promise<number> {
  const seed = intFlag(v, 'seed', 0, 2 ** 31 - 1) ?? 0;
  const nFlag = intFlag(v, 'n', 2, 100000);
  const { run, model, which, image } = await openRun(v, 'eval', io);
  try {
    const train = run.manifest.train as unknown as RunTrainSettings;
    let result: Record<string, unknown>;
    if (image) {
      const n = nFlag ?? 16;
      const { images } = loadMnist({ split: 'test', limit: n });
      io.out.write(`bits/dim of ${images.shape[0]} held-out digits (the discretised ELBO: ${run.schedule.T} model evaluations) with the ${which} weights\n`);
      try {
        const terms = await elboTerms(model, run.schedule, images, { decoder: 'discretized', seed });
        result = { metric: 'bitsPerDim', bitsPerDim: terms.bitsPerDim, n: images.shape[0], step: run.manifest.step, weights: which };
      } finally {
        images.dispose();
      }
      io.out.write(v.json ? `${JSON.stringify(result)}\n` : `bits/dim ${(result.bitsPerDim as number).toFixed(4)} on ${result.n} held-out digits (step ${run.manifest.step})\n`);
    } else {
      const n = nFlag ?? 1000;
      const { x0 } = await sampleDDPM(model, run.schedule, [n, 2], { seed });
      const ref = heldOutPoints(train.data, n, seed);
      const ref2 = heldOutPoints(train.data, n, seed + 1);
      const noise = tf.randomNormal([n, 2], 0, 1, 'float32', deriveSeed(seed, 0x5e)) as tf.Tensor2D;
      const pts = async (x: tf.Tensor) => ({ data: (await x.data()) as Float32Array, dim: 2 });
      const refPts = await pts(ref);
      result = {
        metric: 'energyDistance',
        samples: energyDistance(await pts(x0), refPts),
        noise: energyDistance(await pts(noise), refPts),
        heldOutVsHeldOut: energyDistance(await pts(ref2), refPts),
        n,
        step: run.manifest.step,
        weights: which,
      };
      tf.dispose([x0, ref, ref2, noise]);
      const f = (k: string) => (result[k] as number).toFixed(5);
      io.out.write(
        v.json
          ? `${JSON.stringify(result)}\n`
          : `energy distance to fresh ${train.data} data (${n} points; lower is better): samples ${f('samples')}, ` +
              `reference: N(0, I) noise ${f('noise')}, a second data draw ${f('heldOutVsHeldOut')}\n`,
      );
    }
    return 0;
  } finally {
    run.dispose();
  }
}

function cmdInfo(v: Values, io: CliIO): number {
  const dir = requireFlag(v, 'run', 'info');
  const m = readManifest(dir);
  const t = m.train as unknown as RunTrainSettings;
  const shard = m.weightsManifest[0].paths[0];
  if (v.json) {
    const { weightsManifest, ...rest } = m;
    io.out.write(`${JSON.stringify({ ...rest, weights: weightsManifest[0].paths, tensors: weightsManifest[0].weights.length }, null, 1)}\n`);
    return 0;
  }
  const size = fs.existsSync(path.join(dir, shard)) ? `${(fs.statSync(path.join(dir, shard)).size / 1024).toFixed(1)} KiB` : 'MISSING';
  const lines = [
    `run            ${path.resolve(dir)}`,
    `steps done     ${m.step} of ${t.steps ?? '?'}${m.skipped ? ` (${m.skipped} non-finite batches skipped)` : ''}`,
    `last loss      ${m.lastLoss === null ? 'n/a' : m.lastLoss.toFixed(5)} (mean of the last 20 steps)`,
    `backend        ${m.backend}`,
    `model          ${m.model.kind} ${JSON.stringify(m.model.config)}`,
    `schedule       ${JSON.stringify(m.schedule)}`,
    `data           ${t.data}${t.nData ? ` (${t.nData} examples)` : ''}, batch ${t.batch}, lr ${t.lr}, loss ${t.loss}, EMA ${t.emaDecay ?? 'none'}, grad clip ${t.gradClip ?? 'none'}`,
    `seed           ${m.seed}`,
    `checkpoint     every ${t.checkpointEvery} steps; saved ${m.savedAt}; ${shard} (${size}, ${m.weightsManifest[0].weights.length} tensors)`,
    `format         ${m.format} v${m.formatVersion}, written by ddpm-workbook ${m.libraryVersion}`,
  ];
  io.out.write(lines.join('\n') + '\n');
  return 0;
}

/** Runs one command line (without "node ddpm") and resolves to the exit code; never throws. */
export async function main(argv: string[], io: CliIO = { out: process.stdout, err: process.stderr }): Promise<number> {
  const [cmd, ...args] = argv;
  try {
    if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      io.out.write(`${HELP.main}\n`);
      return cmd === undefined ? 2 : 0;
    }
    if (!(cmd in SPECS)) throw new UsageError(`unknown command ${JSON.stringify(cmd)}; the commands are train, sample, eval, info`);
    const v = parse(cmd, args);
    if (v.help) {
      io.out.write(`${HELP[cmd]}\n`);
      return 0;
    }
    if (cmd === 'train') return await cmdTrain(v, io);
    if (cmd === 'sample') return await cmdSample(v, io);
    if (cmd === 'eval') return await cmdEval(v, io);
    return cmdInfo(v, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err.write(`ddpm${cmd && cmd in SPECS ? ` ${cmd}` : ''}: ${e.message}\n(see: ddpm ${cmd && cmd in SPECS ? `${cmd} ` : ''}--help)\n`);
      return 2;
    }
    io.err.write(`ddpm ${cmd}: error: ${(e as Error).message}\n`);
    if (process.env.DDPM_DEBUG) io.err.write(`${(e as Error).stack}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
