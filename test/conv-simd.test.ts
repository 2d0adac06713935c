/**
 * The wasm SIMD convolution (lib/runtime/kernels/c/conv2d.c, loaded by simd.ts and taken by
 * wasm.ts's Conv2D, Conv2DBackpropFilter and Conv2DBackpropInput): the committed module is what
 * clang-14 builds from the C sources; the module writes its output and not one other byte of the
 * memory it shares with tfjs; and y, dW and dx match an independent float64 sum and the cpu
 * backend's kernels on random shapes (odd sizes, channel counts with and without a multiple of 4,
 * strides 1 and 2, same and valid padding).
 *
 * Tolerance: dW[i, j, ci, co] is a sum of N = batch outH outW products in float32 (y and dx: of
 * N = kh kw inC and kh kw outC). Summed in any
 * order, |fl(sum) - sum| <= gamma_{N+1} sum |x dy| with gamma_n = n u / (1 - n u), u = 2^-24 (the
 * +1 for the rounding of each product); the float64 reference is exact to far below that.
 * Winograd's F(2x2, 3x3) (3x3 stride-1 'same' y and dx) computes another expression of the same
 * value: its bound is gamma_(C + 10) times that expression with absolute values (winogradReference).
 */
import { execFileSync, spawnSync } from 'child_process';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { useBestBackend } from '../lib';
import { SIMD_WASM_BASE64 } from '../lib/runtime/kernels/simd-wasm';
import { simdCalls, winogradFilterScratchFloats, winogradScratchFloats } from '../lib/runtime/kernels/simd';
import { setConvRoute } from '../lib/runtime/kernels/wasm';
import { useCpu } from './support';

const ROOT = path.resolve(__dirname, '..');
const U = 2 ** -24;

/** A seeded uniform generator in [-1, 1) (xorshift32), independent of every backend's RNG. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 31 - 1;
  };
}

function fill(n: number, next: () => number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = next();
  return v;
}

interface Case {
  x: [number, number, number, number];
  k: [number, number];
  outC: number;
  stride: [number, number];
  pad: 'same' | 'valid';
}

/** Output size and top/left padding, from the definitions of 'same' and 'valid' (not from tfjs). */
function geometry(c: Case): { outH: number; outW: number; top: number; left: number } {
  const [, H, W] = c.x;
  const [kh, kw] = c.k;
  const [sh, sw] = c.stride;
  if (c.pad === 'valid') return { outH: Math.floor((H - kh) / sh) + 1, outW: Math.floor((W - kw) / sw) + 1, top: 0, left: 0 };
  const outH = Math.ceil(H / sh);
  const outW = Math.ceil(W / sw);
  const padH = Math.max((outH - 1) * sh + kh - H, 0);
  const padW = Math.max((outW - 1) * sw + kw - W, 0);
  return { outH, outW, top: Math.floor(padH / 2), left: Math.floor(padW / 2) };
}

/**
 * Every product of the convolution's definition: calls visit(xAt, dyAt, wAt) with the flat indices of
 * x [B, H, W, C], dy [B, outH, outW, O] and the filter [kh, kw, C, O] for each valid (pixel, tap, channel) triple.
 */
function forEachProduct(c: Case, visit: (xAt: number, dyAt: number, wAt: number) => void): void {
  const [B, H, W, C] = c.x;
  const [kh, kw] = c.k;
  const [sh, sw] = c.stride;
  const { outH, outW, top, left } = geometry(c);
  const O = c.outC;
  for (let b = 0; b < B; b++)
    for (let y = 0; y < outH; y++)
      for (let xx = 0; xx < outW; xx++)
        for (let i = 0; i < kh; i++) {
          const iy = y * sh + i - top;
          if (iy < 0 || iy >= H) continue;
          for (let j = 0; j < kw; j++) {
            const ix = xx * sw + j - left;
            if (ix < 0 || ix >= W) continue;
            for (let ci = 0; ci < C; ci++)
              for (let co = 0; co < O; co++) visit(((b * H + iy) * W + ix) * C + ci, ((b * outH + y) * outW + xx) * O + co, ((i * kw + j) * C + ci) * O + co);
          }
        }
}

/** dW by the definition, in float64, with sum |x dy| per entry (for the tolerance). */
function reference(c: Case, x: Float32Array, dy: Float32Array): { dw: Float64Array; mag: Float64Array; terms: number } {
  const [kh, kw] = c.k;
  const { outH, outW } = geometry(c);
  const dw = new Float64Array(kh * kw * c.x[3] * c.outC);
  const mag = new Float64Array(dw.length);
  forEachProduct(c, (xAt, dyAt, wAt) => {
    const p = x[xAt] * dy[dyAt];
    dw[wAt] += p;
    mag[wAt] += Math.abs(p);
  });
  return { dw, mag, terms: c.x[0] * outH * outW };
}

/** dx by the definition, in float64, with sum |dy w| per entry, for filter [kh, kw, inC, outC]. */
function referenceDx(c: Case, dy: Float32Array, w: Float32Array): { dw: Float64Array; mag: Float64Array; terms: number } {
  const [B, H, W, C] = c.x;
  const [kh, kw] = c.k;
  const dx = new Float64Array(B * H * W * C);
  const mag = new Float64Array(dx.length);
  forEachProduct(c, (xAt, dyAt, wAt) => {
    const p = dy[dyAt] * w[wAt];
    dx[xAt] += p;
    mag[xAt] += Math.abs(p);
  });
  return { dw: dx, mag, terms: kh * kw * c.outC };
}

