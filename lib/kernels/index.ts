/**
 * Kernels the library adds to TensorFlow.js backends. Importing this module registers them (see
 * lib/kernels/wasm.ts); it loads no backend package itself.
 */
import { registerWasmKernels } from './wasm';

registerWasmKernels();

export { registerWasmKernels, wasmKernelsInstalled } from './wasm';
