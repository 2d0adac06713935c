/**
 * The project's own wasm SIMD kernel (lib/runtime/kernels/c/conv2d_grad.c, built by build-wasm.js
 * into conv-simd-wasm.ts): the filter gradient of a 2-D convolution, run straight on tfjs-wasm's
 * heap, and the input gradient. The module imports the backend's WebAssembly.Memory, so x, dy and dW are passed as offsets
 * into it and nothing is copied. One instance per memory, made on first use.
 *
 * Instantiation is synchronous (kernels are). Node allows that for any size; a browser's main
 * thread may refuse to compile a module over 4 KB synchronously, and then an asynchronous compile
 * is started and the callers take the XNNPACK route until it is done.
 */
import { CONV_SIMD_WASM_BASE64 } from './conv-simd-wasm';

/** The module's exports: each returns 0 when it wrote its output, 1 when the channel counts do not suit it. */
type FilterGrad = (
  x: number, dy: number, dw: number, batch: number, inH: number, inW: number, inC: number,
  outH: number, outW: number, outC: number, kh: number, kw: number, sh: number, sw: number, padTop: number, padLeft: number,
) => number;
type InputGrad = (
  dy: number, w: number, wT: number, dx: number, batch: number, inH: number, inW: number, inC: number,
  outH: number, outW: number, outC: number, kh: number, kw: number, sh: number, sw: number, padTop: number, padLeft: number,
) => number;

/** The two conv-gradient kernels of one instance (all arguments are byte offsets and sizes). */
export interface SimdConvKernels {
  /** dW [kh, kw, inC, outC]; needs inC or outC a multiple of 4. */
  filterGrad: FilterGrad;
  /** dx [batch, inH, inW, inC], with a scratch of kh kw inC outC floats; needs inC a multiple of 4. */
  inputGrad: InputGrad;
}

let compiled: WebAssembly.Module | null = null;
let compiling = false;
let failure: string | null = null;
const instances = new WeakMap<WebAssembly.Memory, SimdConvKernels>();

function decode(base64: string): Uint8Array<ArrayBuffer> {
  const s = atob(base64);
  const out = new Uint8Array(new ArrayBuffer(s.length));
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function moduleNow(): WebAssembly.Module | null {
  if (compiled || failure) return compiled;
  const bytes = decode(CONV_SIMD_WASM_BASE64);
  try {
    compiled = new WebAssembly.Module(bytes);
  } catch (err) {
    // A RangeError is a browser's limit on synchronous compiles; anything else (no SIMD) is final.
    if (!(err instanceof RangeError)) {
      failure = `the SIMD module does not compile here: ${(err as Error).message}`;
    } else if (!compiling) {
      compiling = true;
      WebAssembly.compile(bytes).then(
        (m) => (compiled = m),
        (e: Error) => (failure = `the SIMD module does not compile here: ${e.message}`),
      );
    }
  }
  return compiled;
}

/**
 * The kernels over `memory`, or null when this runtime cannot run the module (no wasm SIMD, a
 * shared memory of a threaded backend, or a browser compile still under way).
 */
export function simdConvKernels(memory: WebAssembly.Memory | undefined): SimdConvKernels | null {
  if (!memory) return null;
  const known = instances.get(memory);
  if (known) return known;
  // The module's memory import is declared unshared; a threaded backend's SharedArrayBuffer heap would not link.
  if (typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer) return null;
  const mod = moduleNow();
  if (!mod) return null;
  const { exports } = new WebAssembly.Instance(mod, { env: { memory } });
  const kernels = { filterGrad: exports.conv2d_backprop_filter as FilterGrad, inputGrad: exports.conv2d_backprop_input as InputGrad };
  instances.set(memory, kernels);
  return kernels;
}

/** Why simdConvKernels returns null in this runtime, or null when the module compiled. */
export function simdUnavailableReason(): string | null {
  moduleNow();
  return compiled ? null : (failure ?? 'the SIMD module is still compiling');
}
