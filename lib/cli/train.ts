/**
 * `ddpm train`: a new run or the continuation of one (--resume), with everything that can be
 * checked checked before the work: every flag's range, the flags of a resumed run against its
 * manifest, the schedule reaching noise, the run directory (a directory, writable, room for two
 * checkpoints) and its lock (one writer per run directory).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {
  ClassLabel,
  LOSS_TYPES,
  LossType,
  MANIFEST_FILE,
  ModelKind,
  PARALLEL_BACKENDS,
  Progress,
  RunLock,
  RunManifest,
  Schedule,
  ScheduleName,
  Timestep,
  TrainableDenoiser,
  acquireRunLock,
  buildModel,
  createOptimizer,
  describeFsError,
  formatDuration,
  isConditional,
  loadRunForResume,
  makeDirs,
  modelKind,
  namedSchedule,
  readManifest,
  saveCheckpoint,
  train,
} from '../index';
// The test-only fault seam is not library API (it is null unless a test sets DDPM_TEST_* variables),
// so the CLI reaches it directly rather than through the entry.
import { faults } from '../runtime/faults';
import { UsageError, Values, checkAllValues, choiceValue, intValue, numValue, requireValue } from './flags';
import { CliIO, DATASETS, chooseBackend, dataset, trainingData, trainingLabels } from './common';
import { formatBytes, freeBytes } from './rundir';

/** The training settings a run keeps in its manifest ("train"), enough to rebuild data and optimizer. */
export interface RunTrainSettings {
  data: string;
  nData: number | null;
  seed: number;
  steps: number;
  batch: number;
  lr: number;
  emaDecay: number | null;
  gradClip: number | null;
  loss: LossType;
  checkpointEvery: number;
  skipNonFinite: boolean;
  /** A class-conditional model trained on the data's labels (--conditional); false for runs saved before the flag existed. */
  conditional: boolean;
  /** The probability a label is dropped to the null class (conditional runs), else null. */
  pUncond: number | null;
}

/** The class count of a conditional run's model: MNIST's ten digits. */
export const CONDITIONAL_CLASSES = 10;

/** The manifest's training settings, checked field by field (a hand-edited manifest gets a clear error). */
export function savedSettings(dir: string, t: Record<string, unknown>): RunTrainSettings {
  const where = `${path.join(dir, MANIFEST_FILE)}: train`;
  const bad = (field: string, want: string) => new Error(`${where}.${field} must be ${want}, got ${JSON.stringify(t[field])}`);
  const int = (k: string, lo: number) => typeof t[k] === 'number' && Number.isInteger(t[k]) && (t[k] as number) >= lo;
  if (!DATASETS.some((d) => d.name === t.data)) throw bad('data', `one of ${DATASETS.map((d) => d.name).join(', ')}`);
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
  // Runs saved before --conditional existed lack both fields: they are unconditional.
  const conditional = t.conditional ?? false;
  const pUncond = t.pUncond ?? null;
  if (typeof conditional !== 'boolean') throw bad('conditional', 'true or false');
  if (conditional ? !(typeof pUncond === 'number' && pUncond >= 0 && pUncond <= 1) : pUncond !== null) {
    throw bad('pUncond', conditional ? 'a number in [0, 1] (the run is conditional)' : 'null (the run is not conditional)');
  }
  return { ...(t as unknown as RunTrainSettings), conditional, pUncond: pUncond as number | null };
}

/** Flags a resumed run may change; every other flag must equal the run's value. */
const RESUME_MAY_CHANGE = new Set(['out', 'resume', 'steps', 'checkpoint-every', 'skip-nonfinite', 'backend', 'workers', 'quiet', 'help']);

function parseMults(v: Values): number[] | undefined {
  const mults = v['channel-mults'];
  if (mults === undefined) return undefined;
  const parts = String(mults).split(',').map((p) => p.trim());
  if (!parts.every((p) => /^\d+$/.test(p) && Number(p) >= 1) || parts.length > 3) {
    throw new UsageError(`--channel-mults must be 1 to 3 comma-separated integers >= 1 (28x28 images halve at most twice), got ${JSON.stringify(mults)}`);
  }
  return parts.map(Number);
}

