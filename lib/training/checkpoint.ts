/**
 * Run directories: a training run's checkpoint on disk, saved atomically and loaded with every part
 * checked. A run directory holds
 *   checkpoint.json         the manifest (format version, library version, model and schedule
 *                           configs, training settings, step, seed, RNG state, backend, last loss)
 *                           with a TF.js "weightsManifest" naming every tensor, its shape and dtype;
 *   weights-<step>.bin      one binary shard (TF.js weights format, tf.io.encodeWeights) with the
 *                           model, the EMA model, the optimizer state, the batch sampler's order and
 *                           the loss history.
 * A save writes the shard and then the manifest, each to a temporary file in the same directory,
 * fsyncs it and renames it into place; the manifest's rename is the commit. Until then the previous
 * manifest and the shard it names are untouched, so a crash or kill at any moment leaves a loadable
 * run. A run directory has one writer at a time: saves take (or reuse) its advisory lock
 * (lib/runtime/files.ts acquireRunLock) and, once committed, remove only this process's temporary
 * files and those of processes that are gone. Notebooks load a run with loadRun(dir). Notebook: 07_mnist.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import type { TrainableDenoiser } from '../diffusion/denoiser';
import { MlpDenoiser, UNetDenoiser } from '../models';
import { Schedule, ScheduleConfig, scheduleFromConfig } from '../diffusion/schedule';
import type { TrainRngState } from './train';
import { acquireRunLock, describeFsError, heldLock, makeDirs, packageVersion, removeStaleTemps, writeFileAtomic } from '../runtime/files';
import { faults } from '../runtime/faults';

type NamedTensor = { name: string; tensor: tf.Tensor };

/** The manifest's file name inside a run directory. */
export const MANIFEST_FILE = 'checkpoint.json';
/** What the manifest's "format" field must say. */
export const RUN_FORMAT = 'ddpm-workbook-run';
/** The manifest layout this library writes and the newest it reads. */
export const RUN_FORMAT_VERSION = 1;

/** The architectures a run can hold. */
export type ModelKind = 'mlp' | 'unet';
export const MODEL_KINDS: readonly ModelKind[] = ['mlp', 'unet'];

/** One tensor of the shard, as TF.js's weights manifest describes it. */
export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
}

/** The manifest of a run directory (checkpoint.json). */
export interface RunManifest {
  format: typeof RUN_FORMAT;
  formatVersion: number;
  /** The ddpm-workbook version that wrote it. */
  libraryVersion: string;
  savedAt: string;
  model: { kind: ModelKind; config: Record<string, unknown> };
  schedule: ScheduleConfig;
  /** How the run trains (data, batch, lr, EMA decay, ...): kept for resume and `info`; opaque here. */
  train: Record<string, unknown>;
  /** Training steps done. */
  step: number;
  seed: number;
  /** The Rng state after `step` steps (NaN written as null) and the batch sampler's position. */
  rng: { state: (number | null)[]; samplerPos: number };
  /** The tfjs backend the run last trained on. */
  backend: string;
  /** Mean loss of the last few steps before the save (null before the first step). */
  lastLoss: number | null;
  /** Batches skipped for a non-finite loss or gradient. */
  skipped: number;
  /** TF.js weights manifest: one group, one shard. */
  weightsManifest: { paths: string[]; weights: WeightSpec[] }[];
  /** sha256 of each shard, by path. */
  sha256: Record<string, string>;
}

/** Everything a save needs; tensors are read, not disposed. */
export interface CheckpointState {
  model: TrainableDenoiser;
  ema: TrainableDenoiser | null;
  optimizer: tf.Optimizer | null;
  schedule: Schedule;
  step: number;
  seed: number;
  rngState: TrainRngState;
  /** Every loss so far (steps 1..step), NaN where a batch was skipped. */
  losses: Float32Array;
  skipped: number;
  train: Record<string, unknown>;
}

/** A run loaded for sampling or evaluation; dispose() frees its weights. */
export interface LoadedRun {
  dir: string;
  manifest: RunManifest;
  model: TrainableDenoiser;
  ema: TrainableDenoiser | null;
  schedule: Schedule;
  /** Every loss of steps 1..step (NaN where a batch was skipped). */
  losses: Float32Array;
  dispose(): void;
}

/** A run loaded to continue training: also the optimizer (state restored) and the RNG state; dispose() frees the optimizer too. */
export interface ResumableRun extends LoadedRun {
  optimizer: tf.Optimizer;
  rngState: TrainRngState;
}

