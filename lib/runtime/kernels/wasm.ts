/**
 * Kernels that tfjs-backend-wasm 4.22 lacks or runs slowly, registered for the 'wasm' backend so
 * that every model of the library trains on it, fast. Each one is built from the backend's own
 * kernels (Transpose, Slice, PadV2, Reverse, Reshape, Conv2D, BatchMatMul): the heavy work always
 * lands in XNNPACK's convolution or fully-connected operator, never in a scalar loop. The
 * convolution forward and its two gradients first try the project's own wasm SIMD kernels
 * (c/conv2d.c via ./simd), which work in place on the backend's heap: the forward pass when outC
 * is a multiple of 4, the filter gradient when inC or outC is (1.6-36x faster than the route below
 * on the U-Net's shapes, which give XNNPACK a 28x28 "filter" with few channels per tap), the input
 * gradient when inC is; other shapes take XNNPACK (the package's Conv2D, or the route below).
 *
 * - Conv2DBackpropFilter (missing in 4.22, so no conv net could train): the filter gradient
 *   dW[kh, kw, ci, co] = sum_{b, y, x} xpad[b, y sh + kh, x sw + kw, ci] dy[b, y, x, co] is itself a
 *   convolution, with the roles of batch and channels swapped: input x^T [ci, H, W, b], filter
 *   dy^T [y, x, b, co], dilation (sh, sw), stride 1, output [ci, kh, kw, co], transposed back.
 * - Conv2DBackpropInput (4.22's is a naive scalar loop, ~1 GFLOP/s): the input gradient is a
 *   stride-1 convolution of dy, zero-upsampled by the stride, with the spatially flipped filter
 *   whose in/out channels are swapped.
 * - Identity and same-dtype Cast (4.22 copies the buffer): the output shares the input's buffer.
 * - BatchMatMul / _FusedMatMul with transposeA or transposeB (4.22 sends every transposed or
 *   batched product to a naive scalar loop, 20x slower than XNNPACK): the operand is transposed
 *   explicitly, and a batched product with a broadcast or per-example operand is split into one
 *   XNNPACK product per batch entry when that is cheaper.
 * - Sum over leading axes (bias gradients) and SplitV (the concat's gradient): one pass over the
 *   heap instead of a transpose or strided slices (lib/runtime/kernels/layout.ts).
 *
 * Registration: registerWasmKernels() adds Conv2DBackpropFilter at once (the wasm package has no
 * such kernel, so nothing conflicts), and wraps the package's own kernels as soon as the package is
 * loaded (it registers them when first required). registerKernels() (lib/runtime/kernels/index.ts) calls it, and useBestBackend
 * calls it again after loading the wasm package; code that loads @tensorflow/tfjs-backend-wasm itself
 * should call registerWasmKernels() afterwards.
 */
import * as tf from '@tensorflow/tfjs';
import { SimdKernels, simdKernels, winogradFilterScratchFloats, winogradScratchFloats } from './simd';
import { splitVRows, sumLeading } from './layout';

type Info = tf.TensorInfo;

/** The part of tfjs-backend-wasm's BackendWasm used here. */
interface WasmBackend extends tf.KernelBackend {
  disposeData(dataId: object, force?: boolean): boolean;
  makeOutput(shape: number[], dtype: 'float32'): Info;
  getMemoryOffset(dataId: object): number;
  wasm?: { asm?: { memory?: WebAssembly.Memory } };
}

type KernelArgs = { inputs: Record<string, Info>; backend: WasmBackend; attrs: Record<string, unknown> };

const BACKEND = 'wasm';

/** The wasm package's own kernels that are wrapped here, kept to be called from the wrappers. */
const originals = new Map<string, tf.KernelConfig>();

/** Intermediate TensorInfos made inside one kernel call, disposed together at its end. */
class Scratch {
  private readonly made: Info[] = [];

  constructor(private readonly backend: WasmBackend) {}

  /** Runs the backend's kernel `name` (a wrapped one runs its original) and keeps its output for disposal. */
  run(name: string, inputs: Record<string, Info>, attrs: Record<string, unknown> = {}): Info {
    const config = originals.get(name) ?? tf.getKernel(name, BACKEND);
    if (!config) throw new Error(`the wasm backend has no ${name} kernel (is @tensorflow/tfjs-backend-wasm loaded?)`);
    const out = config.kernelFunc({ inputs, backend: this.backend, attrs } as never) as Info;
    this.made.push(out);
    return out;
  }

