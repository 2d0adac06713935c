/**
 * A judge of generated digits: a small MNIST convnet trained by the project on loadMnist's 'train'
 * split (lib/data/judge-train.ts, `npm run judge:train`), shipped as lib/data/judge/weights.bin plus
 * its manifest judge.json, and the metrics it gives a set of images: the share it classifies with
 * p >= 0.9, its class histogram, and the Fréchet distance between the images and held-out digits in
 * its 64-d feature space (the penultimate layer), each beside reference values measured the same way
 * on held-out digits (the floor), on a blurred copy of them and on uniform noise (bad references).
 * Node only (reads the weights and the digits with fs).
 * Notebooks: 07_mnist (and `ddpm eval`).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../diffusion/random';
import { checkInteger, checkNumber } from '../diffusion/validate';
import { checkSymmetric, matMul } from '../diffusion/linalg';
import { ConvParams, DenseParams, ParamBuilder, conv2d, dense } from '../models/layers';
import { loadMnist } from './mnist';
import { meanAndCovariance } from './metrics';

/** Image side and classes the judge knows. */
export const JUDGE_SIDE = 28;
/** Number of classes (digits 0..9). */
export const JUDGE_CLASSES = 10;
/** Width of the feature layer the Fréchet distance is measured in. */
export const JUDGE_FEATURES = 64;
/** A prediction counts as confident when its largest class probability is at least this. */
export const JUDGE_CONFIDENCE = 0.9;
/** The manifest's file name inside the judge directory. */
export const JUDGE_MANIFEST = 'judge.json';
/** The weights' file name inside the judge directory (float32 little-endian, manifest order). */
export const JUDGE_WEIGHTS = 'weights.bin';
/** The manifest format tag this code reads and writes. */
export const JUDGE_FORMAT = 'ddpm-workbook-judge';
/** The manifest format version this code reads and writes. */
export const JUDGE_FORMAT_VERSION = 1;

const PIXELS = JUDGE_SIDE * JUDGE_SIDE;

/** One weight tensor as the manifest lists it. */
export interface JudgeParamEntry {
  name: string;
  shape: number[];
}

/** judge.json: what the weights are, how they were made, and what they measured when made. */
export interface JudgeManifest {
  format: string;
  version: number;
  architecture: string;
  params: JudgeParamEntry[];
  /** The command that made these weights, run from the package root. */
  command: string;
  seed: number;
  backend: string;
  epochs: number;
  batchSize: number;
  learningRate: number;
  maxShift: number;
  outlierWeight: number;
  trainImages: number;
  /** Wall-clock seconds of the training loop, and the process's CPU seconds (user + system) in it. */
  trainSeconds: number;
  trainCpuSeconds: number;
  /** The machine's 1-minute load average and core count when training ended (wall time depends on them). */
  loadAverage: number;
  cores: number;
  /** Measured on all of loadMnist({split: 'test'}) right after training. */
  heldOut: { count: number; accuracy: number; confidentShare: number };
  /** SHA-256 of weights.bin, so that a re-run can say whether it reproduced them bit for bit. */
  sha256: string;
  createdAt: string;
}

/** The judge's weights, in the order its manifest lists them. */
interface JudgeParams {
  conv1: ConvParams;
  conv2: ConvParams;
  features: DenseParams;
  logits: DenseParams;
}

/** Outputs of the judge for a batch: class logits [n, 10] and features [n, 64]. */
export interface JudgeOutputs {
  logits: tf.Tensor2D;
  features: tf.Tensor2D;
}

/**
 * The classifier: conv 3x3 (16) -> ReLU -> max-pool 2 -> conv 3x3 (32) -> ReLU -> max-pool 2 ->
 * dense 64 (ReLU; the features) -> dense 10 (logits). About 106k weights (416 KiB as float32).
 */
export class DigitJudge {
  /** Its variables, in manifest order (trainable, for judge-train). */
  readonly variables: tf.Variable[];
  /** A dotted name per variable. */
  readonly names: string[];
  /** The manifest it was loaded with (undefined for a freshly drawn judge). */
  manifest?: JudgeManifest;
  private readonly p: JudgeParams;
  private disposed = false;