/** y by the definition, in float64, with sum |x w| per entry, for filter [kh, kw, inC, outC]. */
function referenceY(c: Case, x: Float32Array, w: Float32Array): { dw: Float64Array; mag: Float64Array; terms: number } {
  const { outH, outW } = geometry(c);
  const y = new Float64Array(c.x[0] * outH * outW * c.outC);
  const mag = new Float64Array(y.length);
  forEachProduct(c, (xAt, yAt, wAt) => {
    const p = x[xAt] * w[wAt];
    y[yAt] += p;
    mag[yAt] += Math.abs(p);
  });
  return { dw: y, mag, terms: c.k[0] * c.k[1] * c.x[3] };
}

/** |B^T| of F(2x2, 3x3) and F(3x3, 2x2) (the same input transform). */
const ABS_BT = [[1, 0, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 0, 1]];

/**
 * |B^T| |d| |B| for the 4x4 block of a [B, H, W, C] around tile (ty, tx) of image b, channel c
 * (zeros outside), into out[offset .. offset + 16].
 */
function absInputTransform(a: Float32Array, [, H, W, C]: [number, number, number, number], b: number, ty: number, tx: number, c: number, out: Float64Array, offset: number): void {
  const d = (r: number, k: number) => {
    const y = 2 * ty - 1 + r;
    const x = 2 * tx - 1 + k;
    return y < 0 || y >= H || x < 0 || x >= W ? 0 : Math.abs(a[((b * H + y) * W + x) * C + c]);
  };
  for (let p = 0; p < 4; p++)
    for (let q = 0; q < 4; q++) {
      let v = 0;
      for (let r = 0; r < 4; r++) for (let k = 0; k < 4; k++) v += ABS_BT[p][r] * d(r, k) * ABS_BT[q][k];
      out[offset + p * 4 + q] = v;
    }
}

/**
 * Winograd F(2x2, 3x3)'s bound for a 3x3 stride-1 'same' convolution of a [B, H, W, C] (zeros
 * outside) by the filter g(i, j, c, o), O output channels: per output entry the same expression
 * with absolute values, |A|^T [ sum over c of (|G| |g| |G|^T) (.) (|B|^T |d| |B|) ] |A| (see
 * c/conv2d.c), and the rounding depth C + 10 (4 roundings in U, 2 in V, C in the dot product over
 * c, 4 in the output transform). The values are the float64 sums by the definition (`exact`).
 */
function winogradReference(
  shape: [number, number, number, number],
  O: number,
  a: Float32Array,
  g: (i: number, j: number, c: number, o: number) => number,
  exact: Float64Array,
): { dw: Float64Array; mag: Float64Array; terms: number; depth: number } {
  const [B, H, W, C] = shape;
  const absG = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0, 0, 1]];
  const absA = [[1, 1, 1, 0], [0, 1, 1, 1]]; // |A^T|
  // |U| for every (c, o): |G| |g| |G|^T
  const U = new Float64Array(C * O * 16);
  for (let c = 0; c < C; c++)
    for (let o = 0; o < O; o++)
      for (let p = 0; p < 4; p++)
        for (let q = 0; q < 4; q++) {
          let v = 0;
          for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) v += absG[p][i] * Math.abs(g(i, j, c, o)) * absG[q][j];
          U[(c * O + o) * 16 + p * 4 + q] = v;
        }
  const mag = new Float64Array(B * H * W * O);
  const V = new Float64Array(16);
  const M = new Float64Array(O * 16);
  for (let b = 0; b < B; b++)
    for (let ty = 0; ty < Math.ceil(H / 2); ty++)
      for (let tx = 0; tx < Math.ceil(W / 2); tx++) {
        M.fill(0);
        for (let c = 0; c < C; c++) {
          absInputTransform(a, shape, b, ty, tx, c, V, 0);
          for (let o = 0; o < O; o++) for (let pq = 0; pq < 16; pq++) M[o * 16 + pq] += U[(c * O + o) * 16 + pq] * V[pq];
        }
        for (let u = 0; u < 2; u++)
          for (let v = 0; v < 2; v++) {
            const y = 2 * ty + u;
            const x = 2 * tx + v;
            if (y >= H || x >= W) continue;
            for (let o = 0; o < O; o++) {
              let m = 0;
              for (let p = 0; p < 4; p++) for (let q = 0; q < 4; q++) m += absA[u][p] * M[o * 16 + p * 4 + q] * absA[v][q];
              mag[((b * H + y) * W + x) * O + o] = m;
            }
          }
      }
  return { dw: exact, mag, terms: C, depth: C + 10 };
}

/**
 * Winograd F(3x3, 2x2)'s bound for the filter gradient of a 3x3 stride-1 'same' convolution of x
 * [B, H, W, C] with dy [B, H, W, O]: per dW entry |G^T| [ sum over the 2x2 blocks of dy of
 * (|A| |h| |A|^T) (.) (|B|^T |d| |B|) ] |G| (d the 4x4 block of x around h, zeros outside), and the
 * rounding depth N + 8 for N blocks (2 roundings in V, 2 in A h A^T, N in the sum over blocks, 4
 * in G^T M G; see c/conv2d.c). The values are the float64 sums by the definition (`exact`).
 */
