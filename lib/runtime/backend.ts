/**
 * Backend choice: run on the fastest TensorFlow.js backend this machine offers, in BACKEND_ORDER
 * (native TensorFlow through tfjs-node, WebGPU through Dawn, WebAssembly, plain JavaScript), or on
 * exactly the one that DIFFUSION_BACKEND (or opts.prefer) names.
 *
 * Every optional backend package is loaded here lazily, inside useBestBackend: the wasm and webgpu
 * packages register themselves with tfjs when first required, and tfjs-node or webgpu may be absent,
 * so importing this module must neither register a backend nor fail, and it registers no kernel
 * either: every backend set up here first calls registerKernels() (lib/runtime/kernels).
 */
import * as tf from '@tensorflow/tfjs';
import { pathToFileURL } from 'url';
import { registerKernels, registerWasmKernels } from './kernels';
import { UNetDenoiser } from '../models/unet';

/** The backends useBestBackend tries, fastest first; 'cpu' (plain JavaScript) always works. */
export const BACKEND_ORDER = ['tensorflow', 'webgpu', 'wasm', 'cpu'] as const;

/** One of BACKEND_ORDER. */
export type BackendName = (typeof BACKEND_ORDER)[number];

/** The environment variable that pins the backend by name. */
export const BACKEND_ENV = 'DIFFUSION_BACKEND';

/** What useBestBackend chose, and why each backend before it in BACKEND_ORDER was passed over. */
export interface BackendChoice {
  name: BackendName;
  /** Backend name -> why it was passed over (only backends that were tried and failed). */
  reasons: Record<string, string>;
  /** Backends tried, in order, the chosen one last. */
  tried: BackendName[];
}

/** The current backend, plus what is known about how it runs. */
export interface BackendInfo {
  /** tf.getBackend(). */
  name: string;
  /** For 'tensorflow': the package that provided it. */
  tensorflow?: { module: string };
  /** For 'webgpu': the adapter Dawn gave us, and the device's limits that the library asked the adapter for. */
  webgpu?: { adapter: string; isFallbackAdapter: boolean; limits?: Record<string, number>; limitsNote?: string };
  /** For 'wasm': which build runs, and why threads are off when they are. */
  wasm?: { simd: boolean; threads: boolean; threadCount: number; note: string };
}

/** Options for useBestBackend. */
export interface BackendOptions {
  /** Use exactly this backend or throw; wins over DIFFUSION_BACKEND. */
  prefer?: string;
  /** What opts.prefer is called in errors and in the verbose line, e.g. '--backend' for a CLI flag; default 'opts.prefer'. */
  preferLabel?: string;
  /** Print one line: the chosen backend and why the faster ones were passed over. */
  verbose?: boolean;
  /** Where the verbose line goes (without its newline); default console.log. A CLI passes its stderr writer. */
  log?: (line: string) => void;
}

const VALID_NAMES = BACKEND_ORDER.map((n) => `'${n}'`).join(', ');

// tfjs-backend-wasm disables threads under Node on purpose (tfjs issue #3830): its pthread workers
// are started from blob: URLs, which worker_threads refuses (ERR_WORKER_PATH, thrown by `new Worker`
// in PThread.allocateUnusedWorker of the threaded-simd glue), so forcing the
// WASM_HAS_MULTITHREAD_SUPPORT flag makes initialisation fail instead of running threaded. Measured
// here (issue 3): with the worker script written to a file and URL.createObjectURL
// redirected, the threaded build starts, but init_with_threads_count caps the pool at
// os.cpus().length / 2 = 1 thread on a 2-vCPU machine, and 4.22's matmul passes XNNPACK no
// thread pool at all; so threads stay off.
const WASM_THREADS_NODE_NOTE =
  'tfjs-backend-wasm turns threads off under Node (tfjs issue #3830): its pthread workers load from blob: URLs, which Node worker_threads rejects';

/** Details recorded when a backend is switched on here, reported by backendInfo. */
const details: { tensorflow?: BackendInfo['tensorflow']; webgpu?: BackendInfo['webgpu'] } = {};

// Calls are serialised: two overlapping tf.setBackend sequences would leave tfjs on either one.
let queue: Promise<unknown> = Promise.resolve();