/** The kind of a model the library can save. */
export function modelKind(model: TrainableDenoiser): ModelKind {
  if (model instanceof MlpDenoiser) return 'mlp';
  if (model instanceof UNetDenoiser) return 'unet';
  throw new Error('a checkpoint can hold an MlpDenoiser or a UNetDenoiser, got another model');
}

/** Builds a fresh model of `kind` from `config` (throws, naming the field, on a bad config). */
export function buildModel(kind: ModelKind, config: Record<string, unknown>): MlpDenoiser | UNetDenoiser {
  if (kind === 'mlp') return new MlpDenoiser(config);
  if (kind === 'unet') return new UNetDenoiser(config);
  throw new Error(`model kind must be one of ${MODEL_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
}

function variableNames(model: TrainableDenoiser): string[] {
  return (model as MlpDenoiser | UNetDenoiser).variableNames;
}

/** The version field of this package's package.json (lib/runtime/files.ts's packageVersion). */
export function libraryVersion(): string {
  return packageVersion();
}

// Optimizer fields outside getWeights() that a bit-exact resume needs: tf's Adam keeps beta^t as a
// running float32 product, and setWeights recomputes it with pow(), which differs in the last bits.
const OPTIMIZER_EXTRA_STATE = ['accBeta1', 'accBeta2'] as const;

function optimizerExtras(optimizer: tf.Optimizer): { key: string; variable: tf.Variable }[] {
  const o = optimizer as unknown as Record<string, unknown>;
  return OPTIMIZER_EXTRA_STATE.filter((k) => o[k] instanceof tf.Variable).map((k) => ({ key: k, variable: o[k] as tf.Variable }));
}

/** The step number in the manifest at dir, or null when dir holds no run (no checkpoint.json). */
function previousStep(dir: string): number | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')).step ?? null;
  } catch {
    return null;
  }
}

/**
 * Saves a checkpoint of a run into `dir` (created if needed) atomically: the previous checkpoint
 * stays loadable until the new manifest is renamed into place, and on any error (a full disk, an
 * unwritable directory) no partial file is left and the error says which. Returns the manifest.
 */
export async function saveCheckpoint(dir: string, c: CheckpointState): Promise<RunManifest> {
  const kind = modelKind(c.model);
  const names = variableNames(c.model);
  const tensors: NamedTensor[] = [];
  const fresh: tf.Tensor[] = [];
  c.model.trainableVariables.forEach((v, i) => tensors.push({ name: `model/${names[i]}`, tensor: v }));
  c.ema?.trainableVariables.forEach((v, i) => tensors.push({ name: `ema/${names[i]}`, tensor: v }));
  if (c.optimizer) {
    const byTfName = new Map(c.model.trainableVariables.map((v, i) => [v.name, names[i]]));
    const weights = await c.optimizer.getWeights();
    // getWeights makes a fresh tensor for the iteration count (not one of the optimizer's variables).
    fresh.push(...weights.map((w) => w.tensor).filter((t) => !(t instanceof tf.Variable)));
    for (const w of weights) {
      const slash = w.name.lastIndexOf('/');
      const owner = slash > 0 ? byTfName.get(w.name.slice(0, slash)) : undefined;
      tensors.push({ name: owner ? `optimizer/${owner}${w.name.slice(slash)}` : `optimizer/${w.name}`, tensor: w.tensor });
    }
    for (const x of optimizerExtras(c.optimizer)) tensors.push({ name: `optimizerState/${x.key}`, tensor: x.variable });
  }
  const order = tf.tensor1d(c.rngState.samplerOrder, 'int32');
  const losses = tf.tensor1d(c.losses, 'float32');
  fresh.push(order, losses);
  tensors.push({ name: 'state/samplerOrder', tensor: order }, { name: 'history/losses', tensor: losses });
  let encoded: { data: ArrayBuffer; specs: tf.io.WeightsManifestEntry[] };
  try {
    encoded = await tf.io.encodeWeights(tensors);
  } finally {
    tf.dispose(fresh);
  }
  if (c.losses.length !== c.step) throw new Error(`losses must hold one loss per step (${c.step}), got ${c.losses.length}`);

  const shard = `weights-${String(c.step).padStart(8, '0')}.bin`;
  const bytes = new Uint8Array(encoded.data);
  const tail = Array.from(c.losses.slice(-20)).filter(Number.isFinite);
  const manifest: RunManifest = {
    format: RUN_FORMAT,
    formatVersion: RUN_FORMAT_VERSION,
    libraryVersion: libraryVersion(),
    savedAt: new Date().toISOString(),
    model: { kind, config: { ...c.model.config } },
    schedule: c.schedule.config,
    train: c.train,
    step: c.step,
    seed: c.seed,
    rng: { state: c.rngState.rng.map((v) => (Number.isNaN(v) ? null : v)), samplerPos: c.rngState.samplerPos },
    backend: tf.getBackend(),
    lastLoss: tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : null,
    skipped: c.skipped,
    weightsManifest: [{ paths: [shard], weights: encoded.specs.map((s) => ({ name: s.name, shape: s.shape, dtype: s.dtype as WeightSpec['dtype'] })) }],
    sha256: { [shard]: crypto.createHash('sha256').update(bytes).digest('hex') },
  };
  const before = previousStep(dir);
  const kept = before === null ? 'no earlier checkpoint exists' : `the previous checkpoint (step ${before}) is intact`;
  const pause = (stage: 'weights' | 'manifest') => (faults ? (tmp: string) => faults!.savePause(stage, c.step, tmp) : undefined);
  // One writer per run directory: a save inside a process that holds the lock (ddpm train) uses it;
  // any other save holds the lock for its own duration, and refuses while another process has it.
  let ownLock: { release(): void } | null = null;
  try {
    makeDirs(dir);
    if (!heldLock(dir)) ownLock = acquireRunLock(dir);
    writeFileAtomic(path.join(dir, shard), bytes, { beforeRename: pause('weights') });
    writeFileAtomic(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 1) + '\n', { beforeRename: pause('manifest') });
  } catch (e) {
    ownLock?.release();
    throw new Error(`could not save the checkpoint of step ${c.step} in ${dir}: ${describeFsError(e)}; ${kept}`);
  }
  try {
    // Committed: shards no manifest names any more can go, and so can temporary files, but only this
    // process's and those of processes that no longer exist (a killed save); the lock makes sure no
    // other live process writes here.
    for (const f of fs.readdirSync(dir)) if (/^weights-\d+\.bin$/.test(f) && f !== shard) fs.rmSync(path.join(dir, f), { force: true });
    removeStaleTemps(dir);
  } finally {
    ownLock?.release();
  }
  return manifest;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads and checks dir/checkpoint.json; every problem is an Error naming the file and the field. */
export function readManifest(dir: string): RunManifest {
  const file = path.join(dir, MANIFEST_FILE);
  if (!fs.existsSync(dir)) throw new Error(`run directory ${dir} does not exist`);
  if (!fs.existsSync(file)) throw new Error(`${dir} holds no run: ${MANIFEST_FILE} is missing (train one with: ddpm train --out ${dir})`);
  let m: unknown;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}); the manifest is damaged`);
  }
  const bad = (field: string, want: string, got: unknown) => new Error(`${file}: ${field} must be ${want}, got ${JSON.stringify(got)}`);
  if (!isObject(m)) throw bad('the manifest', 'a JSON object', m);
  if (m.format !== RUN_FORMAT) throw bad('format', JSON.stringify(RUN_FORMAT), m.format);
  if (typeof m.formatVersion !== 'number' || !Number.isInteger(m.formatVersion) || m.formatVersion < 1) {
    throw bad('formatVersion', 'an integer >= 1', m.formatVersion);
  }
  if (m.formatVersion > RUN_FORMAT_VERSION) {
    throw new Error(
      `${file} has format version ${m.formatVersion}, newer than the ${RUN_FORMAT_VERSION} this library (ddpm-workbook ${libraryVersion()}) reads; ` +
        `it was written by ddpm-workbook ${String(m.libraryVersion)}: update the library to load it`,
    );
  }
  if (!isObject(m.model) || !MODEL_KINDS.includes(m.model.kind as ModelKind) || !isObject(m.model.config)) {
    throw bad('model', `{kind: ${MODEL_KINDS.join('|')}, config: {...}}`, m.model);
  }
  if (!isObject(m.schedule) || typeof m.schedule.kind !== 'string') throw bad('schedule', 'a schedule config {kind, T, ...}', m.schedule);
  try {
    // Rebuilt here (cheap: T numbers) so that a bad schedule fails at load, naming the field, not later.
    scheduleFromConfig(m.schedule as unknown as ScheduleConfig);
  } catch (e) {
    throw new Error(`${file}: schedule ${JSON.stringify(m.schedule)} is not a schedule this library can rebuild: ${(e as Error).message}`);
  }
  if (!isObject(m.train)) throw bad('train', 'an object', m.train);
  if (typeof m.step !== 'number' || !Number.isInteger(m.step) || m.step < 0) throw bad('step', 'an integer >= 0', m.step);
  if (typeof m.seed !== 'number' || !Number.isFinite(m.seed)) throw bad('seed', 'a finite number', m.seed);
  const rng = m.rng as Record<string, unknown>;
  if (!isObject(rng) || !Array.isArray(rng.state) || rng.state.length !== 5 || !rng.state.every((v) => v === null || Number.isFinite(v))) {
    throw bad('rng.state', 'an array of 5 numbers (null for none)', rng?.state);
  }
  if (typeof rng.samplerPos !== 'number' || !Number.isInteger(rng.samplerPos) || rng.samplerPos < 0) throw bad('rng.samplerPos', 'an integer >= 0', rng.samplerPos);
  if (typeof m.backend !== 'string') throw bad('backend', 'a string', m.backend);
  if (typeof m.skipped !== 'number' || !Number.isInteger(m.skipped) || m.skipped < 0) throw bad('skipped', 'an integer >= 0', m.skipped);
  if (m.lastLoss !== null && typeof m.lastLoss !== 'number') throw bad('lastLoss', 'a number or null', m.lastLoss);
  const wm = m.weightsManifest;
  if (!Array.isArray(wm) || wm.length !== 1 || !isObject(wm[0]) || !Array.isArray(wm[0].paths) || wm[0].paths.length !== 1 || !Array.isArray(wm[0].weights)) {
    throw bad('weightsManifest', 'one group [{paths: [one shard], weights: [...]}]', wm);
  }
  (wm[0].weights as unknown[]).forEach((w, i) => {
    const ok =
      isObject(w) &&
      typeof w.name === 'string' &&
      Array.isArray(w.shape) &&
      w.shape.every((d) => Number.isInteger(d) && d >= 0) &&
      (w.dtype === 'float32' || w.dtype === 'int32');
    if (!ok) throw bad(`weightsManifest[0].weights[${i}]`, '{name, shape: [integers >= 0], dtype: float32|int32}', w);
  });
  if (!isObject(m.sha256)) throw bad('sha256', 'an object {shard: hex digest}', m.sha256);
  return m as unknown as RunManifest;
}