/** A fresh run's settings, model and schedule from the flags; every problem is a UsageError. */
function freshSettings(v: Values): { settings: RunTrainSettings; kind: ModelKind; modelConfig: Record<string, unknown>; schedule: Schedule; nWeights: number; nVariables: number } {
  const data = choiceValue<string>(v, 'train', 'data');
  if (!data) throw new UsageError('ddpm train needs --data (swissroll, moons, mixture, checkerboard or mnist), or --resume');
  const set = dataset(data);
  const image = set.image;
  const kind = choiceValue<ModelKind>(v, 'train', 'model') ?? (image ? 'unet' : 'mlp');
  if (image && kind !== 'unet') throw new UsageError('--model mlp needs 2-D data; mnist images train with --model unet');
  if (!image && kind !== 'mlp') throw new UsageError(`--model unet needs images (--data mnist); ${data} is 2-D: use --model mlp`);
  const T = intValue(v, 'train', 'T') ?? 1000;
  const scheduleName = choiceValue<ScheduleName>(v, 'train', 'schedule') ?? 'linear';
  const seed = intValue(v, 'train', 'seed') ?? 0;
  const nData = intValue(v, 'train', 'n-data', set.maxSize) ?? null;
  const ema = numValue(v, 'train', 'ema') ?? 0.999;
  const conditional = v.conditional === true;
  if (conditional && !image) throw new UsageError(`--conditional needs --data mnist (a set with class labels); ${data} is 2-D and has no classes`);
  const pUncondFlag = numValue(v, 'train', 'p-uncond');
  if (pUncondFlag !== undefined && !conditional) throw new UsageError('--p-uncond needs --conditional (it is the share of labels dropped to the null class)');
  const settings: RunTrainSettings = {
    data,
    nData,
    seed,
    steps: intValue(v, 'train', 'steps') ?? (image ? 1000 : 2000),
    batch: intValue(v, 'train', 'batch') ?? (image ? 32 : 128),
    lr: numValue(v, 'train', 'lr') ?? 1e-3,
    emaDecay: ema === 0 ? null : ema,
    gradClip: numValue(v, 'train', 'grad-clip') ?? null,
    loss: choiceValue<LossType>(v, 'train', 'loss') ?? 'simple',
    checkpointEvery: intValue(v, 'train', 'checkpoint-every') ?? 100,
    skipNonFinite: v['skip-nonfinite'] === true,
    conditional,
    pUncond: conditional ? pUncondFlag ?? 0.1 : null,
  };
  const examples = nData ?? set.defaultSize;
  if (settings.batch > examples) throw new UsageError(`--batch must be at most the number of training examples (${examples}), got ${settings.batch}`);
  for (const [flag, other] of [['hidden', 'unet'], ['depth', 'unet'], ['embed-dim', 'unet'], ['channels', 'mlp'], ['channel-mults', 'mlp'], ['res-blocks', 'mlp'], ['groups', 'mlp'], ['no-attention', 'mlp']]) {
    if (v[flag] !== undefined && kind === other) throw new UsageError(`--${flag} is a ${other === 'mlp' ? 'unet' : 'mlp'} option; this run trains --model ${kind}`);
  }
  let modelConfig: Record<string, unknown>;
  if (kind === 'mlp') {
    modelConfig = { dataDim: 2, seed };
    const h = intValue(v, 'train', 'hidden');
    const d = intValue(v, 'train', 'depth');
    const e = intValue(v, 'train', 'embed-dim');
    if (e !== undefined && e % 2 !== 0) throw new UsageError(`--embed-dim must be an even integer >= 2, got ${JSON.stringify(v['embed-dim'])}`);
    if (h !== undefined) modelConfig.hidden = h;
    if (d !== undefined) modelConfig.depth = d;
    if (e !== undefined) modelConfig.embedDim = e;
  } else {
    modelConfig = { imageSize: 28, channels: 1, seed };
    const c = intValue(v, 'train', 'channels');
    if (c !== undefined) modelConfig.baseChannels = c;
    const mults = parseMults(v);
    if (mults) modelConfig.channelMults = mults;
    const r = intValue(v, 'train', 'res-blocks');
    if (r !== undefined) modelConfig.numResBlocks = r;
    const g = intValue(v, 'train', 'groups');
    if (g !== undefined) modelConfig.groups = g;
    if (v['no-attention']) modelConfig.attention = false;
    if (conditional) modelConfig.numClasses = CONDITIONAL_CLASSES;
  }
  // The model's own checks (groups dividing channels, even channels, ...) become usage errors.
  let nWeights: number;
  let nVariables: number;
  try {
    const probe = buildModel(kind, modelConfig);
    nWeights = probe.trainableVariables.reduce((n, w) => n + w.size, 0);
    nVariables = probe.trainableVariables.length;
    probe.dispose();
  } catch (e) {
    throw new UsageError(`the model options do not make a valid ${kind}: ${(e as Error).message}`);
  }
  let schedule: Schedule;
  try {
    schedule = namedSchedule(scheduleName, T);
  } catch (e) {
    throw new UsageError(`--schedule ${scheduleName} with --T ${T}: ${(e as Error).message}`);
  }
  return { settings, kind, modelConfig, schedule, nWeights, nVariables };
}