/**
 * Switches tfjs to the best available backend in BACKEND_ORDER, or to exactly the one named by
 * opts.prefer or DIFFUSION_BACKEND (throwing, with the reason, when that one cannot be used).
 * After any failed attempt tfjs is left on a working backend. When WebGPU is chosen, Dawn's
 * navigator.gpu keeps Node alive until `delete globalThis.navigator.gpu` (webgpu package README).
 */
export function useBestBackend(opts: BackendOptions = {}): Promise<BackendChoice> {
  const run = queue.then(() => chooseBackend(opts));
  queue = run.catch(() => undefined);
  return run;
}

async function chooseBackend(opts: BackendOptions): Promise<BackendChoice> {
  if (opts.log !== undefined && typeof opts.log !== 'function') throw new Error(`opts.log must be a function, got ${typeof opts.log}`);
  const pinned = pinnedBackend(opts);
  const reasons: Record<string, string> = {};
  const tried: BackendName[] = [];
  let chosen: BackendName | undefined;

  if (pinned) {
    const previous = tf.engine().backendName;
    tried.push(pinned.name);
    try {
      await ATTEMPTS[pinned.name]({ automatic: false });
      chosen = pinned.name;
    } catch (err) {
      await restoreBackend(previous);
      throw new Error(
        `${pinned.label}='${pinned.name}' cannot be used: ${message(err)} ` +
          `(valid names: ${VALID_NAMES}; leave ${pinned.label} unset to choose automatically)`,
      );
    }
  } else {
    for (const name of BACKEND_ORDER) {
      tried.push(name);
      try {
        await ATTEMPTS[name]({ automatic: true });
        chosen = name;
        break;
      } catch (err) {
        reasons[name] = message(err);
      }
    }
    if (!chosen) {
      throw new Error(`no TensorFlow.js backend could be used: ${formatReasons(reasons)}`);
    }
  }

  if (opts.verbose) {
    const passed = Object.keys(reasons).length ? ` (passed over: ${formatReasons(reasons)})` : '';
    (opts.log ?? console.log)(`diffusion backend: ${chosen}${pinned ? ` (pinned by ${pinned.label})` : ''}${passed}`);
  }
  return { name: chosen, reasons, tried };
}

/** The backend named by opts.prefer or else DIFFUSION_BACKEND, validated; undefined when neither is set. */
function pinnedBackend(opts: BackendOptions): { name: BackendName; label: string } | undefined {
  let label: string;
  let value: unknown;
  if (opts.preferLabel !== undefined && (typeof opts.preferLabel !== 'string' || opts.preferLabel === '')) {
    throw new Error(`opts.preferLabel must be a non-empty string, got ${JSON.stringify(opts.preferLabel)}`);
  }
  if (opts.prefer !== undefined) {
    label = opts.preferLabel ?? 'opts.prefer';
    value = opts.prefer;
  } else {
    const env = process.env[BACKEND_ENV];
    // An empty value is how shells unset a variable for one command: treat it as unset.
    if (env === undefined || env === '') return undefined;
    label = BACKEND_ENV;
    value = env;
  }
  if (typeof value !== 'string' || !(BACKEND_ORDER as readonly string[]).includes(value)) {
    throw new Error(`${label} must be one of ${VALID_NAMES}, got ${JSON.stringify(value)}`);
  }
  return { name: value as BackendName, label };
}

/** Each attempt switches tfjs to its backend or throws an Error whose message is the reason. */
const ATTEMPTS: Record<BackendName, (how: { automatic: boolean }) => Promise<void>> = {
  tensorflow: useTensorflow,
  webgpu: useWebgpu,
  wasm: useWasm,
  cpu: () => switchTo('cpu'),
};

/** Native TensorFlow: tfjs-node-gpu when installed, else tfjs-node (both register 'tensorflow'). */
async function useTensorflow(): Promise<void> {
  const notes: string[] = [];
  let loaded: string | undefined;
  for (const mod of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      require(mod);
      loaded = mod;
      break;
    } catch (err) {
      if (isNotInstalled(err, mod)) {
        if (mod === '@tensorflow/tfjs-node') notes.push(`optional ${mod} is not installed (${message(err)})`);
      } else {
        notes.push(`${mod} is installed but did not load (${message(err)})`);
      }
    }
  }
  if (!loaded) throw new Error(notes.join('; '));
  await switchTo('tensorflow');
  details.tensorflow = { module: loaded };
}