  /** Adds an output made outside run() (a direct kernelFunc call) to the list. */
  track(t: Info): Info {
    this.made.push(t);
    return t;
  }

  transpose(x: Info, perm: number[]): Info {
    return this.run('Transpose', { x }, { perm });
  }

  reshape(x: Info, shape: number[]): Info {
    return this.run('Reshape', { x }, { shape });
  }

  slice(x: Info, begin: number[], size: number[]): Info {
    return this.run('Slice', { x }, { begin, size });
  }

  /** Disposes every intermediate except `keep` (the kernel's output). */
  finish(keep: Info): Info {
    for (const t of this.made) if (t !== keep) this.backend.disposeData(t.dataId);
    return keep;
  }

  /** Disposes every intermediate (after an error). */
  abandon(): void {
    for (const t of this.made) this.backend.disposeData(t.dataId);
  }
}

/** Runs `body` with a Scratch; disposes the intermediates whatever happens. */
function withScratch(backend: WasmBackend, body: (s: Scratch) => Info): Info {
  const s = new Scratch(backend);
  let out: Info;
  try {
    out = body(s);
  } catch (err) {
    s.abandon();
    throw err;
  }
  return s.finish(out);
}

/** Stride, padding and data-format attributes shared by both conv gradients, checked. */
function convInfo(kernel: string, xShape: number[], filterShape: number[], attrs: Record<string, unknown>): tf.backend_util.Conv2DInfo {
  const { strides, pad, dataFormat, dimRoundingMode } = attrs as {
    strides: number | [number, number];
    pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
    dataFormat?: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  if (dataFormat !== undefined && dataFormat !== 'NHWC') {
    throw new Error(`wasm ${kernel}: dataFormat must be 'NHWC' (channels last), got '${String(dataFormat)}'`);
  }
  const dilations = (attrs.dilations ?? 1) as number | [number, number];
  const d = typeof dilations === 'number' ? [dilations, dilations] : dilations;
  if (d[0] !== 1 || d[1] !== 1) throw new Error(`wasm ${kernel}: dilations must be 1, got [${d}]`);
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    'channelsLast',
  );
  return info;
}

/**
 * A stride-1 convolution of NHWC x with `filter`, with per-side paddings that may be negative
 * (a negative padding crops that many rows or columns of x instead).
 */
function convPadded(s: Scratch, x: Info, filter: Info, pads: [number, number, number, number], dilations: [number, number]): Info {
  const [top, bottom, left, right] = pads;
  let src = x;
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [n, h, w, c] = x.shape;
    const t = Math.max(-top, 0);
    const l = Math.max(-left, 0);
    src = s.slice(x, [0, t, l, 0], [n, h - t - Math.max(-bottom, 0), w - l - Math.max(-right, 0), c]);
  }
  const explicit: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [Math.max(top, 0), Math.max(bottom, 0)],
    [Math.max(left, 0), Math.max(right, 0)],
    [0, 0],
  ];
  return s.run('Conv2D', { x: src, filter }, { strides: [1, 1], pad: explicit, dataFormat: 'NHWC', dilations, dimRoundingMode: undefined });
}

function checkFloat(kernel: string, inputs: Record<string, Info>): void {
  for (const [name, t] of Object.entries(inputs)) {
    if (t.dtype !== 'float32') throw new Error(`wasm ${kernel}: ${name} must be float32, got ${t.dtype}`);
    if (name !== 'bias' && name !== 'preluActivationWeights' && t.shape.length !== 4 && kernel.startsWith('Conv')) {
      throw new Error(`wasm ${kernel}: ${name} must be rank 4 (NHWC), got shape [${t.shape}]`);
    }
  }
}

/**
 * Which route the convolution (forward and both gradients) takes: 'auto' (the SIMD kernels where
 * they apply, Winograd's for the 3x3 stride-1 'same' forward, input and filter gradients;
 * measured faster on the U-Net's shapes), or forced for A/B tests and benchmarks: 'simd' (the same
 * as 'auto'), 'direct' (the SIMD kernels without Winograd), 'xnnpack' (the package's kernels).
 */
export type ConvRoute = 'auto' | 'simd' | 'direct' | 'xnnpack';
const CONV_ROUTES: readonly ConvRoute[] = ['auto', 'simd', 'direct', 'xnnpack'];
let convRoute: ConvRoute = 'auto';