/** The shard's path inside dir; throws if the manifest's path leaves the run directory. */
function shardPath(dir: string, rel: unknown): string {
  if (typeof rel !== 'string' || rel.length === 0) throw new Error(`${dir}/${MANIFEST_FILE}: weight path must be a file name, got ${JSON.stringify(rel)}`);
  const root = path.resolve(dir);
  const full = path.resolve(root, rel);
  if (path.isAbsolute(rel) || !full.startsWith(root + path.sep)) {
    throw new Error(`${dir}/${MANIFEST_FILE}: weight path ${JSON.stringify(rel)} leaves the run directory; refusing to read it`);
  }
  if (!fs.existsSync(full)) throw new Error(`${dir}: the weights file ${rel} named by ${MANIFEST_FILE} is missing`);
  const real = fs.realpathSync(full);
  if (!real.startsWith(fs.realpathSync(root) + path.sep)) {
    throw new Error(`${dir}/${MANIFEST_FILE}: weight path ${JSON.stringify(rel)} resolves to ${real}, outside the run directory; refusing to read it`);
  }
  return full;
}

const BYTES: Record<WeightSpec['dtype'], number> = { float32: 4, int32: 4 };

/**
 * Reads a run directory's manifest and shard and checks them: the manifest's fields, the weight
 * path, the shard's size and sha256, and every tensor's name, shape and dtype against the model
 * the config builds. Resolves to the manifest and the tensors by name (the caller disposes them).
 */