// Minimal shapes of what we use from Dawn's WebGPU, so that no WebGPU type package is needed.
interface GpuAdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
  features?: { has(name: string): boolean };
  limits?: Record<string, number>;
  requestDevice?(d: { requiredFeatures?: string[]; requiredLimits?: Record<string, number> }): Promise<{ limits: Record<string, number> }>;
}
interface GpuLike {
  requestAdapter(options?: { powerPreference?: string }): Promise<GpuAdapterLike | null>;
}
interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}
interface WebgpuProbe {
  gpu: GpuLike;
  adapter: GpuAdapterLike;
  globals: Record<string, unknown>;
}

// The adapter search is done once per process: its outcome does not change while we run, and each
// failed Dawn search prints its own warning on stderr.
let webgpuProbe: Promise<WebgpuProbe> | undefined;

/**
 * WebGPU through Dawn for Node: needs an adapter, then tfjs-backend-webgpu on navigator.gpu. The
 * automatic choice passes over a software (fallback) adapter such as Mesa's lavapipe: it runs on the
 * same CPU cores as wasm and is slower (measured here: 13.8 vs 34.6 MLP steps/s).
 */
async function useWebgpu(how: { automatic: boolean } = { automatic: false }): Promise<void> {
  webgpuProbe ??= probeWebgpu();
  const { gpu, adapter, globals } = await webgpuProbe;
  const info = adapter.info ?? {};
  const description = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unnamed adapter';
  const isFallbackAdapter = Boolean(info.isFallbackAdapter ?? adapter.isFallbackAdapter);
  if (how.automatic && isFallbackAdapter) {
    throw new Error(
      `only a software WebGPU adapter (${description}), slower than wasm on the same CPU; set ${BACKEND_ENV}=webgpu to use it anyway`,
    );
  }

  const g = globalThis as Record<string, unknown>;
  const hadNavigator = g.navigator !== undefined;
  const navigator = (g.navigator ?? {}) as { gpu?: unknown };
  const hadGpu = navigator.gpu !== undefined;
  // Dawn's GPUBufferUsage, GPUMapMode, ... are used as globals by tfjs-backend-webgpu; never overwrite.
  for (const [key, value] of Object.entries(globals)) {
    if (!(key in g)) g[key] = value;
  }
  if (!hadGpu) Object.defineProperty(navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  if (!hadNavigator) g.navigator = navigator;

  try {
    // tfjs-backend-webgpu registers 'webgpu' at require time, and only if navigator.gpu exists then.
    require('@tensorflow/tfjs-backend-webgpu');
    if (!tf.findBackendFactory('webgpu')) {
      throw new Error('@tensorflow/tfjs-backend-webgpu was loaded before navigator.gpu existed, so it did not register');
    }
    replaceWebgpuFactory(gpu);
    await switchTo('webgpu');
  } catch (err) {
    // Dawn keeps the process alive while navigator.gpu holds it: drop what we installed.
    if (!hadGpu) delete navigator.gpu;
    if (!hadNavigator) delete g.navigator;
    throw err;
  }
  details.webgpu = { adapter: description, isFallbackAdapter, ...webgpuDevice };
}

/**
 * Limits the device asks the adapter for: tfjs-backend-webgpu's own request (workgroup sizes and
 * counts, buffer sizes) plus the binding counts it leaves at WebGPU's defaults, which cap how many
 * inputs one dispatch may read: 8 storage buffers per stage limit a concat to 7 inputs per dispatch
 * and the Adam kernel to 3 variables (lib/runtime/kernels/webgpu.ts); a GPU adapter offers more.
 */
export const WEBGPU_LIMITS = [
  'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeInvocationsPerWorkgroup',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
  'maxBindingsPerBindGroup',
] as const;

/** The device limits and how they were obtained, recorded by the factory below for backendInfo. */
let webgpuDevice: { limits?: Record<string, number>; limitsNote?: string } = {};
let factoryReplaced = false;

/**
 * Re-registers 'webgpu' with a factory that requests WEBGPU_LIMITS at the adapter's values
 * (tfjs-backend-webgpu 4.22's factory requests only the first six). A device request that the
 * adapter refuses with them is retried with tfjs's own six, and the reason is kept in limitsNote.
 */
function replaceWebgpuFactory(gpu: GpuLike): void {
  if (factoryReplaced || tf.engine().registry.webgpu) return;
  const { WebGPUBackend } = require('@tensorflow/tfjs-backend-webgpu') as { WebGPUBackend: new (device: unknown, info: unknown) => tf.KernelBackend };
  tf.removeBackend('webgpu');
  tf.registerBackend(
    'webgpu',
    async () => {
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter || !adapter.requestDevice || !adapter.limits) throw new Error('navigator.gpu.requestAdapter() returned no adapter the second time');
      const requiredFeatures = adapter.features?.has('timestamp-query') ? ['timestamp-query'] : [];
      const pick = (names: readonly string[]) => {
        const out: Record<string, number> = {};
        for (const name of names) if (typeof adapter.limits![name] === 'number') out[name] = adapter.limits![name];
        return out;
      };
      let device: { limits: Record<string, number> };
      let note = 'every WEBGPU_LIMITS entry at the adapter value';
      try {
        device = await adapter.requestDevice({ requiredFeatures, requiredLimits: pick(WEBGPU_LIMITS) });
      } catch (err) {
        note = `the adapter refused WEBGPU_LIMITS (${message(err)}); tfjs-backend-webgpu's six limits only`;
        const again = await gpu.requestAdapter({ powerPreference: 'high-performance' });
        device = await again!.requestDevice!({ requiredFeatures, requiredLimits: pick(WEBGPU_LIMITS.slice(0, 6)) });
      }
      const limits: Record<string, number> = {};
      for (const name of WEBGPU_LIMITS) if (typeof device.limits[name] === 'number') limits[name] = device.limits[name];
      webgpuDevice = { limits, limitsNote: note };
      return new WebGPUBackend(device, adapter.info);
    },
    3,
  );
  factoryReplaced = true;
}

