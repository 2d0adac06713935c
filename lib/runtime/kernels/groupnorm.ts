/**
 * GroupNorm, its per-channel scale and shift, a per-(example, channel) bias before it and the SiLU
 * after it, as ONE kernel forward and ONE kernel backward, for the wasm backend: the project's wasm
 * SIMD code (c/groupnorm.c via ./simd) when the channel count is a multiple of 4, else JavaScript
 * loops over the wasm heap (statistics in float64 in both). Written as tensor ops (lib/models/layers.ts) the same thing costs ~20
 * element-wise and reduction kernels forward and ~40 backward, each a full memory pass, and on wasm
 * every reduction over non-innermost axes adds a Transpose; in a U-Net step they took more time
 * than the convolutions.
 *
 * For x [N, H, W, C] (NHWC), bias [N, C], gamma and beta [C], G groups of C/G channels, per example
 * n and group g (statistics in float64, each output rounded to float32 once):
 *   z = x + bias[n, c],  mean, var = moments of z over (H, W, the group's channels) (biased),
 *   rstd = 1 / sqrt(var + eps),  xhat = (z - mean) rstd,  u = gamma[c] xhat + beta[c],
 *   y = u sigmoid(u).
 * Backward, for dy: du = dy s (1 + u (1 - s)) with s = sigmoid(u); dgamma = sum du xhat and
 * dbeta = sum du over (N, H, W); dxhat = du gamma; dz = rstd (dxhat - mean_g(dxhat) - xhat
 * mean_g(dxhat xhat)); dx = dz; dbias[n, c] = sum of dz over (H, W).
 *
 * FORWARD: inputs x, bias, gamma, beta; attrs groups, eps; outputs y, mean [N, G], rstd [N, G] and
 * s = sigmoid(u) (kept for the backward pass, which then needs no exp).
 * BACKWARD: inputs dy, x, bias, gamma, beta, mean, rstd, s; attrs groups; outputs dx, dbias, dgamma, dbeta.
 */
import * as tf from '@tensorflow/tfjs';
import { SimdKernels, simdKernels } from './simd';

/** The forward kernel's name, registered for 'wasm'. */
export const GROUP_NORM_SILU = 'DiffusionGroupNormSilu';
/** The backward kernel's name, registered for 'wasm'. */
export const GROUP_NORM_SILU_GRAD = 'DiffusionGroupNormSiluGrad';

type Info = tf.TensorInfo;

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): Info;
  typedArrayFromHeap(t: Info): Float32Array;
  disposeData(dataId: object): boolean;
  getMemoryOffset(dataId: object): number;
  wasm?: { asm?: { memory?: WebAssembly.Memory } };
}

/** Which code runs the kernels: 'auto' (SIMD where C is a multiple of 4, else JavaScript) or 'js' (JavaScript always; tests, A/B benchmarks). */
export type GroupNormRoute = 'auto' | 'js';
let normRoute: GroupNormRoute = 'auto';

/** Forces the route of both GroupNorm-SiLU kernels on wasm; returns the previous setting. */
export function setGroupNormRoute(route: GroupNormRoute): GroupNormRoute {
  if (route !== 'auto' && route !== 'js') throw new Error(`setGroupNormRoute: route must be 'auto' or 'js', got '${String(route)}'`);
  const before = normRoute;
  normRoute = route;
  return before;
}

/** The SIMD kernels when the route and the channel count allow them, else null. */
function simdFor(b: WasmBackendLike, C: number): SimdKernels | null {
  return normRoute === 'auto' && C % 4 === 0 ? simdKernels(b.wasm?.asm?.memory) : null;
}

/** Scratch for the SIMD kernels: 8 C floats and 4 C doubles (as 8 C floats), inside the heap. */
function scratch(b: WasmBackendLike, C: number): [Info, Info] {
  return [b.makeOutput([8 * C], 'float32'), b.makeOutput([8 * C], 'float32')];
}