function winogradFilterReference(shape: [number, number, number, number], O: number, x: Float32Array, dy: Float32Array, exact: Float64Array): { dw: Float64Array; mag: Float64Array; terms: number; depth: number } {
  const [B, H, W, C] = shape;
  const absA = [[1, 0], [1, 1], [1, 1], [0, 1]]; // |A|, 4 x 2
  const absGT = [[1, 0.5, 0.5, 0], [0, 0.5, 0.5, 0], [0, 0.5, 0.5, 1]]; // |G^T|, 3 x 4
  const M = new Float64Array(C * O * 16);
  const V = new Float64Array(C * 16);
  const Hh = new Float64Array(O * 16);
  const th = Math.ceil(H / 2);
  const tw = Math.ceil(W / 2);
  for (let b = 0; b < B; b++)
    for (let ty = 0; ty < th; ty++)
      for (let tx = 0; tx < tw; tx++) {
        for (let c = 0; c < C; c++) absInputTransform(x, shape, b, ty, tx, c, V, c * 16);
        for (let o = 0; o < O; o++) {
          const h = (k: number, l: number) => {
            const y = 2 * ty + k;
            const xx = 2 * tx + l;
            return y >= H || xx >= W ? 0 : Math.abs(dy[((b * H + y) * W + xx) * O + o]);
          };
          for (let p = 0; p < 4; p++)
            for (let q = 0; q < 4; q++) {
              let v = 0;
              for (let k = 0; k < 2; k++) for (let l = 0; l < 2; l++) v += absA[p][k] * h(k, l) * absA[q][l];
              Hh[o * 16 + p * 4 + q] = v;
            }
        }
        for (let c = 0; c < C; c++) for (let o = 0; o < O; o++) for (let pq = 0; pq < 16; pq++) M[(c * O + o) * 16 + pq] += V[c * 16 + pq] * Hh[o * 16 + pq];
      }
  const mag = new Float64Array(9 * C * O);
  for (let c = 0; c < C; c++)
    for (let o = 0; o < O; o++)
      for (let i = 0; i < 3; i++)
        for (let j = 0; j < 3; j++) {
          let m = 0;
          for (let p = 0; p < 4; p++) for (let q = 0; q < 4; q++) m += absGT[i][p] * M[(c * O + o) * 16 + p * 4 + q] * absGT[j][q];
          mag[((i * 3 + j) * C + c) * O + o] = m;
        }
  const blocks = B * th * tw;
  return { dw: exact, mag, terms: blocks, depth: blocks + 8 };
}

function expectWithinRounding(actual: ArrayLike<number>, ref: { dw: Float64Array; mag: Float64Array; terms: number; depth?: number }, what: string): void {
  const n = ref.depth ?? ref.terms + 1;
  const gamma = (n * U) / (1 - n * U);
  expect(actual.length, `${what}: length`).to.equal(ref.dw.length);
  for (let k = 0; k < ref.dw.length; k++) {
    const tol = gamma * ref.mag[k];
    if (!(Math.abs(actual[k] - ref.dw[k]) <= tol)) expect.fail(`${what}[${k}] = ${actual[k]}, the float64 sum is ${ref.dw[k]}, allowed ${tol.toExponential(2)} (gamma_${n} times the sum of |terms|)`);
  }
}

/** Conv2DBackpropFilter on the current backend. */
function filterGrad(c: Case, x: Float32Array, dy: Float32Array): Float32Array {
  const { outH, outW } = geometry(c);
  return tf.tidy(() => {
    const xt = tf.tensor4d(x, c.x);
    const dyt = tf.tensor4d(dy, [c.x[0], outH, outW, c.outC]);
    const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x: xt, dy: dyt }, {
      strides: c.stride,
      pad: c.pad,
      dataFormat: 'NHWC',
      dimRoundingMode: undefined,
      filterShape: [c.k[0], c.k[1], c.x[3], c.outC],
    } as never) as tf.Tensor;
    return dw.dataSync() as Float32Array;
  });
}

/** Conv2D (the forward pass) on the current backend. */
function convForward(c: Case, x: Float32Array, w: Float32Array): Float32Array {
  return tf.tidy(() => {
    const xt = tf.tensor4d(x, c.x);
    const wt = tf.tensor4d(w, [c.k[0], c.k[1], c.x[3], c.outC]);
    const y = tf.engine().runKernel('Conv2D', { x: xt, filter: wt }, {
      strides: c.stride,
      pad: c.pad,
      dataFormat: 'NHWC',
      dilations: [1, 1],
      dimRoundingMode: undefined,
    } as never) as tf.Tensor;
    return y.dataSync() as Float32Array;
  });
}

/** Conv2DBackpropInput on the current backend. */
function inputGrad(c: Case, dy: Float32Array, w: Float32Array): Float32Array {
  const { outH, outW } = geometry(c);
  return tf.tidy(() => {
    const dyt = tf.tensor4d(dy, [c.x[0], outH, outW, c.outC]);
    const wt = tf.tensor4d(w, [c.k[0], c.k[1], c.x[3], c.outC]);
    const dx = tf.engine().runKernel('Conv2DBackpropInput', { dy: dyt, filter: wt }, {
      strides: c.stride,
      pad: c.pad,
      dataFormat: 'NHWC',
      dimRoundingMode: undefined,
      inputShape: c.x,
    } as never) as tf.Tensor;
    return dx.dataSync() as Float32Array;
  });
}

/** Whether Winograd's F(2x2, 3x3) takes this case (forward and input gradient): 3x3, stride 1, 'same', both channel counts multiples of 4. */
function winogradCase(c: Case): boolean {
  return c.k[0] === 3 && c.k[1] === 3 && c.stride[0] === 1 && c.stride[1] === 1 && c.pad === 'same' && c.x[3] % 4 === 0 && c.outC % 4 === 0;
}

/** Random cases: odd sizes, both SIMD paths (outC % 4 == 0; inC % 4 == 0 with outC odd) and their tails. */
function randomCases(count: number, seed: number): Case[] {
  const r = rng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(((r() + 1) / 2) * xs.length) % xs.length];
  const out: Case[] = [];
  for (let n = 0; n < count; n++) {
    const pathA = n % 2 === 0;
    const inC = pathA ? pick([1, 2, 3, 5, 7, 8, 13, 16]) : pick([4, 8, 12, 20, 24, 36]);
    const outC = pathA ? pick([4, 8, 12, 16, 20, 28]) : pick([1, 2, 3, 5, 7]);
    const k = pick<[number, number]>([[3, 3], [1, 1], [2, 3], [5, 5], [3, 1]]);
    const stride = pick<[number, number]>([[1, 1], [2, 2], [2, 1], [1, 2]]);
    const pad = pick<'same' | 'valid'>(['same', 'same', 'valid']);
    const H = pick([5, 6, 7, 9, 11, 14]);
    const W = pick([5, 6, 7, 8, 13]);
    out.push({ x: [pick([1, 2, 3]), H, W, inC], k, outC, stride, pad });
  }
  return out;
}