export async function readCheckpoint(dir: string): Promise<{ manifest: RunManifest; tensors: tf.NamedTensorMap }> {
  const manifest = readManifest(dir);
  const group = manifest.weightsManifest[0];
  const rel = group.paths[0];
  const file = shardPath(dir, rel);
  const bytes = fs.readFileSync(file);
  const need = group.weights.reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1) * BYTES[w.dtype], 0);
  if (bytes.length !== need) {
    throw new Error(`${file} holds ${bytes.length} bytes, the manifest's tensors need ${need}: the weights file is ${bytes.length < need ? 'truncated' : 'too long'}`);
  }
  const digest = crypto.createHash('sha256').update(bytes).digest('hex');
  if (manifest.sha256[rel] !== digest) {
    throw new Error(`${file} is corrupted: its sha256 is ${digest}, the manifest recorded ${String(manifest.sha256[rel])}`);
  }
  checkTensorSpecs(dir, manifest);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const tensors = tf.io.decodeWeights(buffer, group.weights);
  return { manifest, tensors };
}

/** Checks the weight specs against the architecture the manifest's model config builds. */
function checkTensorSpecs(dir: string, m: RunManifest): void {
  const where = `${dir}/${MANIFEST_FILE}`;
  let model: MlpDenoiser | UNetDenoiser;
  try {
    model = buildModel(m.model.kind, m.model.config);
  } catch (e) {
    throw new Error(`${where}: the model config is invalid: ${(e as Error).message}`);
  }
  const expected = new Map<string, number[]>();
  try {
    model.variableNames.forEach((n, i) => expected.set(n, model.trainableVariables[i].shape));
  } finally {
    model.dispose();
  }
  const specs = new Map(m.weightsManifest[0].weights.map((w) => [w.name, w]));
  if (specs.size !== m.weightsManifest[0].weights.length) throw new Error(`${where}: a tensor name appears twice in weightsManifest`);
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
  const mismatch = (name: string, got: number[], want: number[]) =>
    new Error(
      `${where}: the ${m.model.kind} config does not match the weights: ${name} has shape [${got}] in the weights file, the config ${JSON.stringify(m.model.config)} needs [${want}]`,
    );
  if (m.model.kind === 'unet') {
    // Said in the config's terms first: the class count decides the embedding's rows (classes + the null class).
    const emb = specs.get('model/classEmbedding');
    const inConfig = Number(m.model.config.numClasses ?? 0);
    const inWeights = emb && emb.shape.length === 2 ? emb.shape[0] - 1 : 0;
    if (inConfig !== inWeights) {
      throw new Error(
        `${where}: model.config.numClasses is ${JSON.stringify(m.model.config.numClasses ?? null)} but the weights' class embedding ` +
          `${emb ? `has ${emb.shape[0]} rows (${inWeights} classes and the null class)` : 'is absent (an unconditional model)'}: the config does not match the weights`,
      );
    }
  }
  const hasEma = [...specs.keys()].some((n) => n.startsWith('ema/'));
  for (const [name, shape] of expected) {
    for (const group of hasEma ? ['model', 'ema'] : ['model']) {
      const s = specs.get(`${group}/${name}`);
      if (!s) throw new Error(`${where}: the weights lack ${group}/${name}, which the ${m.model.kind} config needs: the config does not match the weights`);
      if (!same(s.shape, shape)) throw mismatch(s.name, s.shape, shape);
      if (s.dtype !== 'float32') throw new Error(`${where}: ${s.name} must be float32, got ${s.dtype}`);
    }
  }
  for (const s of specs.values()) {
    const [group, ...rest] = s.name.split('/');
    const rest1 = rest.join('/');
    if (group === 'model' || group === 'ema') {
      if (!expected.has(rest1)) throw new Error(`${where}: the weights hold ${s.name}, which the ${m.model.kind} config does not have: the config does not match the weights`);
    } else if (group === 'optimizer') {
      const owner = rest1.includes('/') ? rest1.slice(0, rest1.lastIndexOf('/')) : null;
      if (owner !== null && expected.has(owner) && !same(s.shape, expected.get(owner)!)) throw mismatch(s.name, s.shape, expected.get(owner)!);
    } else if (s.name === 'state/samplerOrder') {
      if (s.dtype !== 'int32' || s.shape.length !== 1) throw new Error(`${where}: state/samplerOrder must be int32 [N], got ${s.dtype} [${s.shape}]`);
    } else if (s.name === 'history/losses') {
      if (s.dtype !== 'float32' || !same(s.shape, [m.step])) throw new Error(`${where}: history/losses must be float32 [${m.step}] (one per step), got ${s.dtype} [${s.shape}]`);
    } else if (group !== 'optimizerState') {
      throw new Error(`${where}: unknown tensor ${s.name} in the weights`);
    }
  }
  for (const need of ['state/samplerOrder', 'history/losses']) if (!specs.has(need)) throw new Error(`${where}: the weights lack ${need}`);
}