/** Shapes of one call, checked; throws an Error naming the input and the shape it needs. */
function checkShapes(kernel: string, inputs: Record<string, Info>, groups: number): { N: number; P: number; C: number; G: number } {
  const { x, bias, gamma, beta } = inputs;
  for (const [name, t] of Object.entries(inputs)) {
    if (!t) throw new Error(`${kernel}: input ${name} is missing`);
    if (t.dtype !== 'float32') throw new Error(`${kernel}: ${name} must be float32, got ${t.dtype}`);
  }
  if (x.shape.length !== 4) throw new Error(`${kernel}: x must have shape [batch, height, width, channels], got [${x.shape}]`);
  const [N, H, W, C] = x.shape;
  if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0) {
    throw new Error(`${kernel}: groups must be an integer in [1, ${C}] that divides the ${C} channels, got ${groups}`);
  }
  const want = (name: string, t: Info, shape: number[]) => {
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${kernel}: ${name} must have shape [${shape}], got [${t.shape}]`);
    }
  };
  want('bias', bias, [N, C]);
  want('gamma', gamma, [C]);
  want('beta', beta, [C]);
  if (inputs.dy) want('dy', inputs.dy, x.shape);
  if (inputs.s) want('s', inputs.s, x.shape);
  for (const name of ['mean', 'rstd']) if (inputs[name]) want(name, inputs[name], [N, groups]);
  return { N, P: H * W, C, G: groups };
}

const forward: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const b = backend as unknown as WasmBackendLike;
  const ins = inputs as unknown as Record<string, Info>;
  const groups = attrs?.groups as number;
  const eps = attrs?.eps as number;
  if (!(typeof eps === 'number' && eps > 0 && Number.isFinite(eps))) throw new Error(`${GROUP_NORM_SILU}: eps must be a finite number > 0, got ${eps}`);
  const { N, P, C, G } = checkShapes(GROUP_NORM_SILU, ins, groups);
  const simd = N > 0 && P > 0 ? simdFor(b, C) : null;
  if (simd) {
    // Every output first: an allocation may grow the heap; offsets are taken after.
    const outs = [b.makeOutput(ins.x.shape, 'float32'), b.makeOutput([N, G], 'float32'), b.makeOutput([N, G], 'float32'), b.makeOutput(ins.x.shape, 'float32')];
    const [facc, dacc] = scratch(b, C);
    const at = (t: Info) => b.getMemoryOffset(t.dataId);
    const [y, mean, rstd, sOut] = outs;
    const rc = simd.groupNormSilu(at(ins.x), at(ins.bias), at(ins.gamma), at(ins.beta), at(y), at(mean), at(rstd), at(sOut), at(facc), at(dacc), N, P, C, G, eps);
    b.disposeData(facc.dataId);
    b.disposeData(dacc.dataId);
    if (rc === 0) return outs;
    for (const t of outs) b.disposeData(t.dataId);
  }
  // Every output first: an allocation may grow (and so detach) the heap views.
  const sigmoid = tf.getKernel('Sigmoid', 'wasm');
  if (!sigmoid) throw new Error(`${GROUP_NORM_SILU}: the wasm backend has no Sigmoid kernel (is @tensorflow/tfjs-backend-wasm loaded?)`);
  const yOut = b.makeOutput(ins.x.shape, 'float32');
  const uOut = b.makeOutput(ins.x.shape, 'float32');
  const meanOut = b.makeOutput([N, G], 'float32');
  const rstdOut = b.makeOutput([N, G], 'float32');
  const x = b.typedArrayFromHeap(ins.x);
  const bias = b.typedArrayFromHeap(ins.bias);
  const gamma = b.typedArrayFromHeap(ins.gamma);
  const beta = b.typedArrayFromHeap(ins.beta);
  const u = b.typedArrayFromHeap(uOut);
  const meanArr = b.typedArrayFromHeap(meanOut);
  const rstdArr = b.typedArrayFromHeap(rstdOut);
  const cg = C / G;
  const count = P * cg;
  const sum = new Float64Array(G);
  const mean = new Float64Array(G);
  const scale = new Float64Array(C);
  const shift = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const base = n * P * C;
    const bn = n * C;
    // Two passes (mean, then squared deviations): no cancellation for a large mean.
    sum.fill(0);
    for (let p = 0; p < P; p++) {
      const row = base + p * C;
      for (let g = 0, c = 0; g < G; g++) {
        let acc = 0;
        for (const end = c + cg; c < end; c++) acc += x[row + c] + bias[bn + c];
        sum[g] += acc;
      }
    }
    for (let g = 0; g < G; g++) mean[g] = sum[g] / count;
    sum.fill(0);
    for (let p = 0; p < P; p++) {
      const row = base + p * C;
      for (let g = 0, c = 0; g < G; g++) {
        const shiftG = mean[g];
        let acc = 0;
        for (const end = c + cg; c < end; c++) {
          const d = x[row + c] + bias[bn + c] - shiftG;
          acc += d * d;
        }
        sum[g] += acc;
      }
    }
    for (let g = 0; g < G; g++) {
      const rstd = 1 / Math.sqrt(sum[g] / count + eps);
      meanArr[n * G + g] = mean[g];
      rstdArr[n * G + g] = rstd;
      // u = gamma (z - mean) rstd + beta = scale z + shift, per channel.
      for (let c = g * cg; c < (g + 1) * cg; c++) {
        scale[c] = gamma[c] * rstd;
        shift[c] = beta[c] + scale[c] * (bias[bn + c] - mean[g]);
      }
    }
    for (let p = 0; p < P; p++) {
      const row = base + p * C;
      for (let c = 0; c < C; c++) u[row + c] = scale[c] * x[row + c] + shift[c];
    }
  }
  // The sigmoid goes to the package's own (XNNPACK SIMD) kernel: Math.exp in JavaScript costs
  // ~10 ns an element, more than the rest of both passes together.
  let sOut: Info;
  try {
    sOut = sigmoid.kernelFunc({ inputs: { x: uOut }, backend, attrs: {} } as never) as Info;
  } catch (err) {
    for (const t of [yOut, uOut, meanOut, rstdOut]) b.disposeData(t.dataId);
    throw err;
  }
  const uv = b.typedArrayFromHeap(uOut);
  const sv = b.typedArrayFromHeap(sOut);
  const yv = b.typedArrayFromHeap(yOut);
  for (let i = 0; i < uv.length; i++) yv[i] = uv[i] * sv[i];
  b.disposeData(uOut.dataId);
  return [yOut, meanOut, rstdOut, sOut];
};

const backward: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const b = backend as unknown as WasmBackendLike;
  const ins = inputs as unknown as Record<string, Info>;
  const groups = attrs?.groups as number;
  const { N, P, C, G } = checkShapes(GROUP_NORM_SILU_GRAD, ins, groups);
  const simd = N > 0 && P > 0 ? simdFor(b, C) : null;
  if (simd) {
    const outs = [b.makeOutput(ins.x.shape, 'float32'), b.makeOutput([N, C], 'float32'), b.makeOutput([C], 'float32'), b.makeOutput([C], 'float32')];
    const [facc, dacc] = scratch(b, C);
    const at = (t: Info) => b.getMemoryOffset(t.dataId);
    const [dxO, dbO, dgO, dbeO] = outs;
    const rc = simd.groupNormSiluGrad(
      at(ins.dy), at(ins.x), at(ins.bias), at(ins.gamma), at(ins.beta), at(ins.mean), at(ins.rstd), at(ins.s),
      at(dxO), at(dbO), at(dgO), at(dbeO), at(facc), at(dacc), N, P, C, G,
    );
    b.disposeData(facc.dataId);
    b.disposeData(dacc.dataId);
    if (rc === 0) return outs;
    for (const t of outs) b.disposeData(t.dataId);
  }
  const dxOut = b.makeOutput(ins.x.shape, 'float32');
  const dbiasOut = b.makeOutput([N, C], 'float32');
  const dgammaOut = b.makeOutput([C], 'float32');
  const dbetaOut = b.makeOutput([C], 'float32');
  const dy = b.typedArrayFromHeap(ins.dy);
  const x = b.typedArrayFromHeap(ins.x);
  const bias = b.typedArrayFromHeap(ins.bias);
  const gamma = b.typedArrayFromHeap(ins.gamma);
  const beta = b.typedArrayFromHeap(ins.beta);
  const meanArr = b.typedArrayFromHeap(ins.mean);
  const rstdArr = b.typedArrayFromHeap(ins.rstd);
  const sig = b.typedArrayFromHeap(ins.s);
  const dx = b.typedArrayFromHeap(dxOut);
  const dbias = b.typedArrayFromHeap(dbiasOut);
  const dgammaArr = b.typedArrayFromHeap(dgammaOut);
  const dbetaArr = b.typedArrayFromHeap(dbetaOut);
  const cg = C / G;
  const count = P * cg;
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  const m1 = new Float64Array(G);
  const m2 = new Float64Array(G);
  const dbn = new Float64Array(C);
  // Per example: xhat and dxhat = du gamma, kept for the second pass.
  const xhat = new Float64Array(P * C);
  const dxhat = new Float64Array(P * C);
  const chanMean = new Float64Array(C);
  const chanRstd = new Float64Array(C);
  for (let n = 0; n < N; n++) {
    const base = n * P * C;
    const bn = n * C;
    for (let c = 0; c < C; c++) {
      const g = (c / cg) | 0;
      chanMean[c] = meanArr[n * G + g] - bias[bn + c];
      chanRstd[c] = rstdArr[n * G + g];
    }
    m1.fill(0);
    m2.fill(0);
    for (let p = 0; p < P; p++) {
      const row = base + p * C;
      const local = p * C;
      for (let g = 0, c = 0; g < G; g++) {
        let a1 = 0;
        let a2 = 0;
        for (const end = c + cg; c < end; c++) {
          const h = (x[row + c] - chanMean[c]) * chanRstd[c];
          const u = gamma[c] * h + beta[c];
          const s = sig[row + c];
          const du = dy[row + c] * s * (1 + u * (1 - s));
          dgamma[c] += du * h;
          dbeta[c] += du;
          const dh = du * gamma[c];
          xhat[local + c] = h;
          dxhat[local + c] = dh;
          a1 += dh;
          a2 += dh * h;
        }
        m1[g] += a1;
        m2[g] += a2;
      }
    }
    for (let g = 0; g < G; g++) {
      m1[g] /= count;
      m2[g] /= count;
    }
    dbn.fill(0);
    for (let p = 0; p < P; p++) {
      const row = base + p * C;
      const local = p * C;
      for (let g = 0, c = 0; g < G; g++) {
        const mg1 = m1[g];
        const mg2 = m2[g];
        for (const end = c + cg; c < end; c++) {
          const dz = chanRstd[c] * (dxhat[local + c] - mg1 - xhat[local + c] * mg2);
          dx[row + c] = dz;
          dbn[c] += dz;
        }
      }
    }
    for (let c = 0; c < C; c++) dbias[bn + c] = dbn[c];
  }
  for (let c = 0; c < C; c++) {
    dgammaArr[c] = dgamma[c];
    dbetaArr[c] = dbeta[c];
  }
  return [dxOut, dbiasOut, dgammaOut, dbetaOut];
};

/** Registers both kernels for 'wasm' (idempotent; the wasm package need not be loaded). */
export function registerGroupNormKernels(): void {
  if (!tf.getKernel(GROUP_NORM_SILU, 'wasm')) tf.registerKernel({ kernelName: GROUP_NORM_SILU, backendName: 'wasm', kernelFunc: forward });
  if (!tf.getKernel(GROUP_NORM_SILU_GRAD, 'wasm')) tf.registerKernel({ kernelName: GROUP_NORM_SILU_GRAD, backendName: 'wasm', kernelFunc: backward });
}

/** True when the current backend has the fused GroupNorm-SiLU kernels (both directions). */
export function hasGroupNormSiluKernel(): boolean {
  const backend = tf.getBackend();
  return tf.getKernel(GROUP_NORM_SILU, backend) !== undefined && tf.getKernel(GROUP_NORM_SILU_GRAD, backend) !== undefined;
}

/**
 * silu(groupNorm(x + bias[n, c]) gamma + beta) through the two kernels, differentiable in all four
 * inputs. Call only where hasGroupNormSiluKernel(); lib/models/layers.ts's groupNormSilu picks.
 */
export function fusedGroupNormSilu(x: tf.Tensor4D, bias: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, groups: number, eps: number): tf.Tensor4D {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, bi, gi, be] = args as tf.Tensor[];
    const save = args[4] as tf.GradSaveFunc;
    const [y, mean, rstd, sig] = tf.engine().runKernel(GROUP_NORM_SILU, { x: xi, bias: bi, gamma: gi, beta: be }, { groups, eps }) as tf.Tensor[];
    save([xi, bi, gi, be, mean, rstd, sig]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sb, sg, sbe, sm, sr, ss] = saved;
        return tf.engine().runKernel(GROUP_NORM_SILU_GRAD, { dy, x: sx, bias: sb, gamma: sg, beta: sbe, mean: sm, rstd: sr, s: ss }, { groups }) as tf.Tensor[];
      },
    };
  });
  return op(x, bias, gamma, beta) as tf.Tensor4D;
}