const name = (c: Case) => `x [${c.x}], filter ${c.k.join('x')} to ${c.outC} channels, stride [${c.stride}], ${c.pad}`;

describe('wasm SIMD convolution and its gradients (lib/runtime/kernels/c/conv2d.c)', function () {
  this.timeout(120000);

  after(async () => {
    setConvRoute('auto');
    await useCpu();
  });

  it('the committed module (simd-wasm.ts) is byte for byte what clang-14 builds from the C sources', function () {
    const missing = ['clang-14', 'wasm-ld-14', 'llvm-objdump-14'].filter((tool) => spawnSync(tool, ['--version']).status !== 0);
    if (missing.length > 0) {
      if (process.env.CI === 'true') throw new Error(`under CI this must run, but ${missing.join(', ')} missing: apt-get install -y clang-14 lld-14 llvm-14`);
      this.skip();
    }
    const out = execFileSync(process.execPath, [path.join(ROOT, 'lib/runtime/kernels/build-wasm.js'), '--check'], { encoding: 'utf8' });
    expect(out).to.match(/byte for byte/);
  });

  it('imports only a memory, and writes dW and not one other byte of it (no stack, no data): checked on a memory of its own', () => {
    const bytes = Buffer.from(SIMD_WASM_BASE64, 'base64');
    const mod = new WebAssembly.Module(bytes);
    expect(WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}:${i.kind}`)).to.deep.equal(['env.memory:memory']);
    for (const c of [
      { x: [2, 7, 6, 8], k: [3, 3], outC: 12, stride: [1, 1], pad: 'same' },
      { x: [2, 9, 5, 12], k: [3, 3], outC: 3, stride: [2, 2], pad: 'same' },
    ] as Case[]) {
      const memory = new WebAssembly.Memory({ initial: 4 });
      const heap = new Uint8Array(memory.buffer);
      heap.fill(0xa5); // a canary in every byte, address 0 (where a stack or data would go) included
      const { outH, outW, top, left } = geometry(c);
      const r = rng(7);
      const x = fill(c.x.reduce((a, b) => a * b, 1), r);
      const dy = fill(c.x[0] * outH * outW * c.outC, r);
      const dwLen = c.k[0] * c.k[1] * c.x[3] * c.outC;
      // Regions 16-byte aligned like tfjs's malloc, with canary gaps between them.
      const xAt = 65536 + 48;
      const dyAt = xAt + x.byteLength + 64;
      const dwAt = dyAt + dy.byteLength + 80;
      new Float32Array(memory.buffer, xAt, x.length).set(x);
      new Float32Array(memory.buffer, dyAt, dy.length).set(dy);
      const before = heap.slice();
      const fn = new WebAssembly.Instance(mod, { env: { memory } }).exports.conv2d_backprop_filter as (...a: number[]) => number;
      const rc = fn(xAt, dyAt, dwAt, c.x[0], c.x[1], c.x[2], c.x[3], outH, outW, c.outC, c.k[0], c.k[1], c.stride[0], c.stride[1], top, left);
      expect(rc, 'return code').to.equal(0);
      const after = new Uint8Array(memory.buffer);
      let changedOutside = 0;
      for (let i = 0; i < after.length; i++) if ((i < dwAt || i >= dwAt + 4 * dwLen) && after[i] !== before[i]) changedOutside++;
      expect(changedOutside, `bytes written outside dW (${name(c)})`).to.equal(0);
      expectWithinRounding(new Float32Array(memory.buffer, dwAt, dwLen), reference(c, x, dy), `dW of ${name(c)}`);
      // Neither channel count a multiple of 4: it declines and leaves dW as it was.
      const dwBefore = after.slice(dwAt, dwAt + 4 * dwLen);
      expect(fn(xAt, dyAt, dwAt, 1, 3, 3, 3, 3, 3, 5, 3, 3, 1, 1, 1, 1), 'return code for 3 -> 5 channels').to.equal(1);
      expect(Buffer.from(new Uint8Array(memory.buffer, dwAt, 4 * dwLen)).equals(Buffer.from(dwBefore)), 'dW untouched after declining').to.equal(true);
    }
  });

  it('the input gradient writes dx and its scratch and not one other byte of the memory; it declines inC not a multiple of 4', () => {
    const mod = new WebAssembly.Module(Buffer.from(SIMD_WASM_BASE64, 'base64'));
    for (const c of [
      { x: [2, 7, 11, 8], k: [3, 3], outC: 5, stride: [1, 1], pad: 'same' },
      { x: [1, 9, 6, 12], k: [3, 3], outC: 4, stride: [2, 2], pad: 'same' },
    ] as Case[]) {
      const memory = new WebAssembly.Memory({ initial: 4 });
      const heap = new Uint8Array(memory.buffer);
      heap.fill(0x5a);
      const { outH, outW, top, left } = geometry(c);
      const r = rng(11);
      const dy = fill(c.x[0] * outH * outW * c.outC, r);
      const w = fill(c.k[0] * c.k[1] * c.x[3] * c.outC, r);
      const dxLen = c.x.reduce((a, b) => a * b, 1);
      const dyAt = 65536 + 32;
      const wAt = dyAt + dy.byteLength + 48;
      const wTAt = wAt + w.byteLength + 64;
      const dxAt = wTAt + w.byteLength + 16;
      new Float32Array(memory.buffer, dyAt, dy.length).set(dy);
      new Float32Array(memory.buffer, wAt, w.length).set(w);
      const before = heap.slice();
      const fn = new WebAssembly.Instance(mod, { env: { memory } }).exports.conv2d_backprop_input as (...a: number[]) => number;
      const args = [c.x[0], c.x[1], c.x[2], c.x[3], outH, outW, c.outC, c.k[0], c.k[1], c.stride[0], c.stride[1], top, left];
      expect(fn(dyAt, wAt, wTAt, dxAt, ...args), 'return code').to.equal(0);
      const after = new Uint8Array(memory.buffer);
      const inside = (i: number) => (i >= wTAt && i < wTAt + w.byteLength) || (i >= dxAt && i < dxAt + 4 * dxLen);
      let changedOutside = 0;
      for (let i = 0; i < after.length; i++) if (!inside(i) && after[i] !== before[i]) changedOutside++;
      expect(changedOutside, `bytes written outside dx and the scratch (${name(c)})`).to.equal(0);
      expectWithinRounding(new Float32Array(memory.buffer, dxAt, dxLen), referenceDx(c, dy, w), `dx of ${name(c)}`);
      const snapshot = after.slice();
      expect(fn(dyAt, wAt, wTAt, dxAt, 1, 3, 3, 3, 3, 3, 4, 3, 3, 1, 1, 1, 1), 'return code for 3 input channels').to.equal(1);
      expect(Buffer.from(new Uint8Array(memory.buffer)).equals(Buffer.from(snapshot)), 'memory untouched after declining').to.equal(true);
    }
  });

  it('the forward pass writes y and not one other byte of the memory; it declines outC not a multiple of 4', () => {
    const mod = new WebAssembly.Module(Buffer.from(SIMD_WASM_BASE64, 'base64'));
    for (const c of [
      { x: [2, 7, 11, 5], k: [3, 3], outC: 8, stride: [1, 1], pad: 'same' },
      { x: [1, 9, 6, 3], k: [3, 3], outC: 12, stride: [2, 2], pad: 'same' },
    ] as Case[]) {
      const memory = new WebAssembly.Memory({ initial: 4 });
      const heap = new Uint8Array(memory.buffer);
      heap.fill(0x3c);
      const { outH, outW, top, left } = geometry(c);
      const r = rng(13);
      const x = fill(c.x.reduce((a, b) => a * b, 1), r);
      const w = fill(c.k[0] * c.k[1] * c.x[3] * c.outC, r);
      const yLen = c.x[0] * outH * outW * c.outC;
      const xAt = 65536 + 16;
      const wAt = xAt + x.byteLength + 48;
      const yAt = wAt + w.byteLength + 32;
      new Float32Array(memory.buffer, xAt, x.length).set(x);
      new Float32Array(memory.buffer, wAt, w.length).set(w);
      const before = heap.slice();
      const fn = new WebAssembly.Instance(mod, { env: { memory } }).exports.conv2d_forward as (...a: number[]) => number;
      expect(fn(xAt, wAt, yAt, c.x[0], c.x[1], c.x[2], c.x[3], outH, outW, c.outC, c.k[0], c.k[1], c.stride[0], c.stride[1], top, left), 'return code').to.equal(0);
      const after = new Uint8Array(memory.buffer);
      let changedOutside = 0;
      for (let i = 0; i < after.length; i++) if ((i < yAt || i >= yAt + 4 * yLen) && after[i] !== before[i]) changedOutside++;
      expect(changedOutside, `bytes written outside y (${name(c)})`).to.equal(0);
      expectWithinRounding(new Float32Array(memory.buffer, yAt, yLen), referenceY(c, x, w), `y of ${name(c)}`);
      const snapshot = after.slice();
      expect(fn(xAt, wAt, yAt, 1, 3, 3, 3, 3, 3, 5, 3, 3, 1, 1, 1, 1), 'return code for 5 output channels').to.equal(1);
      expect(Buffer.from(new Uint8Array(memory.buffer)).equals(Buffer.from(snapshot)), 'memory untouched after declining').to.equal(true);
    }
  });

  it('Winograd writes y and its scratch and not one other byte of the memory; it declines channel counts not multiples of 4', () => {
    const mod = new WebAssembly.Module(Buffer.from(SIMD_WASM_BASE64, 'base64'));
    const fn = (memory: WebAssembly.Memory) => new WebAssembly.Instance(mod, { env: { memory } }).exports.conv2d_winograd as (...a: number[]) => number;
    for (const [B, H, W, C, O, flip] of [[2, 7, 5, 8, 12, 0], [1, 6, 9, 12, 4, 1]]) {
      const memory = new WebAssembly.Memory({ initial: 4 });
      const heap = new Uint8Array(memory.buffer);
      heap.fill(0x69);
      const r = rng(17);
      const x = fill(B * H * W * C, r);
      const w = fill(9 * C * O, r);
      const xAt = 65536 + 16;
      const wAt = xAt + x.byteLength + 48;
      const sAt = wAt + w.byteLength + 32;
      const sLen = winogradScratchFloats(C, O); // the size wasm.ts hands it
      const yAt = sAt + 4 * sLen + 64;
      const yLen = B * H * W * O;
      new Float32Array(memory.buffer, xAt, x.length).set(x);
      new Float32Array(memory.buffer, wAt, w.length).set(w);
      const before = heap.slice();
      expect(fn(memory)(xAt, wAt, sAt, yAt, B, H, W, C, O, flip), 'return code').to.equal(0);
      const after = new Uint8Array(memory.buffer);
      const inside = (i: number) => (i >= sAt && i < sAt + 4 * sLen) || (i >= yAt && i < yAt + 4 * yLen);
      let changedOutside = 0;
      for (let i = 0; i < after.length; i++) if (!inside(i) && after[i] !== before[i]) changedOutside++;
      expect(changedOutside, `bytes written outside y and the scratch ([${[B, H, W, C]}] to ${O}, flip ${flip})`).to.equal(0);
      // the flipped filter is [3, 3, O, C] read as the forward filter of the input gradient
      const g = flip ? (i: number, j: number, a: number, b: number) => w[(((2 - i) * 3 + (2 - j)) * O + b) * C + a] : (i: number, j: number, a: number, b: number) => w[((i * 3 + j) * C + a) * O + b];
      const wDef = new Float32Array(9 * C * O);
      for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let a = 0; a < C; a++) for (let b = 0; b < O; b++) wDef[((i * 3 + j) * C + a) * O + b] = g(i, j, a, b);
      const c: Case = { x: [B, H, W, C], k: [3, 3], outC: O, stride: [1, 1], pad: 'same' };
      expectWithinRounding(new Float32Array(memory.buffer, yAt, yLen), winogradReference(c.x, O, x, g, referenceY(c, x, wDef).dw), `Winograd y (flip ${flip})`);
      const snapshot = after.slice();
      expect(fn(memory)(xAt, wAt, sAt, yAt, 1, 3, 3, 3, 4, 0), 'return code for 3 input channels').to.equal(1);
      expect(fn(memory)(xAt, wAt, sAt, yAt, 1, 3, 3, 4, 6, 0), 'return code for 6 output channels').to.equal(1);
      expect(Buffer.from(new Uint8Array(memory.buffer)).equals(Buffer.from(snapshot)), 'memory untouched after declining').to.equal(true);
    }
  });

  it('Winograd\'s filter gradient writes dW and its scratch and not one other byte of the memory; it declines channel counts not multiples of 4', () => {
    const mod = new WebAssembly.Module(Buffer.from(SIMD_WASM_BASE64, 'base64'));
    const fn = (memory: WebAssembly.Memory) => new WebAssembly.Instance(mod, { env: { memory } }).exports.conv2d_winograd_filter as (...a: number[]) => number;
    // 2 x 4 x 3 = 24 blocks (one partial chunk) and 3 x 9 x 8 = 216 (several chunks, odd sizes)
    for (const [B, H, W, C, O] of [[2, 7, 5, 8, 12], [3, 17, 15, 4, 8]]) {
      const memory = new WebAssembly.Memory({ initial: 4 });
      const heap = new Uint8Array(memory.buffer);
      heap.fill(0x96);
      const r = rng(19);
      const x = fill(B * H * W * C, r);
      const dy = fill(B * H * W * O, r);
      const xAt = 65536 + 16;
      const dyAt = xAt + x.byteLength + 48;
      const sAt = dyAt + dy.byteLength + 32;
      const sLen = winogradFilterScratchFloats(C, O); // the size wasm.ts hands it
      const dwAt = sAt + 4 * sLen + 64;
      const dwLen = 9 * C * O;
      new Float32Array(memory.buffer, xAt, x.length).set(x);
      new Float32Array(memory.buffer, dyAt, dy.length).set(dy);
      const before = heap.slice();
      expect(fn(memory)(xAt, dyAt, sAt, dwAt, B, H, W, C, O), 'return code').to.equal(0);
      const after = new Uint8Array(memory.buffer);
      const inside = (i: number) => (i >= sAt && i < sAt + 4 * sLen) || (i >= dwAt && i < dwAt + 4 * dwLen);
      let changedOutside = 0;
      for (let i = 0; i < after.length; i++) if (!inside(i) && after[i] !== before[i]) changedOutside++;
      expect(changedOutside, `bytes written outside dW and the scratch ([${[B, H, W, C]}] to ${O})`).to.equal(0);
      const c: Case = { x: [B, H, W, C], k: [3, 3], outC: O, stride: [1, 1], pad: 'same' };
      expectWithinRounding(new Float32Array(memory.buffer, dwAt, dwLen), winogradFilterReference(c.x, O, x, dy, reference(c, x, dy).dw), `Winograd dW of [${[B, H, W, C]}] to ${O}`);
      const snapshot = after.slice();
      expect(fn(memory)(xAt, dyAt, sAt, dwAt, 1, 3, 3, 3, 4), 'return code for 3 input channels').to.equal(1);
      expect(fn(memory)(xAt, dyAt, sAt, dwAt, 1, 3, 3, 4, 6), 'return code for 6 output channels').to.equal(1);
      expect(Buffer.from(new Uint8Array(memory.buffer)).equals(Buffer.from(snapshot)), 'memory untouched after declining').to.equal(true);
    }
  });

  // y: a 3x3 stride-1 'same' convolution with both channel counts multiples of 4 takes Winograd's
  // F(2x2, 3x3), any other with outC a multiple of 4 the direct SIMD kernel, any other outC the
  // package's XNNPACK Conv2D; widths that give blocks of four and edge pixels, odd sizes for Winograd's tiles.
  const yCases: Case[] = [
    { x: [2, 28, 28, 1], k: [3, 3], outC: 16, stride: [1, 1], pad: 'same' },
    { x: [2, 28, 28, 16], k: [3, 3], outC: 16, stride: [1, 1], pad: 'same' },
    { x: [2, 28, 28, 16], k: [3, 3], outC: 16, stride: [2, 2], pad: 'same' },
    { x: [2, 14, 14, 48], k: [3, 3], outC: 32, stride: [1, 1], pad: 'same' },
    { x: [2, 14, 14, 64], k: [1, 1], outC: 32, stride: [1, 1], pad: 'same' },
    { x: [2, 28, 28, 16], k: [3, 3], outC: 1, stride: [1, 1], pad: 'same' },
    { x: [3, 7, 9, 8], k: [3, 3], outC: 12, stride: [1, 1], pad: 'same' },
    { x: [2, 1, 3, 4], k: [3, 3], outC: 8, stride: [1, 1], pad: 'same' },
    { x: [1, 5, 6, 20], k: [3, 3], outC: 4, stride: [1, 1], pad: 'same' },
    ...randomCases(14, 4242).map((c) => ({ ...c, outC: c.outC % 4 === 0 ? c.outC : c.x[3] % 3 === 0 ? c.outC : 4 * Math.ceil(c.outC / 4), x: [c.x[0], c.x[1], c.x[2] + 3, c.x[3]] as Case['x'] })),
  ];
  for (const c of yCases) {
    const wino = winogradCase(c);
    it(`y matches the float64 sum and the cpu backend (${wino ? 'Winograd, then direct SIMD' : c.outC % 4 === 0 ? 'SIMD' : 'XNNPACK'}): ${name(c)}`, async () => {
      const r = rng(c.x.reduce((a, b) => a * 13 + b, c.outC + c.stride[1]));
      const x = fill(c.x.reduce((a, b) => a * b, 1), r);
      const w = fill(c.k[0] * c.k[1] * c.x[3] * c.outC, r);
      const ref = referenceY(c, x, w);
      await useCpu();
      const cpu = convForward(c, x, w);
      await useBestBackend({ prefer: 'wasm' });
      const tensors = tf.memory().numTensors;
      const buffers = tf.backend().numDataIds();
      const ran = simdCalls();
      const simd = convForward(c, x, w);
      expect(simdCalls().conv2d_winograd - ran.conv2d_winograd, 'Winograd kernel calls').to.equal(wino ? 1 : 0);
      expect(simdCalls().conv2d_forward - ran.conv2d_forward, 'direct SIMD forward kernel calls').to.equal(!wino && c.outC % 4 === 0 ? 1 : 0);
      expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
      expect(tf.backend().numDataIds(), 'wasm buffers left behind (the scratch included)').to.equal(buffers);
      if (wino) {
        expectWithinRounding(simd, winogradReference(c.x, c.outC, x, (i, j, ci, co) => w[((i * 3 + j) * c.x[3] + ci) * c.outC + co], ref.dw), 'wasm y, Winograd');
        setConvRoute('direct');
        try {
          const before = simdCalls();
          expectWithinRounding(convForward(c, x, w), ref, 'wasm y, direct SIMD route');
          expect(simdCalls().conv2d_forward - before.conv2d_forward, 'direct calls on the direct route').to.equal(1);
          expect(simdCalls().conv2d_winograd, 'Winograd calls on the direct route').to.equal(before.conv2d_winograd);
        } finally {
          setConvRoute('auto');
        }
      } else {
        expectWithinRounding(simd, ref, 'wasm y');
      }
      expectWithinRounding(cpu, ref, 'cpu y');
      // forced to the package's kernel: within rounding too, and no SIMD kernel called
      setConvRoute('xnnpack');
      try {
        const before = simdCalls();
        expectWithinRounding(convForward(c, x, w), ref, 'wasm y, XNNPACK route');
        expect(simdCalls().conv2d_forward, 'SIMD calls on the XNNPACK route').to.equal(before.conv2d_forward);
        expect(simdCalls().conv2d_winograd, 'Winograd calls on the XNNPACK route').to.equal(before.conv2d_winograd);
      } finally {
        setConvRoute('auto');
      }
    });
  }

  // The U-Net's own shapes (batch cut to 2) and the channel tails of both paths, then random ones.
  const fixed: Case[] = [
    { x: [2, 28, 28, 1], k: [3, 3], outC: 16, stride: [1, 1], pad: 'same' },
    { x: [2, 28, 28, 16], k: [3, 3], outC: 1, stride: [1, 1], pad: 'same' },
    { x: [2, 28, 28, 16], k: [3, 3], outC: 16, stride: [2, 2], pad: 'same' },
    { x: [2, 14, 14, 48], k: [3, 3], outC: 32, stride: [1, 1], pad: 'same' },
    { x: [2, 14, 14, 64], k: [1, 1], outC: 32, stride: [1, 1], pad: 'same' },
    { x: [2, 9, 7, 3], k: [3, 3], outC: 12, stride: [1, 1], pad: 'same' },
    { x: [1, 6, 9, 7], k: [3, 3], outC: 4, stride: [2, 2], pad: 'valid' },
    { x: [2, 5, 5, 20], k: [3, 3], outC: 7, stride: [1, 1], pad: 'same' },
  ];
  for (const c of [...fixed, { x: [2, 28, 28, 16], k: [3, 3], outC: 16, stride: [1, 1], pad: 'same' } as Case, { x: [3, 7, 9, 8], k: [3, 3], outC: 12, stride: [1, 1], pad: 'same' } as Case, { x: [2, 1, 3, 4], k: [3, 3], outC: 8, stride: [1, 1], pad: 'same' } as Case, ...randomCases(16, 20261201)]) {
    const wino = winogradCase(c);
    it(`dW matches the float64 sum and the cpu backend${wino ? ' (Winograd, then direct SIMD)' : ''}: ${name(c)}`, async () => {
      const { outH, outW } = geometry(c);
      const r = rng(c.x.reduce((a, b) => a * 31 + b, c.outC));
      const x = fill(c.x.reduce((a, b) => a * b, 1), r);
      const dy = fill(c.x[0] * outH * outW * c.outC, r);
      const ref = reference(c, x, dy);
      await useCpu();
      const cpu = filterGrad(c, x, dy);
      await useBestBackend({ prefer: 'wasm' });
      setConvRoute('simd');
      const tensors = tf.memory().numTensors;
      const buffers = tf.backend().numDataIds();
      const ran = simdCalls();
      const simd = filterGrad(c, x, dy);
      expect(simdCalls().conv2d_winograd_filter - ran.conv2d_winograd_filter, 'Winograd filter-gradient calls').to.equal(wino ? 1 : 0);
      expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
      expect(tf.backend().numDataIds(), 'wasm buffers left behind (the scratch included)').to.equal(buffers);
      if (wino) {
        expectWithinRounding(simd, winogradFilterReference(c.x, c.outC, x, dy, ref.dw), 'wasm dW, Winograd');
        setConvRoute('direct');
        expectWithinRounding(filterGrad(c, x, dy), ref, 'wasm dW, direct SIMD route');
      } else {
        expectWithinRounding(simd, ref, 'wasm SIMD dW');
      }
      setConvRoute('auto');
      expectWithinRounding(cpu, ref, 'cpu dW');
    });
  }

  // dx: inC a multiple of 4 (the kernel's vectors run along it), any outC; widths that give blocks
  // of four and edge pixels. A 3x3 stride-1 'same' one with outC a multiple of 4 too takes Winograd's
  // F(2x2, 3x3) (the convolution of dy with the flipped filter), then is checked on the direct route.
  const dxCases: Case[] = [
    { x: [2, 28, 28, 16], k: [3, 3], outC: 16, stride: [1, 1], pad: 'same' },
    { x: [2, 28, 28, 16], k: [3, 3], outC: 1, stride: [1, 1], pad: 'same' },
    { x: [2, 28, 28, 16], k: [3, 3], outC: 16, stride: [2, 2], pad: 'same' },
    { x: [2, 14, 14, 48], k: [3, 3], outC: 32, stride: [1, 1], pad: 'same' },
    { x: [2, 14, 14, 64], k: [1, 1], outC: 32, stride: [1, 1], pad: 'same' },
    { x: [3, 7, 9, 12], k: [3, 3], outC: 8, stride: [1, 1], pad: 'same' },
    { x: [2, 3, 1, 8], k: [3, 3], outC: 4, stride: [1, 1], pad: 'same' },
    ...randomCases(12, 77).map((c) => ({ ...c, x: [c.x[0], c.x[1], c.x[2] + 4, 4 * Math.ceil(c.x[3] / 4)] as Case['x'] })),
  ];
  for (const c of dxCases) {
    const wino = winogradCase(c);
    it(`dx matches the float64 sum and the cpu backend${wino ? ' (Winograd, then direct SIMD)' : ''}: ${name(c)}`, async () => {
      const { outH, outW } = geometry(c);
      const r = rng(c.x.reduce((a, b) => a * 17 + b, c.outC + c.k[0]));
      const dy = fill(c.x[0] * outH * outW * c.outC, r);
      const w = fill(c.k[0] * c.k[1] * c.x[3] * c.outC, r);
      const ref = referenceDx(c, dy, w);
      await useCpu();
      const cpu = inputGrad(c, dy, w);
      await useBestBackend({ prefer: 'wasm' });
      setConvRoute('simd');
      const tensors = tf.memory().numTensors;
      const buffers = tf.backend().numDataIds();
      const ran = simdCalls();
      const simd = inputGrad(c, dy, w);
      expect(simdCalls().conv2d_winograd - ran.conv2d_winograd, 'Winograd kernel calls').to.equal(wino ? 1 : 0);
      expect(tf.memory().numTensors, 'tensors left behind').to.equal(tensors);
      expect(tf.backend().numDataIds(), 'wasm buffers left behind (the scratch included)').to.equal(buffers);
      if (wino) {
        // dy [B, H, W, outC] by the flipped filter: g(i, j, a, b) = w[2 - i, 2 - j, b, a]
        const C = c.x[3];
        const g = (i: number, j: number, a: number, b: number) => w[(((2 - i) * 3 + (2 - j)) * C + b) * c.outC + a];
        expectWithinRounding(simd, winogradReference([c.x[0], c.x[1], c.x[2], c.outC], C, dy, g, ref.dw), 'wasm dx, Winograd');
        setConvRoute('direct');
        expectWithinRounding(inputGrad(c, dy, w), ref, 'wasm dx, direct SIMD route');
      } else {
        expectWithinRounding(simd, ref, 'wasm SIMD dx');
      }
      setConvRoute('auto');
      expectWithinRounding(cpu, ref, 'cpu dx');
    });
  }

  it('auto takes the SIMD route (no Transpose inside) when a channel count is a multiple of 4, and the XNNPACK route (three) otherwise', async () => {
    await useBestBackend({ prefer: 'wasm' });
    const transpose = tf.getKernel('Transpose', 'wasm')!;
    let calls = 0;
    tf.unregisterKernel('Transpose', 'wasm');
    tf.registerKernel({ ...transpose, kernelFunc: (args) => (calls++, transpose.kernelFunc(args)) });
    try {
      const count = (c: Case) => {
        calls = 0;
        const r = rng(3);
        const { outH, outW } = geometry(c);
        filterGrad(c, fill(c.x.reduce((a, b) => a * b, 1), r), fill(c.x[0] * outH * outW * c.outC, r));
        return calls;
      };
      expect(count({ x: [2, 8, 8, 16], k: [3, 3], outC: 16, stride: [1, 1], pad: 'same' }), '16 -> 16').to.equal(0);
      expect(count({ x: [2, 8, 8, 16], k: [3, 3], outC: 1, stride: [1, 1], pad: 'same' }), '16 -> 1').to.equal(0);
      expect(count({ x: [2, 8, 8, 3], k: [3, 3], outC: 5, stride: [1, 1], pad: 'same' }), '3 -> 5').to.equal(3);
      setConvRoute('xnnpack');
      expect(count({ x: [2, 8, 8, 16], k: [3, 3], outC: 16, stride: [1, 1], pad: 'same' }), '16 -> 16 forced to XNNPACK').to.equal(3);
    } finally {
      setConvRoute('auto');
      tf.unregisterKernel('Transpose', 'wasm');
      tf.registerKernel(transpose);
    }
  });

  it('setConvRoute rejects an unknown route, naming it and the valid ones', () => {
    expect(() => setConvRoute('fast' as never)).to.throw(/route must be one of 'auto', 'simd', 'direct', 'xnnpack', got 'fast'/);
  });
});
