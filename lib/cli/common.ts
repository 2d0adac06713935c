/**
 * What the `ddpm` commands share: the data-set table, the backend choice, opening a run for
 * sampling, and sampling in memory-bounded chunks.
 */
import * as tf from '@tensorflow/tfjs';
import {
  Denoiser,
  LoadedRun,
  RunManifest,
  Schedule,
  TrainableDenoiser,
  checkerboard,
  deriveSeed,
  gaussianMixture2d,
  loadMnist,
  loadRun,
  moons,
  readManifest,
  sampleDDIM,
  sampleDDPM,
  swissRoll,
  useBestBackend,
} from '../index';
import { BACKENDS, Command, UsageError, Values, choiceValue, numValue, requireValue } from './flags';

/** Where the CLI writes; tests pass their own. */
export interface CliIO {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  err: NodeJS.WritableStream;
}

/** One data set of `ddpm train --data`: its kind, default size and how to draw it. */
export interface DatasetRow {
  name: string;
  image: boolean;
  /** Examples when --n-data is not given (mnist: all train digits). */
  defaultSize: number;
  maxSize: number;
  /** Draws n examples (seeded), or, for images, the first n train digits (all when n is null). */
  load(n: number | null, seed: number): tf.Tensor;
  /** The class of each example load() gives (the same n), for sets that have classes (mnist's digits). */
  labels?(n: number | null): Int32Array;
}

const points = (make: (n: number, o: { seed: number }) => tf.Tensor2D): DatasetRow['load'] => (n, seed) => make(n ?? 10000, { seed });

/** Every data set, once: training data, held-out draws and eval all read this table. */
export const DATASETS: readonly DatasetRow[] = [
  { name: 'swissroll', image: false, defaultSize: 10000, maxSize: 1e7, load: points(swissRoll) },
  { name: 'moons', image: false, defaultSize: 10000, maxSize: 1e7, load: points(moons) },
  { name: 'mixture', image: false, defaultSize: 10000, maxSize: 1e7, load: points(gaussianMixture2d) },
  { name: 'checkerboard', image: false, defaultSize: 10000, maxSize: 1e7, load: points(checkerboard) },
  {
    name: 'mnist',
    image: true,
    defaultSize: 9000,
    maxSize: 1e5,
    load: (n) => loadMnist({ split: 'train', limit: n ?? undefined }).images,
    // Parsed again (cheap: the levels are cached per process) so load() keeps returning one tensor.
    labels: (n) => {
      const { images, labels } = loadMnist({ split: 'train', limit: n ?? undefined });
      images.dispose();
      return labels;
    },
  },
];

/** The table's row for a data-set name (throws for a name the table lacks). */
export function dataset(name: string): DatasetRow {
  const row = DATASETS.find((d) => d.name === name);
  if (!row) throw new Error(`data must be one of ${DATASETS.map((d) => d.name).join(', ')}, got ${JSON.stringify(name)}`);
  return row;
}

/** The training examples of a run: the data set drawn with the run's seed. */
export function trainingData(name: string, nData: number | null, seed: number): tf.Tensor {
  return dataset(name).load(nData, deriveSeed(seed, 0xda7a));
}

/** The class of each training example of a run (trainingData's order), for a set with classes. */
export function trainingLabels(name: string, nData: number | null): Int32Array {
  const row = dataset(name);
  if (!row.labels) throw new Error(`${name} has no class labels`);
  return row.labels(nData);
}

/** The class count a run's model was built with (0: unconditional), from its manifest. */
export function runClasses(m: RunManifest): number {
  const n = m.model.config.numClasses;
  return typeof n === 'number' && n > 0 ? n : 0;
}

/**
 * The classes --class asks for (null when not given): an integer, a comma list or `all`, each in
 * [0, numClasses - 1]; a UsageError for an unconditional run or a class out of range.
 */