type Plain = string | number | boolean | null;

/** What the run in the manifest says for a flag (in the flag's terms), for the flags a resume must not change. */
function runFlagValue(name: string, m: RunManifest, t: RunTrainSettings): Plain {
  const cfg = m.model.config as Record<string, unknown>;
  const sched = m.schedule as unknown as Record<string, unknown>;
  switch (name) {
    case 'data': return t.data;
    case 'model': return m.model.kind;
    case 'batch': return t.batch;
    case 'lr': return t.lr;
    case 'schedule': return String(sched.kind);
    case 'T': return Number(sched.T);
    case 'seed': return t.seed;
    case 'ema': return t.emaDecay ?? 0;
    case 'grad-clip': return t.gradClip;
    case 'loss': return t.loss;
    case 'n-data': return t.nData ?? dataset(t.data).defaultSize;
    case 'hidden': return (cfg.hidden as number) ?? null;
    case 'depth': return (cfg.depth as number) ?? null;
    case 'embed-dim': return (cfg.embedDim as number) ?? null;
    case 'channels': return (cfg.baseChannels as number) ?? null;
    case 'channel-mults': return Array.isArray(cfg.channelMults) ? cfg.channelMults.join(',') : null;
    case 'res-blocks': return (cfg.numResBlocks as number) ?? null;
    case 'groups': return (cfg.groups as number) ?? null;
    case 'no-attention': return cfg.attention === false;
    case 'conditional': return t.conditional;
    case 'p-uncond': return t.pUncond;
    default: return null;
  }
}

/** The value a flag on the command line stands for, in the same terms as runFlagValue. */
function givenFlagValue(name: string, v: Values): Plain {
  switch (name) {
    case 'data': case 'model': case 'schedule': case 'loss': return choiceValue<string>(v, 'train', name) ?? null;
    case 'lr': case 'ema': case 'grad-clip': return numValue(v, 'train', name) ?? null;
    case 'channel-mults': return parseMults(v)?.join(',') ?? null;
    case 'no-attention': case 'conditional': return v[name] === true;
    case 'p-uncond': return numValue(v, 'train', name) ?? null;
    default: return intValue(v, 'train', name) ?? null;
  }
}

/** With --resume: every flag given must equal the run's; a conflict is a UsageError naming both values. */
function checkResumeFlags(v: Values, dir: string, m: RunManifest, t: RunTrainSettings): void {
  for (const name of Object.keys(v)) {
    if (v[name] === undefined || RESUME_MAY_CHANGE.has(name)) continue;
    const given = givenFlagValue(name, v);
    const saved = runFlagValue(name, m, t);
    if (given !== saved) {
      const shown = (x: Plain) => (x === null ? 'none' : String(x));
      throw new UsageError(
        `--${name} ${v[name] === true ? '' : `${JSON.stringify(v[name])} `}conflicts with the run in ${dir}, whose ${name} is ${shown(saved)} ` +
          `(${path.join(dir, MANIFEST_FILE)}); with --resume a flag must equal the run's value or be left out (only --steps, --checkpoint-every, --skip-nonfinite, --backend and --quiet may change)`,
      );
    }
  }
}