  /** A judge with weights drawn from `seed` (He-normal kernels, zero biases), or copied from `weights`. */
  constructor(seed = 0, weights?: readonly tf.Tensor[]) {
    const b = new ParamBuilder(seed, weights);
    this.p = {
      conv1: b.conv('conv1', 3, 1, 16, 'heNormal'),
      conv2: b.conv('conv2', 3, 16, 32, 'heNormal'),
      features: b.dense('features', 7 * 7 * 32, JUDGE_FEATURES, 'heNormal'),
      logits: b.dense('logits', JUDGE_FEATURES, JUDGE_CLASSES, 'glorotUniform'),
    };
    b.finish();
    this.variables = b.variables;
    this.names = b.names;
  }

  /** Logits and features of images [n, 28, 28, 1] in [-1, 1]. */
  apply(x: tf.Tensor4D): JudgeOutputs {
    if (this.disposed) throw new Error('DigitJudge: used after dispose()');
    return tf.tidy(() => {
      const n = x.shape[0];
      let h = tf.maxPool(tf.relu(conv2d(x, this.p.conv1)), 2, 2, 'valid');
      h = tf.maxPool(tf.relu(conv2d(h, this.p.conv2)), 2, 2, 'valid');
      const features = tf.relu(dense(tf.reshape(h, [n, 7 * 7 * 32]), this.p.features));
      return { logits: dense(features, this.p.logits), features };
    });
  }

  /** The manifest's params list for these weights. */
  paramEntries(): JudgeParamEntry[] {
    return this.variables.map((v, i) => ({ name: this.names[i], shape: v.shape.slice() }));
  }

  /** Frees the weights. */
  dispose(): void {
    if (this.disposed) return;
    tf.dispose(this.variables);
    this.disposed = true;
  }
}

/**
 * The folder holding the shipped weights, lib/data/judge under the package root, found by walking
 * up from `from` to the ddpm-workbook package.json: tsc does not copy .bin files into dist/, so the
 * compiled module (dist/lib/data) reads the same files as the TypeScript one (lib/data).
 */
export function judgeDir(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'ddpm-workbook') {
      return path.join(dir, 'lib', 'data', 'judge');
    }
    if (path.dirname(dir) === dir) throw new Error(`judgeDir: no ddpm-workbook package.json above ${from}`);
  }
}

/** Reads and checks dir/judge.json. */
export function readJudgeManifest(dir: string = judgeDir()): JudgeManifest {
  const file = path.join(dir, JUDGE_MANIFEST);
  if (!fs.existsSync(file)) throw new Error(`judge manifest ${file} does not exist (make it with npm run judge:train)`);
  const m = JSON.parse(fs.readFileSync(file, 'utf8')) as JudgeManifest;
  if (m.format !== JUDGE_FORMAT || m.version !== JUDGE_FORMAT_VERSION) {
    throw new Error(`${file}: expected format ${JUDGE_FORMAT} version ${JUDGE_FORMAT_VERSION}, got ${String(m.format)} version ${String(m.version)}`);
  }
  if (!Array.isArray(m.params) || m.params.length === 0) throw new Error(`${file}: params must be a non-empty list`);
  return m;
}

/** Loads the judge whose weights are in `dir` (default: the shipped ones), checking every shape. */
export function loadJudge(dir: string = judgeDir()): DigitJudge {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('loadJudge: big-endian hosts are not supported');
  const manifest = readJudgeManifest(dir);
  const file = path.join(dir, JUDGE_WEIGHTS);
  const bytes = fs.readFileSync(file);
  const expected = manifest.params.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
  if (bytes.length !== 4 * expected) {
    throw new Error(`${file}: expected ${4 * expected} bytes (${expected} float32 weights per ${JUDGE_MANIFEST}), got ${bytes.length}`);
  }
  // Copy into an aligned buffer: a Node Buffer may start at any byte offset of its pool.
  const flat = new Float32Array(expected);
  new Uint8Array(flat.buffer).set(bytes);
  const weights: tf.Tensor[] = [];
  let offset = 0;
  for (const p of manifest.params) {
    const size = p.shape.reduce((a, b) => a * b, 1);
    weights.push(tf.tensor(flat.subarray(offset, offset + size), p.shape, 'float32'));
    offset += size;
  }
  try {
    const judge = new DigitJudge(0, weights);
    const wrong = judge.names.findIndex((name, i) => name !== manifest.params[i].name);
    if (wrong >= 0) {
      judge.dispose();
      throw new Error(`${file}: weight ${wrong} is ${manifest.params[wrong].name}, expected ${judge.names[wrong]}`);
    }
    judge.manifest = manifest;
    return judge;
  } finally {
    tf.dispose(weights);
  }
}