function modelFrom(kind: ModelKind, config: Record<string, unknown>, tensors: tf.NamedTensorMap, group: string): TrainableDenoiser {
  const model = buildModel(kind, config);
  model.variableNames.forEach((n, i) => model.trainableVariables[i].assign(tensors[`${group}/${n}`]));
  return model;
}

async function checkFinite(dir: string, tensors: tf.NamedTensorMap): Promise<void> {
  for (const [name, t] of Object.entries(tensors)) {
    if (!(name.startsWith('model/') || name.startsWith('ema/'))) continue;
    const bad = tf.tidy(() => tf.logicalNot(tf.isFinite(t)).any());
    const any = (await bad.data())[0];
    bad.dispose();
    if (any) throw new Error(`${dir}: ${name} holds NaN or infinite values; the checkpoint is unusable`);
  }
}

async function assembleRun(dir: string, manifest: RunManifest, tensors: tf.NamedTensorMap): Promise<LoadedRun> {
  // Read before any model exists (async: webgpu under Node cannot read synchronously).
  const losses = Float32Array.from((await tensors['history/losses'].data()) as Float32Array);
  const model = modelFrom(manifest.model.kind, manifest.model.config, tensors, 'model');
  const hasEma = Object.keys(tensors).some((n) => n.startsWith('ema/'));
  const ema = hasEma ? modelFrom(manifest.model.kind, manifest.model.config, tensors, 'ema') : null;
  let schedule: Schedule;
  try {
    schedule = scheduleFromConfig(manifest.schedule);
  } catch (e) {
    model.dispose();
    ema?.dispose();
    throw new Error(`${dir}/${MANIFEST_FILE}: the schedule config ${JSON.stringify(manifest.schedule)} is invalid: ${(e as Error).message}`);
  }
  return {
    dir,
    manifest,
    model,
    ema,
    schedule,
    losses,
    dispose: () => {
      model.dispose();
      ema?.dispose();
    },
  };
}

