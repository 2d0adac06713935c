/**
 * Kernels the library adds to TensorFlow.js backends: the wasm backend's missing and faster
 * kernels (./wasm), the one-kernel Adam step on cpu, wasm (./adam) and webgpu (./webgpu), and
 * GroupNorm (+ bias, + SiLU) as one webgpu dispatch (./groupnorm).
 * Importing this module registers nothing; registerKernels() does, and lib/runtime/backend.ts
 * calls it whenever it sets a backend up. No backend package is loaded here.
 */
import { registerAdamKernels } from './adam';
import { registerWasmKernels } from './wasm';
import { registerGroupNormKernel } from './groupnorm';
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
}

export { registerWasmKernels, wasmKernelsInstalled } from './wasm';
export { ADAM_UPDATE, hasAdamKernel, registerAdamKernels } from './adam';
export { adamVariablesPerDispatch, countDispatches, registerWebgpuKernels } from './webgpu';
export { GROUP_NORM, fusedGroupNorm, registerGroupNormKernel } from './groupnorm';