/** The judge's weights as one float32 little-endian byte array, in manifest order. */
export async function judgeWeightBytes(judge: DigitJudge): Promise<Uint8Array> {
  const parts = await Promise.all(judge.variables.map((v) => v.data() as Promise<Float32Array>));
  const total = parts.reduce((s, p) => s + p.length, 0);
  const flat = new Float32Array(total);
  let offset = 0;
  for (const p of parts) {
    flat.set(p, offset);
    offset += p.length;
  }
  return new Uint8Array(flat.buffer);
}

/** Images as a [n, 28, 28, 1] tensor in [-1, 1], or the same as row-major float data. */
export type DigitImages = tf.Tensor4D | Float32Array | Float64Array;

/** What the judge makes of one image set. */
export interface JudgeSetMetrics {
  /** Number of images. */
  n: number;
  /** Share of images whose largest class probability is >= JUDGE_CONFIDENCE. */
  confidentShare: number;
  /** Images per predicted class (argmax), all images. */
  histogram: number[];
  /** Images per predicted class, confident ones only. */
  confidentHistogram: number[];
  /** Classes predicted at least once. */
  classes: number;
  /** Classes predicted confidently at least once. */
  confidentClasses: number;
  /** Fréchet distance in feature space to the held-out reference half. */
  fd: number;
}

/** A set's metrics beside the reference sets', all measured against the same held-out half. */
export interface JudgeReport {
  samples: JudgeSetMetrics;
  references: {
    /** Held-out digits not in the reference half: the floor a perfect generator reaches. */
    real: JudgeSetMetrics;
    /** The same held-out digits blurred (Gaussian, sd BLUR_SD px): blobs where strokes were. */
    blurred: JudgeSetMetrics;
    /** Uniform pixels in [-1, 1]. */
    noise: JudgeSetMetrics;
  };
  /** Size of the held-out half every FD is measured against. */
  referenceCount: number;
  /** The judge's held-out accuracy, from its manifest (NaN for a judge not loaded from disk). */
  judgeAccuracy: number;
}

/** Options of judgeDigits. */
export interface JudgeOptions {
  /** The judge to use (default: the shipped one, loaded once per process). */
  judge?: DigitJudge;
  /** Seed of the noise reference (default 0). */
  seed?: number;
}

/** Standard deviation, in pixels, of the Gaussian blur of the blurred reference. */
export const BLUR_SD = 2;

/**
 * Judges `images` ([n, 28, 28, 1] in [-1, 1], n >= 2): confident share, class histograms and FD to
 * the held-out reference half (500 digits), beside the same metrics for the first min(n, 505)
 * held-out digits of the other half, for a blurred copy of those and for as many uniform-noise
 * images. The references use as many images as the samples because the FD estimate is biased
 * upwards by O(tr(S) / n) (26.7 at n = 64 against 3.7 at n = 505 for real digits): sets of
 * different sizes are not comparable.
 */
export async function judgeDigits(images: DigitImages, opts: JudgeOptions = {}): Promise<JudgeReport> {
  const data = await readImages('images', images);
  const n = data.length / PIXELS;
  if (n < 2) throw new Error(`images must hold at least 2 images (a covariance needs 2), got ${n}`);
  const seed = opts.seed ?? 0;
  checkInteger('seed', seed, 0);
  const judge = opts.judge ?? shippedJudge();
  const ref = await referenceFor(judge);
  const m = Math.min(n, ref.others.length / PIXELS);
  const real = ref.others.subarray(0, m * PIXELS);
  const [samples, realMetrics, blurred, noise] = [
    await measureSet(judge, data, ref.stats),
    await measureSet(judge, real, ref.stats),
    await measureSet(judge, blurImages(real, BLUR_SD), ref.stats),
    await measureSet(judge, uniformNoise(m, seed), ref.stats),
  ];
  return {
    samples,
    references: { real: realMetrics, blurred, noise },
    referenceCount: ref.count,
    judgeAccuracy: judge.manifest?.heldOut.accuracy ?? NaN,
  };
}

/** Class probabilities [n, 10] (float32, row-major) and features [n, 64] (float64) of images. */
export async function judgeOutputs(
  judge: DigitJudge,
  images: DigitImages,
  batchSize = 250,
): Promise<{ probs: Float32Array; features: Float64Array; n: number }> {
  const data = await readImages('images', images);
  checkInteger('batchSize', batchSize, 1);
  const n = data.length / PIXELS;
  const probs = new Float32Array(n * JUDGE_CLASSES);
  const features = new Float64Array(n * JUDGE_FEATURES);
  for (let start = 0; start < n; start += batchSize) {
    const count = Math.min(batchSize, n - start);
    const [p, f] = tf.tidy(() => {
      const x = tf.tensor4d(data.subarray(start * PIXELS, (start + count) * PIXELS), [count, JUDGE_SIDE, JUDGE_SIDE, 1]);
      const out = judge.apply(x);
      return [tf.softmax(out.logits), out.features];
    });
    try {
      probs.set((await p.data()) as Float32Array, start * JUDGE_CLASSES);
      features.set((await f.data()) as Float32Array, start * JUDGE_FEATURES);
    } finally {
      p.dispose();
      f.dispose();
    }
  }
  return { probs, features, n };
}

