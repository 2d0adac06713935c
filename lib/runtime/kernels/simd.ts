/**
 * The project's own wasm SIMD kernels (lib/runtime/kernels/c/conv2d.c and groupnorm.c, built by
 * build-wasm.js into simd-wasm.ts): a 2-D convolution forward (direct, and Winograd's F(2x2, 3x3)
 * for 3x3 stride-1 'same' ones, which the input gradient uses too), its filter gradient (direct, and
 * Winograd's F(3x3, 2x2) for the same ones) and input gradient, and
 * GroupNorm-SiLU forward and backward, run straight on tfjs-wasm's heap. The module imports the
 * backend's WebAssembly.Memory, so every tensor is passed as a byte offset into it and nothing is
 * copied. One instance per memory, made on first use.
 *
 * Instantiation is synchronous (kernels are). Node allows that for any size; a browser's main
 * thread may refuse to compile a module over 4 KB synchronously, and then an asynchronous compile
 * is started and the callers take the XNNPACK (or JavaScript) route until it is done.
 */
import { SIMD_WASM_BASE64 } from './simd-wasm';

/** The module's exports: each returns 0 when it wrote its output, 1 when the channel counts do not suit it (nothing written). */
type FilterGrad = (
  x: number, dy: number, dw: number, batch: number, inH: number, inW: number, inC: number,
  outH: number, outW: number, outC: number, kh: number, kw: number, sh: number, sw: number, padTop: number, padLeft: number,
) => number;
type InputGrad = (
  dy: number, w: number, wT: number, dx: number, batch: number, inH: number, inW: number, inC: number,
  outH: number, outW: number, outC: number, kh: number, kw: number, sh: number, sw: number, padTop: number, padLeft: number,
) => number;
type Forward = (
  x: number, w: number, y: number, batch: number, inH: number, inW: number, inC: number,
  outH: number, outW: number, outC: number, kh: number, kw: number, sh: number, sw: number, padTop: number, padLeft: number,
) => number;
type Winograd = (x: number, w: number, scratch: number, y: number, batch: number, H: number, W: number, inC: number, outC: number, flip: number) => number;
type WinogradFilter = (x: number, dy: number, scratch: number, dw: number, batch: number, H: number, W: number, inC: number, outC: number) => number;
type NormForward = (
  x: number, bias: number, gamma: number, beta: number, y: number, mean: number, rstd: number, s: number,
  facc: number, dacc: number, N: number, P: number, C: number, G: number, eps: number,
) => number;
type NormBackward = (
  dy: number, x: number, bias: number, gamma: number, beta: number, mean: number, rstd: number, s: number,
  dx: number, dbias: number, dgamma: number, dbeta: number, facc: number, dacc: number, N: number, P: number, C: number, G: number,
) => number;

/** The kernels of one instance (all arguments are byte offsets and sizes). */
export interface SimdKernels {
  /** y [batch, outH, outW, outC] of x and w [kh, kw, inC, outC]; needs outC a multiple of 4. */
  forward: Forward;
  /** dW [kh, kw, inC, outC]; needs inC or outC a multiple of 4. */
  filterGrad: FilterGrad;
  /** dx [batch, inH, inW, inC], with a scratch of kh kw inC outC floats; needs inC a multiple of 4. */
  inputGrad: InputGrad;
  /**
   * The 3x3, stride-1, padding-1 convolution by Winograd's F(2x2, 3x3) (see c/conv2d.c): y [batch,
   * H, W, outC] of x [batch, H, W, inC] and w [3, 3, inC, outC], or (flip 1) the input gradient's
   * convolution of dy with the forward filter [3, 3, outC, inC]; with a scratch of
   * winogradScratchFloats(inC, outC) floats; needs inC and outC multiples of 4.
   */
  winograd: Winograd;
  /**
   * The filter gradient of the same convolutions by Winograd's F(3x3, 2x2): dW [3, 3, inC, outC] of
   * x [batch, H, W, inC] and dy [batch, H, W, outC], with a scratch of
   * winogradFilterScratchFloats(inC, outC) floats; needs inC and outC multiples of 4.
   */
  winogradFilter: WinogradFilter;
  /** GroupNorm-SiLU forward (see c/groupnorm.c), with scratch of 8 C floats (facc) and 4 C doubles (dacc); needs C a multiple of 4. */
  groupNormSilu: NormForward;
  /** Its backward pass, with the same scratch; needs C a multiple of 4. */
  groupNormSiluGrad: NormBackward;
}

