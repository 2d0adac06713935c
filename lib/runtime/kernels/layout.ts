/**
 * Two wasm kernels of 4.22 that pay for a memory layout they could avoid, replaced for float32 by
 * one JavaScript pass over the wasm heap (lib/runtime/kernels/wasm.ts installs them over the
 * package's own; every other case goes to the original):
 *
 * - Sum over leading axes (the bias gradient of every conv and dense layer: dy [N, H, W, C] summed
 *   to [C]): 4.22 first transposes the reduced axes innermost, a full copy; here the rows are added
 *   into one float64 accumulator per output element, reading dy once in memory order.
 * - SplitV (the gradient of the U-Net's channel concat): 4.22 runs one general strided Slice per
 *   output; here each output's rows are copied straight out of x.
 */
import * as tf from '@tensorflow/tfjs';

type Info = tf.TensorInfo;

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): Info;
  typedArrayFromHeap(t: Info): Float32Array;
}

type Args = { inputs: Record<string, Info>; backend: WasmBackendLike; attrs: Record<string, unknown> };

const prod = (xs: number[]): number => xs.reduce((a, b) => a * b, 1);

/** The reduced axes of a Sum when they are 0..j-1 for some 0 < j < rank, else undefined. */
export function leadingAxes(axis: unknown, rank: number): number | undefined {
  const list = (Array.isArray(axis) ? axis : [axis]).map((a) => (typeof a === 'number' && a < 0 ? a + rank : a));
  if (list.some((a) => typeof a !== 'number' || !Number.isInteger(a))) return undefined;
  const sorted = [...new Set(list as number[])].sort((a, b) => a - b);
  if (sorted.length === 0 || sorted.length >= rank) return undefined;
  return sorted.every((a, i) => a === i) ? sorted.length : undefined;
}

/** Sum that reduces leading axes in one pass; anything else goes to `original`. */
export function sumLeading(original: tf.KernelConfig): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as Args;
    const x = inputs.x;
    const j = x.dtype === 'float32' ? leadingAxes(attrs.axis, x.shape.length) : undefined;
    if (j === undefined || prod(x.shape) === 0) return original.kernelFunc(args);
    const rows = prod(x.shape.slice(0, j));
    const rest = x.shape.slice(j);
    const width = prod(rest);
    const outShape = attrs.keepDims ? [...x.shape.slice(0, j).map(() => 1), ...rest] : rest;
    const out = backend.makeOutput(outShape, 'float32');
    const src = backend.typedArrayFromHeap(x);
    const dst = backend.typedArrayFromHeap(out);
    const acc = new Float64Array(width);
    for (let r = 0, o = 0; r < rows; r++, o += width) {
      for (let k = 0; k < width; k++) acc[k] += src[o + k];
    }
    dst.set(acc);
    return out;
  };
}

/** SplitV as row copies; anything but float32 goes to `original`. */
export function splitVRows(original: tf.KernelConfig): tf.KernelFunc {
  return (args) => {
    const { inputs, backend, attrs } = args as unknown as Args;
    const x = inputs.x;
    if (x.dtype !== 'float32') return original.kernelFunc(args);
    const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, attrs.numOrSizeSplits as number | number[], axis) as number[];
    const outer = prod(x.shape.slice(0, axis));
    const inner = prod(x.shape.slice(axis + 1));
    const stride = x.shape[axis] * inner;
    // Every output first: an allocation may grow (and so detach) the heap views.
    const outs = sizes.map((s) => {
      const shape = x.shape.slice();
      shape[axis] = s;
      return backend.makeOutput(shape, 'float32');
    });
    const src = backend.typedArrayFromHeap(x);
    let begin = 0;
    sizes.forEach((s, i) => {
      const dst = backend.typedArrayFromHeap(outs[i]);
      const chunk = s * inner;
      for (let r = 0; r < outer; r++) {
        const from = r * stride + begin;
        const to = r * chunk;
        if (chunk > 64) dst.set(src.subarray(from, from + chunk), to);
        else for (let k = 0; k < chunk; k++) dst[to + k] = src[from + k];
      }
      begin += chunk;
    });
    return outs;
  };
}