async function probeWebgpu(): Promise<WebgpuProbe> {
  const existing = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
  let gpu: GpuLike;
  let globals: Record<string, unknown> = {};
  if (existing) {
    gpu = existing;
  } else {
    const dawn = await loadDawn();
    gpu = dawn.create([]);
    globals = dawn.globals;
  }
  // The same request tfjs-backend-webgpu makes, so that an adapter found here is one it will get.
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new Error(
      'no WebGPU adapter: navigator.gpu.requestAdapter() returned null ' +
        '(Dawn found no usable Vulkan/OpenGL ES device; its own warning on stderr names the cause, e.g. a missing libvulkan.so.1)',
    );
  }
  return { gpu, adapter, globals };
}

/**
 * Loads the ESM-only `webgpu` package from CommonJS. tsc compiles `import()` to require() under
 * "module": "commonjs", so the native import() is reached through Function; require(esm) (Node >=
 * 20.19) is the fallback where Function is not allowed.
 */
async function loadDawn(): Promise<DawnModule> {
  let path: string;
  try {
    path = require.resolve('webgpu');
  } catch (err) {
    throw new Error(`the webgpu package (Dawn for Node) is not installed (${message(err)})`);
  }
  const nativeImport = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<DawnModule>;
  try {
    return await nativeImport(pathToFileURL(path).href);
  } catch (importErr) {
    try {
      return require(path) as DawnModule;
    } catch (requireErr) {
      throw new Error(
        `the webgpu package (Dawn for Node) did not load: import() said ${message(importErr)}; require() said ${message(requireErr)}`,
      );
    }
  }
}

/** WebAssembly (XNNPACK). Its .wasm files load from the package folder; no setWasmPaths is needed in Node. */
async function useWasm(): Promise<void> {
  require('@tensorflow/tfjs-backend-wasm');
  // The package registers its kernels when first required: wrap them and add the missing ones now.
  registerWasmKernels();
  await switchTo('wasm');
}

/**
 * tf.setBackend, with the failure reason that tfjs only prints (console.warn) turned into the
 * thrown message. A failed setBackend leaves tfjs on no backend; the caller moves it on.
 */