/** Forces the route of Conv2D, Conv2DBackpropFilter and Conv2DBackpropInput (tests, benchmarks); 'auto' restores the default. Returns the previous setting. */
export function setConvRoute(route: ConvRoute): ConvRoute {
  if (!CONV_ROUTES.includes(route)) throw new Error(`setConvRoute: route must be one of ${CONV_ROUTES.map((r) => `'${r}'`).join(', ')}, got '${String(route)}'`);
  const before = convRoute;
  convRoute = route;
  return before;
}

/**
 * Whether a convolution of this geometry goes to Winograd's F(2x2, 3x3): a 3x3 filter, stride 1,
 * padding 1 on every side (output as big as the input), both channel counts multiples of 4, and
 * the route not 'direct'.
 */
function winogradApplies(kh: number, kw: number, sh: number, sw: number, top: number, left: number, inH: number, inW: number, outH: number, outW: number, inC: number, outC: number): boolean {
  return convRoute !== 'direct' && kh === 3 && kw === 3 && sh === 1 && sw === 1 && top === 1 && left === 1 && outH === inH && outW === inW && inC % 4 === 0 && outC % 4 === 0;
}

/**
 * Runs one SIMD kernel into a new output of `outShape`, with a scratch of `scratchFloats` floats
 * when it needs one (freed after the call): `call` gets the heap offset of a tensor, the output's
 * and the scratch's, and returns the kernel's code. The output, or null (nothing kept) when the
 * kernel declined.
 */
function runSimd(backend: WasmBackend, outShape: number[], scratchFloats: number, call: (at: (t: Info) => number, out: number, scratch: number) => number): Info | null {
  const out = backend.makeOutput(outShape, 'float32');
  const scratch = scratchFloats > 0 ? backend.makeOutput([scratchFloats], 'float32') : null;
  // makeOutput may grow the heap; offsets (not views) are taken after it.
  const at = (t: Info) => backend.getMemoryOffset(t.dataId);
  const rc = call(at, at(out), scratch ? at(scratch) : 0);
  if (scratch) backend.disposeData(scratch.dataId);
  if (rc === 0) return out;
  backend.disposeData(out.dataId);
  return null;
}

/** conv2d_winograd into a new output of `outShape` (see SimdKernels.winograd); null when the kernel declined. */
function runWinograd(backend: WasmBackend, simd: SimdKernels, x: Info, w: Info, outShape: number[], inC: number, outC: number, flip: 0 | 1): Info | null {
  const [batch, H, W] = outShape;
  return runSimd(backend, outShape, winogradScratchFloats(inC, outC), (at, out, scratch) => simd.winograd(at(x), at(w), scratch, out, batch, H, W, inC, outC, flip));
}

/** The SIMD kernels for this backend when the route allows them, else null. */
function simdFor(backend: WasmBackend): ReturnType<typeof simdKernels> {
  return convRoute === 'xnnpack' ? null : simdKernels(backend.wasm?.asm?.memory);
}

/**
 * Conv2D: the SIMD forward kernel (c/conv2d.c) when outC is a multiple of 4 (NHWC, float32, no
 * dilation), else the package's own (XNNPACK) kernel.
 */
function wrapConv2D(original: tf.KernelConfig): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const { x, filter } = inputs;
    const a = attrs ?? {};
    const dil = (a.dilations ?? 1) as number | [number, number];
    const plain =
      x.dtype === 'float32' && filter.dtype === 'float32' && x.shape.length === 4 && filter.shape.length === 4 &&
      (a.dataFormat === undefined || a.dataFormat === 'NHWC') && (typeof dil === 'number' ? dil === 1 : dil[0] === 1 && dil[1] === 1);
    const outC = filter.shape[3];
    const simd = plain && outC % 4 === 0 && x.shape[0] > 0 && x.shape[3] === filter.shape[2] ? simdFor(backend) : null;
    if (simd) {
      const info = convInfo('Conv2D', x.shape, filter.shape, a);
      const [batch, height, width, inC] = x.shape;
      const { top, left } = info.padInfo;
      if (winogradApplies(info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, top, left, height, width, info.outHeight, info.outWidth, inC, outC)) {
        const y = runWinograd(backend, simd, x, filter, [batch, height, width, outC], inC, outC, 0);
        if (y) return y;
      }
      const y = runSimd(backend, [batch, info.outHeight, info.outWidth, outC], 0, (at, out) =>
        simd.forward(at(x), at(filter), out, batch, height, width, inC, info.outHeight, info.outWidth, outC, info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, top, left),
      );
      if (y) return y;
    }
    return original.kernelFunc(args);
  };
}