export function classValues(v: Values, m: RunManifest, dir: string): number[] | null {
  const raw = v.class;
  if (raw === undefined) return null;
  const numClasses = runClasses(m);
  if (numClasses === 0) throw new UsageError(`--class: run ${dir} was trained without --conditional (it has no classes); sample it without --class and --guidance`);
  const text = String(raw).trim();
  if (text === 'all') return Array.from({ length: numClasses }, (_, k) => k);
  const parts = text.split(',').map((p) => p.trim());
  const bad = () => new UsageError(`--class must be an integer in [0, ${numClasses - 1}], a comma list of them or all, got ${JSON.stringify(raw)}`);
  const classes = parts.map((p) => {
    if (!/^\d+$/.test(p) || Number(p) >= numClasses) throw bad();
    return Number(p);
  });
  const twice = classes.find((c, i) => classes.indexOf(c) !== i);
  if (twice !== undefined) throw new UsageError(`--class names class ${twice} twice (${JSON.stringify(raw)}); give each class once`);
  return classes;
}

/** --guidance W (default 0), refused without --class: guidance steers toward a class. */
export function guidanceValue(v: Values, cmd: Command): number {
  const w = numValue(v, cmd, 'guidance');
  if (w !== undefined && v.class === undefined) throw new UsageError('--guidance needs --class (guidance steers the samples toward a class)');
  return w ?? 0;
}

/** Fresh 2-D points from a run's data distribution, never the training draw. */
export function heldOutPoints(name: string, n: number, seed: number): tf.Tensor2D {
  const row = dataset(name);
  if (row.image) throw new Error(`heldOutPoints: ${name} is an image set`);
  return row.load(n, deriveSeed(seed, 0x4e1d)) as tf.Tensor2D;
}

/** Sets the backend --backend asks for; prints which one (unless --quiet) and why others were passed over. */
export async function chooseBackend(v: Values, cmd: Command, io: CliIO): Promise<string> {
  const name = choiceValue<(typeof BACKENDS)[number]>(v, cmd, 'backend') ?? 'auto';
  // The library's one chooser; it also writes the line saying what it chose and why (to stderr here).
  const choice = await useBestBackend({ prefer: name === 'auto' ? undefined : name, preferLabel: '--backend', verbose: !v.quiet, log: (line) => io.err.write(`${line}\n`) });
  return choice.name;
}

/** A run opened for sampling or evaluation, with the weights --weights picks. */
export interface OpenRun {
  run: LoadedRun;
  model: TrainableDenoiser;
  which: 'ema' | 'model';
  image: boolean;
}

/**
 * Loads --run (every check of loadRun) and picks its weights; manifest problems, and those `check`
 * finds in the manifest (flags that do not fit the run), come before the backend starts.
 */
export async function openRun(v: Values, cmd: Command, io: CliIO, check?: (m: RunManifest, dir: string) => void): Promise<OpenRun> {
  const dir = requireValue(v, cmd, 'run');
  const which = choiceValue<'ema' | 'model'>(v, cmd, 'weights');
  const manifest = readManifest(dir);
  check?.(manifest, dir);
  await chooseBackend(v, cmd, io);
  const run = await loadRun(dir);
  if (which === 'ema' && !run.ema) {
    run.dispose();
    throw new UsageError(`--weights ema: the run in ${dir} keeps no EMA (it trained with --ema 0); use --weights model`);
  }
  const useEma = which !== 'model' && run.ema !== null;
  return { run, model: useEma ? run.ema! : run.model, which: useEma ? 'ema' : 'model', image: run.manifest.model.kind === 'unet' };
}

/** The tensor memory one chunk of samples may use, and what `ddpm sample --help` states. */
export const CHUNK_BUDGET_BYTES = 256 * 1024 * 1024;

/**
 * Bytes of tensor memory one more sample adds to a model call: the difference between the peak of
 * a call on 2 examples and on 1 (tf.profile), times 2 for the sampler's own tensors (x_t, the noise,
 * the mean and variance of the step, the next x_t) and for a margin. Measured, not computed, so that
 * it holds for any architecture.
 */
