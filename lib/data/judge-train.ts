/**
 * `npm run judge:train`: trains the digit judge (lib/data/judge.ts) on loadMnist({split: 'train'})
 * and writes lib/data/judge/weights.bin and judge.json. Every draw comes from --seed (weights from
 * deriveSeed(seed, k), the batch order and the shifts from one Rng), so the same seed on the same
 * backend rewrites the same bytes; the command prints whether they match the weights it replaced.
 * Options: --seed N (0), --epochs N (12), --batch N (64), --lr X (1e-3), --shift N (2),
 * --outliers X (0.5, the outlier-exposure weight), --out DIR (lib/data/judge).
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { Rng, deriveSeed } from '../diffusion/random';
import { checkInteger, checkNumber } from '../diffusion/validate';
import { FusedAdam } from '../training/optim';
import { useBestBackend } from '../runtime/backend';
import { writeFileAtomic } from '../runtime/files';
import {
  DigitJudge,
  JUDGE_CLASSES,
  JUDGE_FORMAT,
  JUDGE_FORMAT_VERSION,
  JUDGE_MANIFEST,
  JUDGE_SIDE,
  JUDGE_WEIGHTS,
  JudgeManifest,
  judgeAccuracy,
  judgeDir,
  judgeWeightBytes,
} from './judge';
import { loadMnist } from './mnist';

const PIXELS = JUDGE_SIDE * JUDGE_SIDE;

/** Options of trainJudge. */
export interface JudgeTrainOptions {
  /** Training digits, row-major [n, 28, 28, 1] in [-1, 1], and their labels. */
  images: Float32Array;
  labels: Int32Array;
  seed?: number;
  epochs?: number;
  batchSize?: number;
  learningRate?: number;
  /** Each training image is shifted by a uniform integer in [-maxShift, maxShift] px along each axis. */
  maxShift?: number;
  /**
   * Weight of the outlier-exposure term (Hendrycks et al. 2019): each step also shows batchSize / 2
   * non-digits (training digits with their pixels permuted, or with their sixteen 7x7 patches
   * shuffled) and adds this times their cross-entropy to the uniform distribution; 0 turns it off.
   */
  outlierWeight?: number;
  /** Stop after this many steps in all (for tests); default: every full batch of every epoch. */
  maxSteps?: number;
  /** Called every `logEvery` steps with the mean loss since the last call. */
  onProgress?: (step: number, steps: number, loss: number) => void;
  logEvery?: number;
}

/**
 * Trains a fresh DigitJudge by Adam on softmax cross-entropy, with every image shifted by a random
 * integer offset each time it is drawn (background -1 fills the edge). Each epoch visits a fresh
 * permutation of the images in full batches (the remainder of n / batchSize is left out that
 * epoch). Returns the judge and the mean loss of the last logged window.
 */