/** Share of argmax predictions equal to `labels`, and share with max probability >= JUDGE_CONFIDENCE. */
export async function judgeAccuracy(judge: DigitJudge, images: DigitImages, labels: ArrayLike<number>): Promise<{ accuracy: number; confidentShare: number }> {
  const { probs, n } = await judgeOutputs(judge, images);
  if (labels.length !== n) throw new Error(`labels must have one entry per image (${n}), got ${labels.length}`);
  let correct = 0;
  let confident = 0;
  for (let i = 0; i < n; i++) {
    const [k, p] = argmax(probs, i);
    if (k === labels[i]) correct++;
    if (p >= JUDGE_CONFIDENCE) confident++;
  }
  return { accuracy: correct / n, confidentShare: confident / n };
}

/**
 * Fréchet distance between Gaussians N(m1, S1) and N(m2, S2):
 * |m1 - m2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), with tr((S1 S2)^{1/2}) computed as
 * tr((S1^{1/2} S2 S1^{1/2})^{1/2}) (a symmetric PSD matrix, similar to S1 S2, so the same
 * eigenvalues) by two symmetric eigendecompositions. Covariances must be symmetric PSD (singular
 * ones, from fewer points than dimensions, are fine).
 */
export function frechetDistance(a: { mean: number[]; cov: number[][] }, b: { mean: number[]; cov: number[][] }): number {
  const d = a.mean.length;
  if (b.mean.length !== d || a.cov.length !== d || b.cov.length !== d) {
    throw new Error(`frechetDistance: means and covariances must all have dimension ${d}, got ${b.mean.length}, ${a.cov.length}, ${b.cov.length}`);
  }
  let dm = 0;
  for (let i = 0; i < d; i++) dm += (a.mean[i] - b.mean[i]) ** 2;
  let trA = 0;
  let trB = 0;
  for (let i = 0; i < d; i++) {
    trA += a.cov[i][i];
    trB += b.cov[i][i];
  }
  const fd = dm + trA + trB - 2 * traceSqrtProduct(a.cov, b.cov);
  // FD >= 0 exactly (it is a squared Wasserstein-2 distance); a tiny negative is rounding.
  return Math.max(0, fd);
}

/** tr((S1 S2)^{1/2}) for symmetric PSD S1, S2, as tr((S1^{1/2} S2 S1^{1/2})^{1/2}). */
export function traceSqrtProduct(s1: number[][], s2: number[][]): number {
  const r = sqrtPsd(s1, 's1');
  const inner = symmetrise(matMul(matMul(r, s2), r));
  const { values } = symmetricEigen(inner, 'S1^1/2 S2 S1^1/2');
  return values.reduce((s, v) => s + Math.sqrt(Math.max(0, v)), 0);
}

/**
 * The symmetric PSD square root of a symmetric PSD matrix, V diag(sqrt(max(l, 0))) V^T: eigenvalues
 * below zero can only be rounding (at most about 1e-15 of the largest) and are taken as 0.
 */
export function sqrtPsd(a: number[][], name = 'a'): number[][] {
  const { values, vectors } = symmetricEigen(a, name);
  const scale = Math.max(...values.map(Math.abs), 0);
  values.forEach((v, i) => {
    if (v < -1e-9 * scale) throw new Error(`${name} must be positive semi-definite, got eigenvalue ${values[i]} (largest magnitude ${scale})`);
  });
  const d = values.length;
  const roots = values.map((v) => Math.sqrt(Math.max(0, v)));
  const out: number[][] = Array.from({ length: d }, () => new Array<number>(d).fill(0));
  for (let i = 0; i < d; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += vectors[i][k] * roots[k] * vectors[j][k];
      out[i][j] = s;
      out[j][i] = s;
    }
  }
  return out;
}