async function switchTo(name: BackendName): Promise<void> {
  registerKernels();
  const warnings: unknown[][] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warnings.push(args);
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
    if (ok) await tf.ready();
  } finally {
    console.warn = warn;
  }
  if (!ok) {
    const said = warnings
      .map((args) => args.map(String).join(' '))
      .filter((line) => !/^Initialization of backend .* failed$/.test(line))
      .map(firstLine)
      .join('; ');
    throw new Error(`tf.setBackend('${name}') failed${said ? `: ${said}` : ''}`);
  }
  for (const args of warnings) warn(...args);
}

/** After a failed attempt: back to the backend in use before it when that one is initialised, else cpu. */
async function restoreBackend(previous: string | null | undefined): Promise<void> {
  const target = previous && tf.engine().registry[previous] ? previous : 'cpu';
  if (!(await tf.setBackend(target)) && target !== 'cpu') await tf.setBackend('cpu');
  await tf.ready();
}

/** The current backend (tf.getBackend()) and how it runs: wasm SIMD/threads, WebGPU adapter, tfjs-node module. */
export function backendInfo(): BackendInfo {
  const name = tf.getBackend();
  const info: BackendInfo = { name };
  if (name === 'tensorflow' && details.tensorflow) info.tensorflow = details.tensorflow;
  if (name === 'webgpu' && details.webgpu) info.webgpu = details.webgpu;
  if (name === 'wasm') info.wasm = wasmDetails();
  return info;
}