export async function trainJudge(o: JudgeTrainOptions): Promise<{ judge: DigitJudge; steps: number; lastLoss: number }> {
  const seed = o.seed ?? 0;
  const epochs = o.epochs ?? 12;
  const batchSize = o.batchSize ?? 64;
  const lr = o.learningRate ?? 1e-3;
  const maxShift = o.maxShift ?? 2;
  const logEvery = o.logEvery ?? 20;
  const outlierWeight = o.outlierWeight ?? 0.5;
  checkNumber('outlierWeight', outlierWeight, 0, 10);
  checkInteger('seed', seed, 0);
  checkInteger('epochs', epochs, 1);
  checkInteger('batchSize', batchSize, 1);
  checkNumber('learningRate', lr, 0, 1, { lo: true });
  checkInteger('maxShift', maxShift, 0, 6);
  checkInteger('logEvery', logEvery, 1);
  if (o.images.length % PIXELS !== 0) throw new Error(`images must hold whole 28x28 images, got ${o.images.length} values`);
  const n = o.images.length / PIXELS;
  if (o.labels.length !== n) throw new Error(`labels must have one entry per image (${n}), got ${o.labels.length}`);
  if (n < batchSize) throw new Error(`batchSize must be at most the ${n} images, got ${batchSize}`);
  o.labels.forEach((l, i) => checkInteger(`labels[${i}]`, l, 0, JUDGE_CLASSES - 1));
  const perEpoch = Math.floor(n / batchSize);
  const steps = Math.min(epochs * perEpoch, o.maxSteps ?? Infinity);
  checkInteger('maxSteps', steps, 1);

  const judge = new DigitJudge(deriveSeed(seed, 0));
  const optimizer = new FusedAdam(lr);
  const rng = new Rng(deriveSeed(seed, 1));
  const order = new Int32Array(n);
  const batch = new Float32Array(batchSize * PIXELS);
  const batchLabels = new Int32Array(batchSize);
  const outlierCount = outlierWeight > 0 ? Math.max(1, Math.floor(batchSize / 2)) : 0;
  const outliers = new Float32Array(outlierCount * PIXELS);
  const scratch = new Float32Array(PIXELS);
  const pending: tf.Scalar[] = [];
  let lastLoss = NaN;
  try {
    for (let step = 0; step < steps; step++) {
      const slot = step % perEpoch;
      if (slot === 0) {
        for (let i = 0; i < n; i++) order[i] = i;
        for (let i = n - 1; i > 0; i--) {
          const j = rng.int(0, i);
          [order[i], order[j]] = [order[j], order[i]];
        }
      }
      for (let b = 0; b < batchSize; b++) {
        const src = order[slot * batchSize + b];
        shiftInto(o.images, src, batch, b, rng.int(-maxShift, maxShift), rng.int(-maxShift, maxShift));
        batchLabels[b] = o.labels[src];
      }
      for (let b = 0; b < outlierCount; b++) {
        shiftInto(o.images, rng.int(0, n - 1), scratch, 0, 0, 0);
        if (rng.uniform() < 0.5) permutePixels(scratch, outliers, b, rng);
        else shufflePatches(scratch, outliers, b, rng);
      }
      const loss = tf.tidy(() => {
        const x = tf.tensor4d(batch, [batchSize, JUDGE_SIDE, JUDGE_SIDE, 1]);
        const y = tf.oneHot(tf.tensor1d(batchLabels, 'int32'), JUDGE_CLASSES);
        const objective = (): tf.Scalar => {
          const digitLoss = tf.losses.softmaxCrossEntropy(y, judge.apply(x).logits) as tf.Scalar;
          if (outlierCount === 0) return digitLoss;
          // Cross-entropy to the uniform distribution: -mean_k log p_k, averaged over the outliers.
          const logits = judge.apply(tf.tensor4d(outliers, [outlierCount, JUDGE_SIDE, JUDGE_SIDE, 1])).logits;
          const uniformLoss = tf.neg(tf.mean(tf.logSoftmax(logits)));
          return tf.add(digitLoss, tf.mul(outlierWeight, uniformLoss)) as tf.Scalar;
        };
        const { value, grads } = tf.variableGrads(objective, judge.variables);
        optimizer.applyGradients(grads);
        return value;
      });
      pending.push(loss);
      if (pending.length === logEvery || step === steps - 1) {
        const stacked = tf.stack(pending);
        const values = (await stacked.data()) as Float32Array;
        stacked.dispose();
        tf.dispose(pending);
        pending.length = 0;
        lastLoss = values.reduce((a, b) => a + b, 0) / values.length;
        if (!Number.isFinite(lastLoss)) throw new Error(`trainJudge: the loss became ${lastLoss} by step ${step + 1}`);
        o.onProgress?.(step + 1, steps, lastLoss);
      }
    }
  } catch (e) {
    judge.dispose();
    throw e;
  } finally {
    tf.dispose(pending);
    optimizer.dispose();
  }
  return { judge, steps, lastLoss };
}

/** Copies image `src` of `from` into slot `dst` of `to`, moved dx px right and dy px down. */
function shiftInto(from: Float32Array, src: number, to: Float32Array, dst: number, dx: number, dy: number): void {
  const s = src * PIXELS;
  const d = dst * PIXELS;
  for (let r = 0; r < JUDGE_SIDE; r++) {
    const sr = r - dy;
    for (let c = 0; c < JUDGE_SIDE; c++) {
      const sc = c - dx;
      to[d + r * JUDGE_SIDE + c] = sr < 0 || sr >= JUDGE_SIDE || sc < 0 || sc >= JUDGE_SIDE ? -1 : from[s + sr * JUDGE_SIDE + sc];
    }
  }
}

/** Writes image 0 of `from` into slot `dst` of `to` with its 784 pixels in a random order. */
function permutePixels(from: Float32Array, to: Float32Array, dst: number, rng: Rng): void {
  const d = dst * PIXELS;
  to.set(from.subarray(0, PIXELS), d);
  for (let i = PIXELS - 1; i > 0; i--) {
    const j = rng.int(0, i);
    const t = to[d + i];
    to[d + i] = to[d + j];
    to[d + j] = t;
  }
}

