/**
 * Kernels the library adds to TensorFlow.js backends. Importing this module registers them (see
 * lib/runtime/kernels/wasm.ts); it loads no backend package itself.
 */
import { registerAdamKernels } from './adam';
import { registerGroupNormKernels } from './groupnorm';
import { registerWasmKernels } from './wasm';

registerWasmKernels();
registerAdamKernels();
registerGroupNormKernels();

export { registerWasmKernels, wasmKernelsInstalled } from './wasm';
export { ADAM_UPDATE, registerAdamKernels } from './adam';
export { GROUP_NORM_SILU, GROUP_NORM_SILU_GRAD, registerGroupNormKernels } from './groupnorm';
