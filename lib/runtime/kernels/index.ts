/**
 * Kernels the library adds to TensorFlow.js backends: the wasm backend's missing and faster
 * kernels (./wasm, ./layout; the convolution and GroupNorm-SiLU in wasm SIMD built from C, ./simd), the one-kernel Adam step on cpu, wasm (./adam) and webgpu (./webgpu),
 * GroupNorm (+ bias, + SiLU) as one kernel forward and one backward on wasm (./groupnorm), and as
 * one webgpu dispatch for inference (./groupnorm-webgpu).
 * Importing this module registers nothing; registerKernels() does, and lib/runtime/backend.ts
 * calls it whenever it sets a backend up. No backend package is loaded here.
 */
import { registerAdamKernels } from './adam';
import { registerGroupNormKernels } from './groupnorm';
import { registerGroupNormKernel } from './groupnorm-webgpu';
import { registerWasmKernels } from './wasm';
import { registerWebgpuKernels } from './webgpu';

/**
 * Registers every kernel of this module with tfjs (idempotent). Call it again after loading
 * @tensorflow/tfjs-backend-wasm yourself, so that the wrappers of its kernels are installed.
 */
export function registerKernels(): void {
  registerWasmKernels();
  registerAdamKernels();
  registerWebgpuKernels();
  registerGroupNormKernel();
  registerGroupNormKernels();
}

export { registerWasmKernels, setConvRoute, wasmKernelsInstalled } from './wasm';
export { simdCalls, simdUnavailableReason } from './simd';
export { ADAM_UPDATE, hasAdamKernel, registerAdamKernels } from './adam';
export { adamVariablesPerDispatch, countDispatches, registerWebgpuKernels } from './webgpu';
export { GROUP_NORM, fusedGroupNorm, registerGroupNormKernel } from './groupnorm-webgpu';
export { GROUP_NORM_SILU, GROUP_NORM_SILU_GRAD, registerGroupNormKernels, setGroupNormRoute } from './groupnorm';