/** Writes image 0 of `from` into slot `dst` of `to` with its sixteen 7x7 patches in a random order. */
function shufflePatches(from: Float32Array, to: Float32Array, dst: number, rng: Rng): void {
  const P = 7;
  const per = JUDGE_SIDE / P;
  const order = Array.from({ length: per * per }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const d = dst * PIXELS;
  order.forEach((srcPatch, dstPatch) => {
    const [sr, sc] = [Math.floor(srcPatch / per) * P, (srcPatch % per) * P];
    const [dr, dc] = [Math.floor(dstPatch / per) * P, (dstPatch % per) * P];
    for (let r = 0; r < P; r++) {
      for (let c = 0; c < P; c++) to[d + (dr + r) * JUDGE_SIDE + dc + c] = from[(sr + r) * JUDGE_SIDE + sc + c];
    }
  });
}

/** SHA-256 of bytes, hex. */
export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function parseArgs(argv: string[]): Record<string, string> {
  const known = new Set(['seed', 'epochs', 'batch', 'lr', 'shift', 'outliers', 'out']);
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z]+)$/.exec(argv[i]);
    if (!m || !known.has(m[1]) || i + 1 >= argv.length) {
      throw new Error(`judge:train: unknown or incomplete option ${argv[i]} (options: --seed N --epochs N --batch N --lr X --shift N --outliers X --out DIR)`);
    }
    out[m[1]] = argv[++i];
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const num = (k: string, d: number) => (args[k] === undefined ? d : Number(args[k]));
  const seed = num('seed', 0);
  const epochs = num('epochs', 12);
  const batchSize = num('batch', 64);
  const learningRate = num('lr', 1e-3);
  const maxShift = num('shift', 2);
  const outlierWeight = num('outliers', 0.5);
  const dir = path.resolve(args.out ?? judgeDir());
  const choice = await useBestBackend({ verbose: true });

  const train = loadMnist({ split: 'train' });
  const images = (await train.images.data()) as Float32Array;
  train.images.dispose();
  const started = Date.now();
  const cpuStart = process.cpuUsage();
  const { judge, steps } = await trainJudge({
    images,
    labels: train.labels,
    seed,
    epochs,
    batchSize,
    learningRate,
    maxShift,
    outlierWeight,
    logEvery: 50,
    onProgress: (step, total, loss) =>
      console.log(`step ${step}/${total}  loss ${loss.toFixed(4)}  ${((Date.now() - started) / 1000).toFixed(0)} s`),
  });
  const trainSeconds = (Date.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  const trainCpuSeconds = (cpu.user + cpu.system) / 1e6;

  const test = loadMnist({ split: 'test' });
  const testImages = (await test.images.data()) as Float32Array;
  test.images.dispose();
  const heldOut = await judgeAccuracy(judge, testImages, test.labels);
  const bytes = await judgeWeightBytes(judge);
  const digest = sha256(bytes);
  const defaults = seed === 0 && epochs === 12 && batchSize === 64 && learningRate === 1e-3 && maxShift === 2 && outlierWeight === 0.5;
  const manifest: JudgeManifest = {
    format: JUDGE_FORMAT,
    version: JUDGE_FORMAT_VERSION,
    architecture: 'conv3x3(16) relu maxpool2 conv3x3(32) relu maxpool2 dense(64) relu [features] dense(10)',
    params: judge.paramEntries(),
    command: `npm run judge:train${defaults ? '' : ` -- --seed ${seed} --epochs ${epochs} --batch ${batchSize} --lr ${learningRate} --shift ${maxShift} --outliers ${outlierWeight}`}`,
    seed,
    backend: choice.name,
    epochs,
    batchSize,
    learningRate,
    maxShift,
    outlierWeight,
    trainImages: images.length / PIXELS,
    trainSeconds: Math.round(trainSeconds),
    trainCpuSeconds: Math.round(trainCpuSeconds),
    loadAverage: Math.round(100 * os.loadavg()[0]) / 100,
    cores: os.cpus().length,
    heldOut: { count: test.labels.length, ...heldOut },
    sha256: digest,
    createdAt: new Date().toISOString(),
  };
  judge.dispose();

  const manifestFile = path.join(dir, JUDGE_MANIFEST);
  const previous = fs.existsSync(manifestFile) ? (JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as Partial<JudgeManifest>) : null;
  writeFileAtomic(path.join(dir, JUDGE_WEIGHTS), bytes);
  // One line per shape keeps the manifest readable.
  const json = JSON.stringify(manifest, null, 2).replace(/\[\s+([\d,\s]+?)\s+\]/g, (_, inner: string) => `[${inner.split(/,\s*/).join(', ')}]`);
  writeFileAtomic(manifestFile, `${json}\n`);
  console.log(
    `trained ${steps} steps in ${trainSeconds.toFixed(0)} s (${trainCpuSeconds.toFixed(0)} CPU s, load ${os.loadavg()[0].toFixed(1)}) on ${choice.name}; held-out accuracy ${(100 * heldOut.accuracy).toFixed(2)} % ` +
      `(${(100 * heldOut.confidentShare).toFixed(2)} % with p >= 0.9) on ${test.labels.length} digits; wrote ${dir} (sha256 ${digest.slice(0, 16)}...)`,
  );
  if (previous?.sha256) {
    console.log(previous.sha256 === digest ? 'weights identical to the ones replaced' : `weights differ from the ones replaced (sha256 ${previous.sha256.slice(0, 16)}...)`);
  }
}

// Bundled into another program (esbuild puts every module in one file, so `module` is the bundle's
// own), the guard alone would start this script inside, e.g., the ddpm CLI: the file name says which.
if (require.main === module && /judge-train\.[jt]s$/.test(require.main.filename)) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