/** Bytes of one checkpoint: the model, the EMA, Adam's m and v (4 bytes each), the sampler order, the losses, the manifest. */
function checkpointBytes(nWeights: number, ema: boolean, nData: number, steps: number, nTensors: number): number {
  return 4 * nWeights * (ema ? 4 : 3) + 4 * nData + 4 * steps + 256 * nTensors + 8192;
}

/** Refuses, before any work, a run directory without room for `need` more bytes. */
function checkFreeSpace(out: string, need: number, what: string): void {
  const free = freeBytes(out);
  if (free !== null && free < need) {
    throw new Error(`--out ${out}: the disk has ${formatBytes(free)} free, this run needs about ${formatBytes(need)} (${what}); free some space or choose another --out`);
  }
}

/** Makes the run directory (or checks the existing one) before any work; problems are UsageErrors naming --out. */
function prepareOut(out: string): boolean {
  const full = path.resolve(out);
  if (fs.existsSync(full)) {
    if (!fs.statSync(full).isDirectory()) throw new UsageError(`--out ${out} is a file, not a directory (a run directory holds ${MANIFEST_FILE} and a weights file)`);
    return false;
  }
  try {
    makeDirs(full);
  } catch (e) {
    throw new UsageError(`--out ${out} cannot be created: ${describeFsError(e)}`);
  }
  return true;
}

/**
 * Test fault (lib/runtime/faults.ts): the model's output becomes NaN at one training step. Steps are
 * the calls made under a gradient tape (train's forward passes); train's shape probe is not one.
 */
function withNanFault(model: TrainableDenoiser, initialStep: number, at: number): TrainableDenoiser {
  let step = initialStep;
  const underTape = () => ((tf.engine() as unknown as { state: { gradientDepth: number } }).state.gradientDepth ?? 0) > 0;
  // A conditional model stays one (train() gives it the batch's classes through the third argument).
  const inner = model as unknown as { predictEps(xt: tf.Tensor, t: Timestep, c?: ClassLabel): tf.Tensor };
  const call = (xt: tf.Tensor, t: Timestep, c?: ClassLabel) => inner.predictEps(xt, t, c);
  return {
    ...(isConditional(model) ? { numClasses: model.numClasses, nullClass: model.nullClass } : {}),
    trainableVariables: model.trainableVariables,
    config: model.config,
    clone: () => model.clone(),
    dispose: () => model.dispose(),
    predictEps: (xt: tf.Tensor, t: Timestep, c?: ClassLabel) => {
      if (!underTape()) return call(xt, t, c);
      step++;
      const eps = call(xt, t, c);
      return step === at ? tf.tidy(() => eps.mul(NaN)) : eps;
    },
  } as TrainableDenoiser;
}

function readableKind(model: TrainableDenoiser): string {
  return modelKind(model) === 'mlp' ? 'MlpDenoiser' : 'UNetDenoiser';
}