/**
 * Eigenvalues (ascending) and orthonormal eigenvectors (columns of `vectors`) of a symmetric matrix,
 * by cyclic Jacobi rotations in float64 until the off-diagonal part is below 1e-14 of the
 * Frobenius norm. Jacobi is slow (O(D^3) per sweep, ~10 sweeps) but accurate to rounding for small
 * eigenvalues too, which is what a matrix square root needs; D here is 64 at most.
 */
export function symmetricEigen(a: number[][], name = 'a'): { values: number[]; vectors: number[][] } {
  checkSymmetric(name, a, 1e-9);
  const d = a.length;
  const m = a.map((row) => row.slice());
  const v: number[][] = Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => (i === j ? 1 : 0)));
  let frob = 0;
  for (const row of m) for (const x of row) frob += x * x;
  // Stop when the off-diagonal part is below 1e-14 |a|_F (compared squared): within a few ulps of
  // the diagonal's scale, where further rotations only stir rounding.
  const tol = 1e-28 * frob;
  for (let sweep = 0; ; sweep++) {
    let off = 0;
    for (let p = 0; p < d; p++) for (let q = p + 1; q < d; q++) off += m[p][q] * m[p][q];
    if (off <= tol) break;
    if (sweep >= 100) throw new Error(`symmetricEigen(${name}): Jacobi did not converge in 100 sweeps (off-diagonal ${Math.sqrt(off)})`);
    for (let p = 0; p < d; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = m[p][q];
        if (apq === 0) continue;
        // Rotation angle from Golub & Van Loan's symmetric Schur decomposition (Alg. 8.4.1).
        const theta = (m[q][q] - m[p][p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < d; k++) {
          const mkp = m[k][p];
          const mkq = m[k][q];
          m[k][p] = c * mkp - s * mkq;
          m[k][q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < d; k++) {
          const mpk = m[p][k];
          const mqk = m[q][k];
          m[p][k] = c * mpk - s * mqk;
          m[q][k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < d; k++) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: d }, (_, i) => i).sort((i, j) => m[i][i] - m[j][j]);
  return {
    values: order.map((i) => m[i][i]),
    vectors: v.map((row) => order.map((i) => row[i])),
  };
}

/**
 * The metrics and their references as a short table, one row per set, then the class histograms
 * of the samples and of the real reference.
 */
export function formatJudgeReport(r: JudgeReport, title = 'samples'): string {
  const acc = Number.isNaN(r.judgeAccuracy) ? '' : `, held-out accuracy ${(100 * r.judgeAccuracy).toFixed(1)} %`;
  const lines = [
    `judge (MNIST convnet${acc}); FD in its ${JUDGE_FEATURES}-d features against ${r.referenceCount} held-out digits`,
    `${'set'.padEnd(22)}${'n'.padStart(5)}${'p >= 0.9'.padStart(10)}${'classes conf/all'.padStart(18)}${'FD'.padStart(10)}`,
  ];
  const row = (name: string, s: JudgeSetMetrics) =>
    `${name.padEnd(22)}${String(s.n).padStart(5)}${`${(100 * s.confidentShare).toFixed(1)} %`.padStart(10)}` +
    `${`${s.confidentClasses} / ${s.classes}`.padStart(18)}${formatFd(s.fd).padStart(10)}`;
  lines.push(row(title, r.samples));
  lines.push(row('ref: held-out digits', r.references.real));
  lines.push(row(`ref: blurred (sd ${BLUR_SD} px)`, r.references.blurred));
  lines.push(row('ref: uniform noise', r.references.noise));
  lines.push(`classes of ${title} (confident / all): ${r.samples.confidentHistogram.map((c, k) => `${k}:${c}/${r.samples.histogram[k]}`).join(' ')}`);
  return lines.join('\n');
}

function formatFd(fd: number): string {
  return fd >= 100 ? fd.toFixed(0) : fd >= 10 ? fd.toFixed(1) : fd.toFixed(2);
}

/** Images blurred with a separable Gaussian (sd `sd` px, radius 3 sd), the border padded with -1 (background). */
export function blurImages(data: Float32Array, sd: number): Float32Array {
  checkNumber('sd', sd, 0, JUDGE_SIDE, { lo: true });
  if (data.length % PIXELS !== 0) throw new Error(`blurImages: data must hold whole 28x28 images, got ${data.length} values`);
  const radius = Math.ceil(3 * sd);
  const w: number[] = [];
  for (let k = -radius; k <= radius; k++) w.push(Math.exp(-(k * k) / (2 * sd * sd)));
  const total = w.reduce((a, b) => a + b, 0);
  for (let i = 0; i < w.length; i++) w[i] /= total; // weights sum to 1, so [-1, 1] maps into [-1, 1]
  const out = new Float32Array(data.length);
  const tmp = new Float64Array(PIXELS);
  const at = (img: Float32Array | Float64Array, base: number, r: number, c: number) =>
    r < 0 || r >= JUDGE_SIDE || c < 0 || c >= JUDGE_SIDE ? -1 : img[base + r * JUDGE_SIDE + c];
  for (let base = 0; base < data.length; base += PIXELS) {
    for (let r = 0; r < JUDGE_SIDE; r++) {
      for (let c = 0; c < JUDGE_SIDE; c++) {
        let s = 0;
        for (let k = -radius; k <= radius; k++) s += w[k + radius] * at(data, base, r, c + k);
        tmp[r * JUDGE_SIDE + c] = s;
      }
    }
    for (let r = 0; r < JUDGE_SIDE; r++) {
      for (let c = 0; c < JUDGE_SIDE; c++) {
        let s = 0;
        for (let k = -radius; k <= radius; k++) s += w[k + radius] * at(tmp, 0, r + k, c);
        out[base + r * JUDGE_SIDE + c] = s;
      }
    }
  }
  return out;
}

/** n images of independent uniform pixels in [-1, 1], from `seed`. */
export function uniformNoise(n: number, seed = 0): Float32Array {
  checkInteger('n', n, 1);
  const rng = new Rng(seed);
  const out = new Float32Array(n * PIXELS);
  for (let i = 0; i < out.length; i++) out[i] = 2 * rng.uniform() - 1;
  return out;
}

/**
 * The held-out split cut in two halves per digit (the 1st, 3rd, 5th, ... image of each digit, and
 * the 2nd, 4th, ...), each in loadMnist's round-robin digit order, so that any prefix of either
 * half is balanced across digits.
 */
export async function heldOutHalves(): Promise<{ reference: LabelledDigits; others: LabelledDigits }> {
  const { images, labels } = loadMnist({ split: 'test' });
  const data = (await images.data()) as Float32Array;
  images.dispose();
  const seen = new Array<number>(JUDGE_CLASSES).fill(0);
  const halves = [[], []] as number[][];
  for (let i = 0; i < labels.length; i++) halves[seen[labels[i]]++ % 2].push(i);
  const take = (idx: number[]) => {
    const out = new Float32Array(idx.length * PIXELS);
    idx.forEach((src, k) => out.set(data.subarray(src * PIXELS, (src + 1) * PIXELS), k * PIXELS));
    return { images: out, labels: Int32Array.from(idx.map((i) => labels[i])) };
  };
  return { reference: take(halves[1]), others: take(halves[0]) };
}

/** Digits as row-major float32 pixels in [-1, 1] and their labels. */
export interface LabelledDigits {
  images: Float32Array;
  labels: Int32Array;
}

interface Reference {
  stats: { mean: number[]; cov: number[][] };
  count: number;
  others: Float32Array;
  /** The reference half's features [count, JUDGE_FEATURES] and both halves' labels, for judgeByClass. */
  features: Float64Array;
  referenceLabels: Int32Array;
  othersLabels: Int32Array;
}

let cachedJudge: DigitJudge | null = null;
const references = new WeakMap<DigitJudge, Reference>();

/** The shipped judge, loaded on first use and kept for the process (its 8 weight tensors stay allocated). */
export function shippedJudge(): DigitJudge {
  cachedJudge ??= loadJudge();
  return cachedJudge;
}

async function referenceFor(judge: DigitJudge): Promise<Reference> {
  const known = references.get(judge);
  if (known) return known;
  const halves = await heldOutHalves();
  const { features, n } = await judgeOutputs(judge, halves.reference.images);
  const ref: Reference = {
    stats: meanAndCovariance({ data: features, dim: JUDGE_FEATURES }),
    count: n,
    others: halves.others.images,
    features,
    referenceLabels: halves.reference.labels,
    othersLabels: halves.others.labels,
  };
  references.set(judge, ref);
  return ref;
}

async function measureSet(judge: DigitJudge, data: Float32Array, ref: { mean: number[]; cov: number[][] }): Promise<JudgeSetMetrics> {
  const { probs, features, n } = await judgeOutputs(judge, data);
  const histogram = new Array<number>(JUDGE_CLASSES).fill(0);
  const confidentHistogram = new Array<number>(JUDGE_CLASSES).fill(0);
  for (let i = 0; i < n; i++) {
    const [k, p] = argmax(probs, i);
    histogram[k]++;
    if (p >= JUDGE_CONFIDENCE) confidentHistogram[k]++;
  }
  const confident = confidentHistogram.reduce((a, b) => a + b, 0);
  return {
    n,
    confidentShare: confident / n,
    histogram,
    confidentHistogram,
    classes: histogram.filter((c) => c > 0).length,
    confidentClasses: confidentHistogram.filter((c) => c > 0).length,
    fd: frechetDistance(meanAndCovariance({ data: features, dim: JUDGE_FEATURES }), ref),
  };
}

function argmax(probs: Float32Array, i: number): [number, number] {
  let best = 0;
  for (let k = 1; k < JUDGE_CLASSES; k++) if (probs[i * JUDGE_CLASSES + k] > probs[i * JUDGE_CLASSES + best]) best = k;
  return [best, probs[i * JUDGE_CLASSES + best]];
}

/** Images as float32 row-major data, checked: whole 28x28x1 images, finite, in [-1, 1]. */
async function readImages(name: string, images: DigitImages): Promise<Float32Array> {
  let data: Float32Array;
  if (images instanceof tf.Tensor) {
    const s = images.shape;
    if (s.length !== 4 || s[1] !== JUDGE_SIDE || s[2] !== JUDGE_SIDE || s[3] !== 1) {
      throw new Error(`${name} must have shape [n, 28, 28, 1], got [${s}]`);
    }
    data = (await images.data()) as Float32Array;
  } else if (images instanceof Float32Array || images instanceof Float64Array) {
    if (images.length === 0 || images.length % PIXELS !== 0) {
      throw new Error(`${name} must hold n whole 28x28 images (a positive multiple of ${PIXELS} values), got ${images.length}`);
    }
    data = images instanceof Float32Array ? images : Float32Array.from(images);
  } else {
    throw new Error(`${name} must be a [n, 28, 28, 1] tensor or a Float32Array/Float64Array, got ${String(images)}`);
  }
  for (let i = 0; i < data.length; i++) {
    // Samples are clipped to [-1, 1]; a float32 rounding step beyond it is allowed, nothing more.
    if (!(Math.abs(data[i]) <= 1 + 1e-6)) {
      throw new Error(`${name} must be finite and in [-1, 1], got ${data[i]} at image ${Math.floor(i / PIXELS)}, pixel ${i % PIXELS}`);
    }
  }
  return data;
}

function symmetrise(a: number[][]): number[][] {
  return a.map((row, i) => row.map((x, j) => 0.5 * (x + a[j][i])));
}

/** What the judge makes of the samples drawn for one requested class (judgeByClass). */
export interface ClassJudgement {
  /** The class the samples were drawn for. */
  requested: number;
  n: number;
  /** Share of the samples the judge classifies (argmax) as the requested class. */
  hitShare: number;
  /** Share classified as the requested class with p >= JUDGE_CONFIDENCE. */
  confidentHitShare: number;
  /** Samples per predicted class. */
  histogram: number[];
  /** FD in feature space between the samples and the reference half's digits of this class. */
  fd: number;
  /** The same FD for as many held-out digits of this class from the other half: the floor at this n. */
  realFd: number;
}

/** judgeByClass's result: one row per requested class, in class order, and the summary the checks read. */
export interface ClassJudgeReport {
  classes: ClassJudgement[];
  /** The smallest hitShare over the requested classes. */
  minHitShare: number;
  /** All samples' share classified as their requested class. */
  hitShare: number;
  /** Reference digits per class in the reference half (the FD's reference set). */
  referencePerClass: number[];
}

/**
 * Judges class-conditional samples: images[i] was drawn for class requested[i]. Per requested class:
 * the share the judge classifies as that class (argmax, and with p >= 0.9), the predicted-class
 * histogram, and the Fréchet distance to the held-out digits of that class (the diversity a strong
 * guidance scale costs), beside the FD of as many real held-out digits of that class (other half) —
 * FD is biased by O(tr S / n), so only sets of one size compare. A class may have at most as many
 * samples as the other half holds digits of it (about 50).
 */
export async function judgeByClass(images: DigitImages, requested: ArrayLike<number>, opts: JudgeOptions = {}): Promise<ClassJudgeReport> {
  const data = await readImages('images', images);
  const n = data.length / PIXELS;
  if (requested.length !== n) throw new Error(`requested must hold one class per image (${n}), got ${requested.length}`);
  for (let i = 0; i < n; i++) checkInteger(`requested[${i}]`, requested[i], 0, JUDGE_CLASSES - 1);
  const judge = opts.judge ?? shippedJudge();
  const ref = await classReferenceFor(judge);
  const { probs, features } = await judgeOutputs(judge, data);
  const classes: ClassJudgement[] = [];
  for (let k = 0; k < JUDGE_CLASSES; k++) {
    const mine = Array.from({ length: n }, (_, i) => i).filter((i) => requested[i] === k);
    if (mine.length === 0) continue;
    const others = ref.others[k];
    if (mine.length < 2 || mine.length > others.length / JUDGE_FEATURES) {
      throw new Error(`class ${k} must have between 2 and ${others.length / JUDGE_FEATURES} samples (held-out digits of it to compare with), got ${mine.length}`);
    }
    const histogram = new Array<number>(JUDGE_CLASSES).fill(0);
    let confident = 0;
    const feats = new Float64Array(mine.length * JUDGE_FEATURES);
    mine.forEach((i, j) => {
      const [c, p] = argmax(probs, i);
      histogram[c]++;
      if (c === k && p >= JUDGE_CONFIDENCE) confident++;
      feats.set(features.subarray(i * JUDGE_FEATURES, (i + 1) * JUDGE_FEATURES), j * JUDGE_FEATURES);
    });
    const refStats = ref.stats[k];
    const real = others.subarray(0, mine.length * JUDGE_FEATURES);
    classes.push({
      requested: k,
      n: mine.length,
      hitShare: histogram[k] / mine.length,
      confidentHitShare: confident / mine.length,
      histogram,
      fd: frechetDistance(meanAndCovariance({ data: feats, dim: JUDGE_FEATURES }), refStats),
      realFd: frechetDistance(meanAndCovariance({ data: real, dim: JUDGE_FEATURES }), refStats),
    });
  }
  const hits = classes.reduce((a, c) => a + c.hitShare * c.n, 0);
  return { classes, minHitShare: Math.min(...classes.map((c) => c.hitShare)), hitShare: hits / n, referencePerClass: ref.count.slice() };
}

interface ClassReference {
  /** Per class: mean and covariance of the reference half's features of that class. */
  stats: { mean: number[]; cov: number[][] }[];
  /** Per class: reference digits. */
  count: number[];
  /** Per class: the other half's features of that class, in order (the real-digit floor takes a prefix). */
  others: Float64Array[];
}

const classReferences = new WeakMap<DigitJudge, ClassReference>();

/**
 * The held-out halves' features per class under `judge`, computed once per judge, on top of
 * judgeDigits' reference (which has already run the judge over the reference half).
 */
async function classReferenceFor(judge: DigitJudge): Promise<ClassReference> {
  const known = classReferences.get(judge);
  if (known) return known;
  const base = await referenceFor(judge);
  const byClass = (features: Float64Array, labels: Int32Array): Float64Array[] =>
    Array.from({ length: JUDGE_CLASSES }, (_, k) => {
      const idx = Array.from(labels.keys()).filter((i) => labels[i] === k);
      const out = new Float64Array(idx.length * JUDGE_FEATURES);
      idx.forEach((src, j) => out.set(features.subarray(src * JUDGE_FEATURES, (src + 1) * JUDGE_FEATURES), j * JUDGE_FEATURES));
      return out;
    });
  const reference = byClass(base.features, base.referenceLabels);
  const ref: ClassReference = {
    stats: reference.map((f) => meanAndCovariance({ data: f, dim: JUDGE_FEATURES })),
    count: reference.map((f) => f.length / JUDGE_FEATURES),
    others: byClass((await judgeOutputs(judge, base.others)).features, base.othersLabels),
  };
  classReferences.set(judge, ref);
  return ref;
}

/** A judgeByClass report as a text table (one row per requested class). */
export function formatClassJudgeReport(r: ClassJudgeReport, title = 'samples'): string {
  const lines = [`${title}: ${(100 * r.hitShare).toFixed(1)} % classified as requested (lowest class ${(100 * r.minHitShare).toFixed(1)} %)`];
  lines.push('class   n   as requested   confident   FD (samples)   FD (real digits, same n)');
  for (const c of r.classes) {
    lines.push(`${String(c.requested).padStart(5)} ${String(c.n).padStart(3)}   ${(100 * c.hitShare).toFixed(1).padStart(10)} %   ${(100 * c.confidentHitShare).toFixed(1).padStart(7)} %   ${c.fd.toFixed(1).padStart(12)}   ${c.realFd.toFixed(1).padStart(10)}`);
  }
  return lines.join('\n');
}