export async function bytesPerSample(model: Denoiser, sampleShape: number[]): Promise<number> {
  const peak = async (b: number) => {
    const x = tf.zeros([b, ...sampleShape]);
    const t = tf.fill([b], 1, 'int32') as tf.Tensor1D;
    const info = await tf.profile(() => tf.tidy(() => model.predictEps(x, t)));
    tf.dispose([x, t]);
    if (info.result instanceof tf.Tensor) info.result.dispose();
    else tf.dispose(info.result as tf.Tensor[]);
    return info.peakBytes;
  };
  const one = await peak(1);
  const two = await peak(2);
  const elem = sampleShape.reduce((a, b) => a * b, 1) * 4;
  return 2 * Math.max(two - one, elem) + 6 * elem;
}

/** How `n` samples are split: chunks of `size` (the last one shorter), each with its own seed. */
export interface ChunkPlan {
  size: number;
  count: number;
  /** The estimated peak tensor bytes of one chunk. */
  bytesPerChunk: number;
}

/** Plans chunks for n samples of perSample bytes each under budget bytes (or of the size asked for). */
export function planChunks(n: number, perSample: number, budget: number = CHUNK_BUDGET_BYTES, asked?: number): ChunkPlan {
  const fit = Math.max(1, Math.floor(budget / perSample));
  // A power of two, so that the small differences in the measurement between backends rarely change it.
  const auto = 2 ** Math.floor(Math.log2(fit));
  const size = Math.min(n, asked ?? auto);
  return { size, count: Math.ceil(n / size), bytesPerChunk: size * perSample };
}

/**
 * The seed of chunk c: the chunk 0 uses `seed` itself (so n within one chunk gives what one call of
 * the sampler with that seed gives), the others a seed derived from it.
 */
export function chunkSeed(seed: number, c: number): number {
  return c === 0 ? seed : deriveSeed(seed, 0xc4a1, c);
}

/** How `sample` and `eval` draw samples: the sampler, its DDIM settings, the seed and the chunk size asked for. */
export interface DrawOptions {
  sampler: 'ddpm' | 'ddim';
  /** DDIM steps (ignored by ddpm, which takes all T). */
  steps: number;
  eta: number;
  seed: number;
  chunk?: number;
  /** Image runs clip x0_hat to [-1, 1] at every step, as notebook 07 does. */
  clipX0: boolean;
  /** Called with the steps done so far, out of plan.count * steps. */
  onStep?: (done: number) => void;
}

/** The chunk plan of drawing n samples of shape `one` within CHUNK_BUDGET_BYTES (made before any sampling). */
export async function planDraw(model: Denoiser, n: number, one: number[], chunk?: number): Promise<ChunkPlan> {
  return planChunks(n, await bytesPerSample(model, one), CHUNK_BUDGET_BYTES, chunk);
}

/** n samples of shape `one`, drawn in the chunks of `plan` (chunk c seeded by chunkSeed(seed, c)); refuses non-finite values. */
export async function drawSamples(model: Denoiser, schedule: Schedule, n: number, one: number[], plan: ChunkPlan, o: DrawOptions): Promise<Float32Array> {
  const dim = one.reduce((a, b) => a * b, 1);
  const stepsPerChunk = o.sampler === 'ddpm' ? schedule.T : o.steps;
  const values = new Float32Array(n * dim);
  for (let c = 0; c < plan.count; c++) {
    const size = Math.min(plan.size, n - c * plan.size);
    const opts = { seed: chunkSeed(o.seed, c), onStep: (i: { step: number }) => o.onStep?.(c * stepsPerChunk + i.step), clipX0: o.clipX0 };
    const { x0 } =
      o.sampler === 'ddpm'
        ? await sampleDDPM(model, schedule, [size, ...one], opts)
        : await sampleDDIM(model, schedule, [size, ...one], { ...opts, steps: o.steps, eta: o.eta });
    values.set((await x0.data()) as Float32Array, c * plan.size * dim);
    x0.dispose();
  }
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new Error(`the samples hold a non-finite value (${values[i]} at ${i}); the model is unusable`);
  }
  return values;
}