/** `ddpm train`: resolves to the exit code (0 done, 130/143 interrupted with a checkpoint); throws a UsageError or an Error otherwise. */
export async function cmdTrain(v: Values, io: CliIO): Promise<number> {
  const out = requireValue(v, 'train', 'out');
  checkAllValues('train', v);
  const resume = v.resume === true;
  const fresh = resume ? null : freshSettings(v);
  if (resume && !fs.existsSync(path.join(out, MANIFEST_FILE))) throw new UsageError(`--resume: ${out} holds no run (${MANIFEST_FILE} is missing)`);
  // The lock comes before the look at what the directory holds: a run another process is writing
  // is reported as in use (naming the process), not as a finished run.
  const created = prepareOut(out);
  let lock: RunLock | null = null;
  let phase: 'setup' | 'training' = 'setup';
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    const code = sig === 'SIGINT' ? 130 : 143;
    if (phase === 'setup') {
      io.err.write(`\n${sig}: stopped before training started; no checkpoint was written\n`);
      process.exit(code); // the exit hook releases the lock
    }
    if (controller.signal.aborted) {
      io.err.write(`\n${sig} again: exiting without waiting for the checkpoint (the previous one is intact)\n`);
      process.exit(code);
    }
    io.err.write(`\n${sig}: finishing this step and saving a checkpoint (${sig} again to quit at once)\n`);
    controller.abort(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    lock = acquireRunLock(out);
    return await trainLocked(v, io, out, resume, fresh, controller, () => (phase = 'training'));
  } catch (e) {
    // A run that never saved leaves nothing behind: not the directory this command made, nor its lock.
    lock?.release();
    lock = null;
    if (created && fs.existsSync(out) && fs.readdirSync(out).length === 0) fs.rmdirSync(out);
    throw e;
  } finally {
    lock?.release();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function runStep(out: string): number | string {
  try {
    return readManifest(out).step;
  } catch {
    return '?';
  }
}

async function trainLocked(
  v: Values,
  io: CliIO,
  out: string,
  resume: boolean,
  fresh: ReturnType<typeof freshSettings> | null,
  controller: AbortController,
  started: () => void,
): Promise<number> {
  const stepsFlag = intValue(v, 'train', 'steps');
  const everyFlag = intValue(v, 'train', 'checkpoint-every');
  let settings: RunTrainSettings;
  let manifest: RunManifest | null = null;
  if (resume) {
    // Read under the lock: no other process is half way through a save now.
    manifest = readManifest(out);
    settings = savedSettings(out, manifest.train);
    checkResumeFlags(v, out, manifest, settings);
    if (stepsFlag !== undefined) settings.steps = stepsFlag;
    if (everyFlag !== undefined) settings.checkpointEvery = everyFlag;
    if (v['skip-nonfinite']) settings.skipNonFinite = true;
    if (settings.steps <= manifest.step) {
      throw new UsageError(`${out} has already done ${manifest.step} of ${settings.steps} steps: nothing to train; pass --steps N with N > ${manifest.step} to train further`);
    }
    const shard = path.join(out, manifest.weightsManifest[0].paths[0]);
    const now = (fs.existsSync(shard) ? fs.statSync(shard).size : 0) + fs.statSync(path.join(out, MANIFEST_FILE)).size;
    checkFreeSpace(out, now + 4 * (settings.steps - manifest.step) + 8192, `one more checkpoint of about ${formatBytes(now)} beside the present one`);
  } else {
    if (fs.existsSync(path.join(out, MANIFEST_FILE))) throw new UsageError(`${out} already holds a run (step ${runStep(out)}); continue it with --resume, or choose another --out`);
    const f = fresh!;
    settings = f.settings;
    const nTensors = f.nVariables * (settings.emaDecay !== null ? 4 : 3) + 4;
    const one = checkpointBytes(f.nWeights, settings.emaDecay !== null, settings.nData ?? dataset(settings.data).defaultSize, settings.steps, nTensors);
    checkFreeSpace(out, 2 * one, `two checkpoints of about ${formatBytes(one)}: each save writes the new one before it removes the old`);
  }

  const backend = await chooseBackend(v, 'train', io);
  const workers = intValue(v, 'train', 'workers') ?? 1;
  if (workers > 1 && !PARALLEL_BACKENDS.includes(backend)) {
    throw new UsageError(`--workers ${workers} needs the wasm or cpu backend (threads add arithmetic only where the tensors live in this process); the backend is ${backend}: use --workers 1 or --backend wasm`);
  }
  let model: TrainableDenoiser;
  let ema: TrainableDenoiser | null;
  let optimizer: tf.Optimizer;
  let schedule: Schedule;
  let initialStep = 0;
  let history: Float32Array = new Float32Array(0);
  let skipped = 0;
  let rngState;
  let freeRun: () => void;
  if (manifest) {
    const run = await loadRunForResume(out, () => createOptimizer(settings.lr));
    ({ model, ema, optimizer, schedule, rngState } = run);
    freeRun = run.dispose;
    if ((settings.emaDecay !== null) !== (ema !== null)) {
      run.dispose();
      throw new Error(`${path.join(out, MANIFEST_FILE)}: train.emaDecay is ${settings.emaDecay} but the weights ${ema ? 'hold' : 'lack'} EMA weights`);
    }
    initialStep = manifest.step;
    history = run.losses;
    skipped = manifest.skipped;
    if (manifest.backend !== backend) io.err.write(`note: the run trained on ${manifest.backend} so far and continues on ${backend}; results will not match an uninterrupted ${manifest.backend} run bit for bit\n`);
    io.out.write(`resuming ${out} at step ${initialStep} of ${settings.steps}\n`);
  } else {
    const f = fresh!;
    schedule = f.schedule;
    const m = buildModel(f.kind, f.modelConfig);
    const e = settings.emaDecay !== null ? m.clone() : null;
    const o = createOptimizer(settings.lr);
    [model, ema, optimizer] = [m, e, o];
    freeRun = () => {
      m.dispose();
      e?.dispose();
      o.dispose();
    };
  }
  let data: tf.Tensor | null = null;
  try {
    data = trainingData(settings.data, settings.nData, settings.seed);
    if (settings.batch > data.shape[0]) throw new UsageError(`--batch must be at most the number of training examples (${data.shape[0]}), got ${settings.batch}`);
    const labels = settings.conditional ? trainingLabels(settings.data, settings.nData) : undefined;
    const nWeights = model.trainableVariables.reduce((n, w) => n + w.size, 0);
    const classes = isConditional(model) ? `, conditional on ${model.numClasses} classes (null class ${model.nullClass}, p-uncond ${settings.pUncond})` : '';
    io.out.write(
      `training ${readableKind(model)} (${nWeights.toLocaleString('en')} weights) on ${data.shape[0]} ${settings.data} examples${classes}, T = ${schedule.T}, ` +
        `steps ${initialStep + 1}..${settings.steps}, batch ${settings.batch}, lr ${settings.lr}, backend ${backend}${workers > 1 ? ` on ${workers} threads` : ''}, run ${out}\n`,
    );
    const bar = v.quiet ? null : new Progress('train', settings.steps - initialStep, io.out as NodeJS.WriteStream);
    let lastSaved: number | null = resume ? initialStep : null;
    const trainConfig = settings as unknown as Record<string, unknown>;
    const nanAt = faults?.nanAtStep ?? null;
    started();
    try {
      const result = await train({
        model: nanAt === null ? model : withNanFault(model, initialStep, nanAt),
        schedule,
        data,
        labels,
        pUncond: settings.pUncond ?? undefined,
        steps: settings.steps,
        batchSize: settings.batch,
        lr: settings.lr,
        emaDecay: settings.emaDecay ?? undefined,
        emaWarmup: true,
        ema: ema ?? undefined,
        optimizer,
        gradClip: settings.gradClip ?? undefined,
        loss: settings.loss,
        seed: settings.seed,
        initialStep,
        initialSkipped: skipped,
        rngState,
        skipNonFinite: settings.skipNonFinite,
        checkpointEvery: settings.checkpointEvery,
        signal: controller.signal,
        workers,
        onProgress: (p) => bar?.update(p.step - initialStep, `step ${p.step} · loss ${p.loss.toFixed(4)}`),
        onCheckpoint: async (c) => {
          const losses = new Float32Array(initialStep + c.losses.length);
          losses.set(history.subarray(0, initialStep));
          losses.set(c.losses, initialStep);
          await saveCheckpoint(out, { model, ema, optimizer, schedule, step: c.step, seed: settings.seed, rngState: c.rngState, losses, skipped: c.skipped, train: trainConfig });
          lastSaved = c.step;
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
      const where = lastSaved !== null ? `the last good checkpoint is step ${lastSaved} in ${path.resolve(out)} (intact; resume with --resume)` : 'no checkpoint was saved yet';
      throw new Error(`${(e as Error).message}; ${where}`);
    }
  } finally {
    if (data) tf.dispose(data);
    freeRun();
  }
}