/** dW of a 2-D convolution, as the convolution x^T * dy^T (see the module comment). */
function conv2dBackpropFilter({ inputs, backend, attrs }: KernelArgs): Info {
  const { x, dy } = inputs;
  checkFloat('Conv2DBackpropFilter', { x, dy });
  const filterShape = attrs.filterShape as number[];
  const info = convInfo('Conv2DBackpropFilter', x.shape, filterShape, attrs);
  const [batch, height, width, inC] = x.shape;
  const { outHeight, outWidth, outChannels, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
  if (dy.shape[0] !== batch || dy.shape[1] !== outHeight || dy.shape[2] !== outWidth || dy.shape[3] !== outChannels) {
    throw new Error(`wasm Conv2DBackpropFilter: dy must have shape [${[batch, outHeight, outWidth, outChannels]}], got [${dy.shape}]`);
  }
  if (inC !== filterShape[2]) throw new Error(`wasm Conv2DBackpropFilter: x has ${inC} channels, filterShape [${filterShape}] wants ${filterShape[2]}`);
  const { top, left } = info.padInfo;
  const simd = batch > 0 && (inC % 4 === 0 || outChannels % 4 === 0) ? simdFor(backend) : null;
  if (simd && winogradApplies(kh, kw, sh, sw, top, left, height, width, outHeight, outWidth, inC, outChannels)) {
    const dW = runSimd(backend, filterShape, winogradFilterScratchFloats(inC, outChannels), (at, out, scratch) =>
      simd.winogradFilter(at(x), at(dy), scratch, out, batch, height, width, inC, outChannels),
    );
    if (dW) return dW;
  }
  if (simd) {
    const dW = runSimd(backend, filterShape, 0, (at, out) => simd.filterGrad(at(x), at(dy), out, batch, height, width, inC, outHeight, outWidth, outChannels, kh, kw, sh, sw, top, left));
    if (dW) return dW;
  }
  // Rows of padded x that the last window reaches: (outHeight - 1) sh + kh - top; below that, none is used.
  const bottom = (outHeight - 1) * sh + kh - height - top;
  const right = (outWidth - 1) * sw + kw - width - left;
  return withScratch(backend, (s) => {
    const xT = s.transpose(x, [3, 1, 2, 0]); // [inC, H, W, batch]
    const dyT = s.transpose(dy, [1, 2, 0, 3]); // [outH, outW, batch, outC]
    const dW = convPadded(s, xT, dyT, [top, bottom, left, right], [sh, sw]); // [inC, kh, kw, outC]
    return s.transpose(dW, [1, 2, 0, 3]);
  });
}

/** dx of a 2-D convolution, as a stride-1 convolution of the zero-upsampled dy with the flipped filter. */
function conv2dBackpropInput({ inputs, backend, attrs }: KernelArgs): Info {
  const { dy, filter } = inputs;
  checkFloat('Conv2DBackpropInput', { dy, filter });
  const inputShape = attrs.inputShape as number[];
  const info = convInfo('Conv2DBackpropInput', inputShape, filter.shape, attrs);
  const [batch, height, width] = inputShape;
  const { outHeight, outWidth, outChannels, strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = info;
  if (dy.shape[0] !== batch || dy.shape[1] !== outHeight || dy.shape[2] !== outWidth || dy.shape[3] !== outChannels) {
    throw new Error(`wasm Conv2DBackpropInput: dy must have shape [${[batch, outHeight, outWidth, outChannels]}], got [${dy.shape}]`);
  }
  const { top, left } = info.padInfo;
  const inC = inputShape[3];
  const simd = batch > 0 && inC % 4 === 0 ? simdFor(backend) : null;
  if (simd && winogradApplies(kh, kw, sh, sw, top, left, height, width, outHeight, outWidth, outChannels, inC)) {
    // dx is the 3x3 'same' convolution of dy with the filter flipped in space, channels swapped.
    const dx = runWinograd(backend, simd, dy, filter, inputShape, outChannels, inC, 1);
    if (dx) return dx;
  }
  if (simd) {
    // the scratch: the filter with its channel axes swapped (wT)
    const dx = runSimd(backend, inputShape, filter.shape.reduce((a, b) => a * b, 1), (at, out, wT) =>
      simd.inputGrad(at(dy), at(filter), wT, out, batch, height, width, inC, outHeight, outWidth, outChannels, kh, kw, sh, sw, top, left),
    );
    if (dx) return dx;
  }
  return withScratch(backend, (s) => {
    // [kh, kw, inC, outC] -> flipped in space, channels swapped: [kh, kw, outC, inC].
    const flipped = s.transpose(s.run('Reverse', { x: filter }, { dims: [0, 1] }), [0, 1, 3, 2]);
    let up = dy;
    if (sh > 1 || sw > 1) {
      // Zero-insertion: each dy pixel becomes the top-left of an sh x sw block of zeros.
      const grid = s.reshape(dy, [batch, outHeight, 1, outWidth, 1, outChannels]);
      const padded = s.run(
        'PadV2',
        { x: grid },
        { paddings: [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]], constantValue: 0 },
      );
      up = s.reshape(padded, [batch, outHeight * sh, outWidth * sw, outChannels]);
    }
    const rows = up.shape[1];
    const cols = up.shape[2];
    // Output row i needs up rows i + top - (kh - 1) .. i + top: pad kh - 1 - top above, and below
    // whatever makes the output exactly `height` rows.
    const padTop = kh - 1 - top;
    const padLeft = kw - 1 - left;
    const padBottom = height + kh - 1 - padTop - rows;
    const padRight = width + kw - 1 - padLeft - cols;
    return convPadded(s, up, flipped, [padTop, padBottom, padLeft, padRight], [1, 1]);
  });
}

/** Products at least this big (m k n) take the explicit-transpose route; below it the scalar loop is as fast. */
const TRANSPOSE_MIN_WORK = 4096;

/**
 * BatchMatMul and _FusedMatMul with transposes or batches: make both operands plain [1, m, k] and
 * [1, k, n] products that 4.22 hands to XNNPACK, instead of its scalar fallback.
 */
function wrapMatMul(kernelName: string, original: tf.KernelConfig): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs;
    const { a, b } = inputs;
    const transposeA = Boolean(attrs.transposeA);
    const transposeB = Boolean(attrs.transposeB);
    const rankA = a.shape.length;
    const rankB = b.shape.length;
    const batchA = a.shape.slice(0, -2).reduce((p, d) => p * d, 1);
    const batchB = b.shape.slice(0, -2).reduce((p, d) => p * d, 1);
    const m = transposeA ? a.shape[rankA - 1] : a.shape[rankA - 2];
    const k = transposeA ? a.shape[rankA - 2] : a.shape[rankA - 1];
    const n = transposeB ? b.shape[rankB - 2] : b.shape[rankB - 1];
    const plain = !transposeA && !transposeB && batchA === 1 && batchB === 1;
    const fused = kernelName === '_FusedMatMul';
    // The fused kernel's bias/activation work only in the unbatched XNNPACK path; keep others as they are.
    if (plain || a.dtype !== 'float32' || b.dtype !== 'float32' || m * k * n < TRANSPOSE_MIN_WORK || (fused && (batchA > 1 || batchB > 1))) {
      return original.kernelFunc(args);
    }
    const call = (s: Scratch, x: Info, y: Info): Info =>
      s.track(original.kernelFunc({ inputs: { ...inputs, a: x, b: y }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } } as never) as Info);
    return withScratch(backend, (s) => {
      const swapLast = (rank: number) => [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];
      const a3 = s.reshape(transposeA ? s.transpose(a, swapLast(rankA)) : a, [batchA, m, k]);
      const b3 = s.reshape(transposeB ? s.transpose(b, swapLast(rankB)) : b, [batchB, k, n]);
      const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)).concat([m, n]);
      if (batchA === 1 && batchB === 1) {
        return s.reshape(call(s, a3, b3), outShape);
      }
      if (batchA === 1 || batchB === 1 || batchA === batchB) {
        const batch = Math.max(batchA, batchB);
        if (batchA === 1) {
          // One shared left operand: fold the batch of b into its columns, one product [m, k] x [k, batch n].
          const bWide = s.reshape(s.transpose(b3, [1, 0, 2]), [1, k, batch * n]);
          const prod = call(s, a3, bWide); // [1, m, batch n]
          return s.reshape(s.transpose(s.reshape(prod, [m, batch, n]), [1, 0, 2]), outShape);
        }
        if (batchB === 1) {
          // One shared right operand: stack the batch of a as rows, one product [batch m, k] x [k, n].
          return s.reshape(call(s, s.reshape(a3, [1, batchA * m, k]), b3), outShape);
        }
        // One XNNPACK product per batch entry.
        const parts: Info[] = [];
        for (let i = 0; i < batch; i++) {
          const ai = s.slice(a3, [i, 0, 0], [1, m, k]);
          const bi = s.slice(b3, [i, 0, 0], [1, k, n]);
          parts.push(call(s, ai, bi));
        }
        return s.reshape(s.run('Concat', parts as never, { axis: 0 }), outShape);
      }
      // Broadcasting batch dimensions of different shapes: leave it to the original.
      return s.track(original.kernelFunc({ inputs: { ...inputs, a: s.reshape(a3, [...a.shape.slice(0, -2), m, k]), b: s.reshape(b3, [...b.shape.slice(0, -2), k, n]) }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } } as never) as Info);
    });
  };
}