/** Calls of each export that wrote their output (returned 0), since the process started. */
const calls: Record<string, number> = {};

/** fn, counting its calls that returned 0 under `name`. */
function counted<F extends (...args: number[]) => number>(name: string, fn: F): F {
  calls[name] = calls[name] ?? 0;
  return ((...args: number[]) => {
    const rc = fn(...args);
    if (rc === 0) calls[name]++;
    return rc;
  }) as F;
}

/** How many times each SIMD kernel ran (wrote its output) in this process: which route the wrappers took, for tests and benchmarks. */
export function simdCalls(): Record<string, number> {
  return { conv2d_forward: 0, conv2d_backprop_filter: 0, conv2d_backprop_input: 0, conv2d_winograd: 0, conv2d_winograd_filter: 0, group_norm_silu: 0, group_norm_silu_grad: 0, ...calls };
}

/** Blocks of x and dy that conv2d_winograd_filter transforms at a time, and the padding between its rows (WINO_CHUNK and WINO_PAD in c/conv2d.c). */
const WINO_CHUNK = 32;
const WINO_PAD = 16;

/** The scratch conv2d_winograd_filter needs: the transformed sums (16 inC outC) and a chunk of transformed blocks of x and dy, in floats. */
export function winogradFilterScratchFloats(inC: number, outC: number): number {
  return 16 * inC * outC + 16 * (WINO_CHUNK * (inC + outC) + 2 * WINO_PAD);
}

/** The scratch conv2d_winograd needs: the transformed filter (16 inC outC) and four tiles' V and M (64 inC + 64 outC), in floats. */
export function winogradScratchFloats(inC: number, outC: number): number {
  return 16 * inC * outC + 64 * inC + 64 * outC;
}

let compiled: WebAssembly.Module | null = null;
let compiling = false;
let failure: string | null = null;
const instances = new WeakMap<WebAssembly.Memory, SimdKernels>();

function decode(base64: string): Uint8Array<ArrayBuffer> {
  const s = atob(base64);
  const out = new Uint8Array(new ArrayBuffer(s.length));
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** The module's bytes, for tools that call its kernels on a memory of their own (bench/conv-kernels.ts). */
export function simdModuleBytes(): Uint8Array<ArrayBuffer> {
  return decode(SIMD_WASM_BASE64);
}

function moduleNow(): WebAssembly.Module | null {
  if (compiled || failure) return compiled;
  const bytes = decode(SIMD_WASM_BASE64);
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
export function simdKernels(memory: WebAssembly.Memory | undefined): SimdKernels | null {
  if (!memory) return null;
  const known = instances.get(memory);
  if (known) return known;
  // The module's memory import is declared unshared; a threaded backend's SharedArrayBuffer heap would not link.
  if (typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer) return null;
  const mod = moduleNow();
  if (!mod) return null;
  const { exports } = new WebAssembly.Instance(mod, { env: { memory } });
  const kernels: SimdKernels = {
    forward: counted('conv2d_forward', exports.conv2d_forward as Forward),
    filterGrad: counted('conv2d_backprop_filter', exports.conv2d_backprop_filter as FilterGrad),
    inputGrad: counted('conv2d_backprop_input', exports.conv2d_backprop_input as InputGrad),
    winograd: counted('conv2d_winograd', exports.conv2d_winograd as Winograd),
    winogradFilter: counted('conv2d_winograd_filter', exports.conv2d_winograd_filter as WinogradFilter),
    groupNormSilu: counted('group_norm_silu', exports.group_norm_silu as NormForward),
    groupNormSiluGrad: counted('group_norm_silu_grad', exports.group_norm_silu_grad as NormBackward),
  };
  instances.set(memory, kernels);
  return kernels;
}

/** Why simdKernels returns null in this runtime, or null when the module compiled. */
export function simdUnavailableReason(): string | null {
  moduleNow();
  return compiled ? null : (failure ?? 'the SIMD module is still compiling');
}