function wasmDetails(): NonNullable<BackendInfo['wasm']> {
  // The wasm backend is initialised, so tfjs has already evaluated (and cached) both async flags.
  const flag = (key: string): boolean => {
    try {
      return Boolean(tf.env().get(key));
    } catch {
      return false;
    }
  };
  const threads = flag('WASM_HAS_MULTITHREAD_SUPPORT');
  let threadCount = 1;
  try {
    threadCount = (require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm')).getThreadsCount();
  } catch {
    // Not initialised through this package copy: report the single-threaded default.
  }
  const isNode = flag('IS_NODE');
  return {
    simd: flag('WASM_HAS_SIMD_SUPPORT'),
    threads,
    threadCount,
    note: threads ? 'threaded SIMD build' : isNode ? WASM_THREADS_NODE_NOTE : 'threads unavailable (no SharedArrayBuffer / cross-origin isolation)',
  };
}

/** Options of useTrainingBackend: useBestBackend's, plus the probe and the fallbacks. */
export interface TrainingBackendOptions extends BackendOptions {
  /**
   * Resolves null when the current backend can train, else the reason it cannot (one line).
   * Default probeUNetGradient: one U-Net gradient.
   */
  probe?: () => Promise<string | null>;
  /** Tried in order when the first choice cannot train; default ['webgpu', 'cpu']. */
  fallbacks?: BackendName[];
}

/** The backend that trains, and why; tfjs is switched to it. */
export interface TrainingBackend {
  name: BackendName;
  /** One line: which backend trains and why this one. */
  reason: string;
  /** Backend name -> why it does not train here (unavailable, passed over, or its probe failed). */
  passedOver: Record<string, string>;
  /** True on a hardware GPU: tfjs-node-gpu, or WebGPU on a non-fallback adapter. */
  onGpu: boolean;
  /** True on a CPU backend that trains convolutions fast: wasm (with the library's gradient kernels) or tfjs-node. */
  fastCpu: boolean;
  info: BackendInfo;
}

/**
 * After a gradient computation threw, tfjs keeps its tape, and with it every tensor the forward pass
 * saved for the backward one (engine.gradients disposes them only on success): measured 705 tensors
 * for the probe's U-Net. Disposes them and drops the tape. Only called outside any gradient scope.
 */
function releaseFailedTape(): void {
  const state = (tf.engine() as unknown as { state: { activeTape: { saved?: tf.Tensor[] }[] | null; gradientDepth: number } }).state;
  if (state.gradientDepth !== 0 || !state.activeTape) return;
  for (const node of state.activeTape) for (const t of node.saved ?? []) if (!t.isDisposed) t.dispose();
  state.activeTape = null;
}

/**
 * Whether the current backend can take a gradient through a U-Net: null when it can, else the
 * error's first line. The probe has every kind of layer (two levels: down- and upsampling;
 * attention) at 4 channels, on one 28 x 28 image. Leaves no tensor behind either way.
 */
export async function probeUNetGradient(): Promise<string | null> {
  const probe = new UNetDenoiser({ baseChannels: 4, channelMults: [1, 2], numResBlocks: 1, attention: true, groups: 2, zeroInitOutput: false });
  const x = tf.zeros([1, 28, 28, 1]);
  try {
    const value = tf.tidy(() => tf.variableGrads(() => probe.predictEps(x, 1).square().mean() as tf.Scalar, probe.trainableVariables).value);
    await value.data();
    value.dispose();
    return null;
  } catch (e) {
    releaseFailedTape();
    return message(e);
  } finally {
    x.dispose();
    probe.dispose();
  }
}

/**
 * Switches tfjs to the backend that should train a U-Net here: useBestBackend's choice when the
 * probe (one U-Net gradient) passes on it, else the first of opts.fallbacks (webgpu, then cpu) that
 * starts and passes the probe. A backend pinned by opts.prefer or DIFFUSION_BACKEND gets no
 * fallback: its failed probe throws. Throws, with every reason, when no backend can train.
 */
export async function useTrainingBackend(opts: TrainingBackendOptions = {}): Promise<TrainingBackend> {
  const probe = opts.probe ?? probeUNetGradient;
  if (typeof probe !== 'function') throw new Error(`useTrainingBackend: opts.probe must be a function, got ${typeof probe}`);
  const fallbacks = opts.fallbacks ?? (['webgpu', 'cpu'] as BackendName[]);
  for (const f of fallbacks) {
    if (!(BACKEND_ORDER as readonly string[]).includes(f)) throw new Error(`useTrainingBackend: opts.fallbacks must hold names from ${VALID_NAMES}, got ${JSON.stringify(f)}`);
  }
  const pinned = pinnedBackend(opts);
  const best = await useBestBackend({ prefer: opts.prefer, preferLabel: opts.preferLabel, verbose: opts.verbose, log: opts.log });
  const passedOver: Record<string, string> = { ...best.reasons };
  const finish = (name: BackendName, why: string): TrainingBackend => {
    const info = backendInfo();
    const onGpu = (info.name === 'tensorflow' && info.tensorflow?.module === '@tensorflow/tfjs-node-gpu') || (info.name === 'webgpu' && info.webgpu?.isFallbackAdapter === false);
    const fastCpu = info.name === 'wasm' || info.name === 'tensorflow';
    const adapter = info.webgpu ? ` (${info.webgpu.adapter}${info.webgpu.isFallbackAdapter ? ', a software adapter' : ''})` : info.tensorflow ? ` (${info.tensorflow.module})` : '';
    const others = Object.entries(passedOver).map(([n, r]) => `${n}: ${r}`).join('; ');
    return { name, reason: `training on ${name}${adapter}: ${why}${others ? ` (passed over: ${others})` : ''}`, passedOver, onGpu, fastCpu, info };
  };
  const first = await probe();
  if (first === null) return finish(best.name, pinned ? `pinned by ${pinned.label}` : 'the fastest backend here, and it takes a U-Net gradient');
  if (pinned) throw new Error(`${pinned.label}='${pinned.name}' cannot train a U-Net: ${first}`);
  passedOver[best.name] = `cannot train a U-Net: ${first}`;
  for (const name of fallbacks) {
    if (name === best.name) continue;
    try {
      await useBestBackend({ prefer: name });
    } catch (err) {
      passedOver[name] = message(err);
      continue;
    }
    const problem = await probe();
    if (problem === null) return finish(name, `the first fallback that takes a U-Net gradient`);
    passedOver[name] = `cannot train a U-Net: ${problem}`;
  }
  throw new Error(`no backend can train a U-Net here: ${formatReasons(passedOver)}`);
}

/** True when `err` says that `mod` itself (not something it needs) cannot be found. */
function isNotInstalled(err: unknown, mod: string): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === 'MODULE_NOT_FOUND' && String(e.message).includes(`Cannot find module '${mod}'`);
}

function message(err: unknown): string {
  const text = err instanceof Error ? err.message : typeof err === 'object' && err && 'message' in err ? String((err as { message: unknown }).message) : String(err);
  return firstLine(text);
}

function firstLine(text: string): string {
  return text.split('\n')[0].trim();
}

function formatReasons(reasons: Record<string, string>): string {
  return Object.entries(reasons)
    .map(([name, why]) => `${name}: ${why}`)
    .join('; ');
}
