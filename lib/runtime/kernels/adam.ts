/**
 * One kernel for a whole Adam step (used by FusedAdam, lib/training/optim.ts). On the two CPU backends (here): a
 * single pass over the weights, gradients and flat moment vectors in JavaScript, reading and writing
 * the backend's own memory (the wasm heap, the cpu backend's arrays). On these backends an
 * element-wise kernel costs 5-10 us to launch plus ~1 ns per element and one memory pass each; Adam
 * written as tensor ops is ~15 of them per variable, this is one pass for all of them.
 *
 * Inputs: m, v (the flat moments, [P]), w0..w{n-1} (the variables) and g0..g{n-1} (their
 * gradients). Attributes: count = n, lr, beta1, beta2, epsilon, t (the 1-based step). Outputs:
 * m', v', w0'..w{n-1}'. Per element, in float64, rounded to float32 once:
 *   m' = beta1 m + (1 - beta1) g,  v' = beta2 v + (1 - beta2) g^2,
 *   w' = w - lr (m' / (1 - beta1^t)) / (sqrt(v' / (1 - beta2^t)) + epsilon).
 */
import * as tf from '@tensorflow/tfjs';

/** The kernel's name, as registered for 'wasm' and 'cpu' (here) and 'webgpu' (lib/runtime/kernels/webgpu.ts). */
export const ADAM_UPDATE = 'DiffusionFusedAdamUpdate';

/** Attributes of the kernel. */
export interface AdamUpdateAttrs {
  count: number;
  lr: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  t: number;
}

type Info = tf.TensorInfo;

/** How one backend lends its float32 memory to the update loop. */
interface Memory {
  /** A fresh float32 output of `shape`. */
  alloc(shape: number[]): Info;
  /** A Float32Array over t's data (valid until the next alloc). */
  view(t: Info): Float32Array;
}

/** Throws, naming the attribute or input, unless attrs and inputs describe one Adam step (shared by every backend's kernel). */
export function checkAdamAttrs(attrs: AdamUpdateAttrs, inputs: Record<string, Info>): void {
  const { count, t } = attrs;
  if (!Number.isInteger(count) || count < 1) throw new Error(`${ADAM_UPDATE}: count must be an integer >= 1, got ${count}`);
  if (!Number.isInteger(t) || t < 1) throw new Error(`${ADAM_UPDATE}: t must be an integer >= 1, got ${t}`);
  const { m, v } = inputs;
  let total = 0;
  for (let i = 0; i < count; i++) {
    const w = inputs[`w${i}`];
    const g = inputs[`g${i}`];
    if (!w || !g) throw new Error(`${ADAM_UPDATE}: inputs w${i} and g${i} are required (count = ${count})`);
    const size = w.shape.reduce((a, b) => a * b, 1);
    if (g.shape.reduce((a, b) => a * b, 1) !== size) throw new Error(`${ADAM_UPDATE}: g${i} [${g.shape}] does not match w${i} [${w.shape}]`);
    total += size;
  }
  for (const [name, x] of Object.entries(inputs)) {
    if (x.dtype !== 'float32') throw new Error(`${ADAM_UPDATE}: ${name} must be float32, got ${x.dtype}`);
  }
  if (m.shape.length !== 1 || m.shape[0] !== total || v.shape.length !== 1 || v.shape[0] !== total) {
    throw new Error(`${ADAM_UPDATE}: m and v must have shape [${total}] (all variables), got [${m.shape}] and [${v.shape}]`);
  }
}

function adamUpdate(inputs: Record<string, Info>, attrs: AdamUpdateAttrs, mem: Memory): Info[] {
  checkAdamAttrs(attrs, inputs);
  const { count, lr, beta1, beta2, epsilon, t } = attrs;
  const { m, v } = inputs;
  // Every output first: on wasm an allocation may grow (and so detach) the heap views.
  const mOut = mem.alloc(m.shape);
  const vOut = mem.alloc(v.shape);
  const wOut: Info[] = [];
  for (let i = 0; i < count; i++) wOut.push(mem.alloc(inputs[`w${i}`].shape));
  const mIn = mem.view(m);
  const vIn = mem.view(v);
  const mNew = mem.view(mOut);
  const vNew = mem.view(vOut);
  const c1 = 1 - beta1;
  const c2 = 1 - beta2;
  const bc1 = 1 - beta1 ** t;
  const bc2 = 1 - beta2 ** t;
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const w = mem.view(inputs[`w${i}`]);
    const g = mem.view(inputs[`g${i}`]);
    const out = mem.view(wOut[i]);
    const n = w.length;
    for (let j = 0; j < n; j++) {
      const k = offset + j;
      const gj = g[j];
      const mk = beta1 * mIn[k] + c1 * gj;
      const vk = beta2 * vIn[k] + c2 * gj * gj;
      mNew[k] = mk;
      vNew[k] = vk;
      out[j] = w[j] - (lr * (mk / bc1)) / (Math.sqrt(vk / bc2) + epsilon);
    }
    offset += n;
  }
  return [mOut, vOut, ...wOut];
}

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): Info;
  typedArrayFromHeap(t: Info): Float32Array;
}

interface CpuBackendLike {
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): Info;
  readSync(dataId: object): Float32Array;
}

const wasmKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const b = backend as unknown as WasmBackendLike;
  return adamUpdate(inputs as unknown as Record<string, Info>, attrs as unknown as AdamUpdateAttrs, {
    alloc: (shape) => b.makeOutput(shape, 'float32'),
    view: (t) => b.typedArrayFromHeap(t),
  });
};

const cpuKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const b = backend as unknown as CpuBackendLike;
  const arrays = new Map<Info, Float32Array>();
  return adamUpdate(inputs as unknown as Record<string, Info>, attrs as unknown as AdamUpdateAttrs, {
    alloc: (shape) => {
      const values = new Float32Array(shape.reduce((a, d) => a * d, 1));
      const info = b.makeTensorInfo(shape, 'float32', values);
      arrays.set(info, values);
      return info;
    },
    view: (t) => arrays.get(t) ?? (b.readSync(t.dataId) as Float32Array),
  });
};

/** Registers the Adam-step kernel for 'wasm' and 'cpu' (idempotent; neither backend package is loaded). */
export function registerAdamKernels(): void {
  for (const [backendName, kernelFunc] of [
    ['wasm', wasmKernel],
    ['cpu', cpuKernel],
  ] as const) {
    if (!tf.getKernel(ADAM_UPDATE, backendName)) tf.registerKernel({ kernelName: ADAM_UPDATE, backendName, kernelFunc });
  }
}

/** True when the current backend has the one-kernel Adam step. */
export function hasAdamKernel(): boolean {
  return tf.getKernel(ADAM_UPDATE, tf.getBackend()) !== undefined;
}