/**
 * Identity, and Cast to the same dtype: 4.22 copies the whole buffer each time (gradients pass
 * through many); here the output shares the input's buffer, reference-counted like Reshape's
 * (wasm kernels never write into their inputs).
 */
function shareBuffer(original: tf.KernelConfig, applies: (x: Info, attrs: Record<string, unknown>) => boolean): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as KernelArgs & { backend: { incRef(dataId: object): void } };
    const x = inputs.x;
    if (x.dtype === 'string' || !applies(x, attrs ?? {})) return original.kernelFunc(args);
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
  };
}

let filterRegistered = false;

/**
 * Registers the kernels above for the 'wasm' backend. Idempotent; call it again after loading
 * @tensorflow/tfjs-backend-wasm yourself (useBestBackend does) so that the wrappers are installed.
 * opts.wrap = false registers only the missing Conv2DBackpropFilter (for A/B benchmarks).
 */
export function registerWasmKernels(opts: { wrap?: boolean } = {}): void {
  if (!filterRegistered && !tf.getKernel('Conv2DBackpropFilter', BACKEND)) {
    tf.registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName: BACKEND, kernelFunc: conv2dBackpropFilter as unknown as tf.KernelFunc });
    filterRegistered = true;
  }
  // wrap: false adds only the missing kernel (the A/B benchmark's "before").
  if (opts.wrap === false) return;
  const wrappers: Record<string, (original: tf.KernelConfig) => tf.KernelFunc> = {
    Conv2D: (o) => wrapConv2D(o),
    Conv2DBackpropInput: () => conv2dBackpropInput as unknown as tf.KernelFunc,
    BatchMatMul: (o) => wrapMatMul('BatchMatMul', o),
    _FusedMatMul: (o) => wrapMatMul('_FusedMatMul', o),
    Identity: (o) => shareBuffer(o, () => true),
    Cast: (o) => shareBuffer(o, (x, attrs) => attrs.dtype === x.dtype),
    Sum: (o) => sumLeading(o),
    SplitV: (o) => splitVRows(o),
  };
  for (const [name, wrap] of Object.entries(wrappers)) {
    if (originals.has(name)) continue;
    const original = tf.getKernel(name, BACKEND);
    if (!original) continue; // the wasm package is not loaded yet
    originals.set(name, original);
    tf.unregisterKernel(name, BACKEND);
    // setupFunc/disposeFunc stay the original's: the engine runs them when the backend starts.
    tf.registerKernel({ ...original, kernelFunc: wrap(original) });
  }
}

/** True once the wrappers of the wasm package's kernels are in place (the package was loaded). */
export function wasmKernelsInstalled(): boolean {
  return originals.size > 0 && tf.getKernel('Conv2DBackpropFilter', BACKEND) !== undefined;
}

/**
 * Puts the wasm package's own kernels back and removes Conv2DBackpropFilter: the state before
 * registerWasmKernels. For A/B benchmarks and tests only.
 */
export function unregisterWasmKernels(): void {
  for (const [name, original] of originals) {
    tf.unregisterKernel(name, BACKEND);
    tf.registerKernel(original);
  }
  originals.clear();
  if (filterRegistered) {
    tf.unregisterKernel('Conv2DBackpropFilter', BACKEND);
    filterRegistered = false;
  }
}