/**
 * Loads a run directory for sampling or evaluation, with every check of readCheckpoint: the
 * model, the EMA model (null if the run keeps none), the schedule, the loss history and the manifest.
 * Call dispose() when done.
 */
export async function loadRun(dir: string): Promise<LoadedRun> {
  const { manifest, tensors } = await readCheckpoint(dir);
  try {
    await checkFinite(dir, tensors);
    return await assembleRun(dir, manifest, tensors);
  } finally {
    tf.dispose(Object.values(tensors));
  }
}

/**
 * Loads a run to continue training: as loadRun, plus `optimizer` (made by makeOptimizer, its state
 * restored through setWeights) and the RNG state, so that train({ initialStep: manifest.step, ... })
 * continues exactly where the run stopped.
 */
export async function loadRunForResume(dir: string, makeOptimizer: () => tf.Optimizer): Promise<ResumableRun> {
  const { manifest, tensors } = await readCheckpoint(dir);
  let run: LoadedRun | null = null;
  let optimizer: tf.Optimizer | null = null;
  try {
    await checkFinite(dir, tensors);
    run = await assembleRun(dir, manifest, tensors);
    optimizer = makeOptimizer();
    const names = variableNames(run.model);
    const tfName = new Map(names.map((n, i) => [n, run!.model.trainableVariables[i].name]));
    const weights: NamedTensor[] = [];
    for (const { name } of manifest.weightsManifest[0].weights) {
      if (!name.startsWith('optimizer/')) continue;
      const t = tensors[name];
      const rest = name.slice('optimizer/'.length);
      const slash = rest.lastIndexOf('/');
      const owner = slash > 0 ? tfName.get(rest.slice(0, slash)) : undefined;
      weights.push({ name: owner ? `${owner}${rest.slice(slash)}` : rest, tensor: t });
    }
    if (weights.length > 0) await optimizer.setWeights(weights);
    for (const x of optimizerExtras(optimizer)) {
      const saved = tensors[`optimizerState/${x.key}`];
      if (saved) x.variable.assign(saved);
    }
    const order = Int32Array.from((await tensors['state/samplerOrder'].data()) as Int32Array);
    const rngState: TrainRngState = {
      rng: manifest.rng.state.map((v) => (v === null ? NaN : v)),
      samplerOrder: order,
      samplerPos: manifest.rng.samplerPos,
    };
    const loaded = run;
    const opt = optimizer;
    return {
      ...run,
      optimizer,
      rngState,
      dispose: () => {
        loaded.dispose();
        opt.dispose();
      },
    };
  } catch (e) {
    run?.dispose();
    optimizer?.dispose();
    throw e;
  } finally {
    // setWeights made variables of its own from these tensors; the decoded copies can go.
    tf.dispose(Object.values(tensors));
  }
}
