/**
 * Data-parallel gradients on a CPU: train({ workers: n }) splits each batch into n slices, computes
 * the loss and its gradient of n - 1 slices in worker threads (each with its own TensorFlow.js on
 * the same backend and a replica of the model) while the calling thread computes its own slice, and
 * combines them weighted by slice size. The losses are means over the batch and every model of the
 * library treats the examples of a batch independently (GroupNorm is per example), so the combined
 * loss and gradient are those of the whole batch up to float32 rounding. The calling thread keeps
 * the only optimizer and EMA; before each step it sends the current weights to the workers.
 *
 * Only for the cpu-side backends ('wasm', 'cpu'): wasm runs one thread per process, so on a 2-core
 * machine a second thread doubles the arithmetic available (docs/benchmarks.md). Every random draw
 * stays on the calling thread, so a run is reproducible for a given worker count.
 */
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import * as tf from '@tensorflow/tfjs';
import type { TrainableDenoiser } from '../diffusion/denoiser';
import type { LossType } from '../diffusion/loss';
import type { Schedule } from '../diffusion/schedule';
import { modelKind } from './checkpoint';

/** Backends whose tensors live in this process's memory, where worker threads add arithmetic. */
export const PARALLEL_BACKENDS = ['wasm', 'cpu'];

/** The most threads trainingThreads() suggests: 1 and 2 were measured on a 2-core machine, more were not. */
export const MAX_SUGGESTED_THREADS = 4;

/**
 * The thread count for train({ workers }) on this machine and backend: the cores Node may use
 * (os.availableParallelism()), at most MAX_SUGGESTED_THREADS, on a backend of PARALLEL_BACKENDS;
 * 1 elsewhere (a GPU backend's arithmetic is not in this process). On 2 cores, 2 threads took a
 * U-Net step of 64 digits from 560-621 ms to 355-409 ms (docs/backends.md).
 */
export function trainingThreads(backend: string = tf.getBackend()): number {
  if (!PARALLEL_BACKENDS.includes(backend)) return 1;
  return Math.max(1, Math.min(MAX_SUGGESTED_THREADS, os.availableParallelism()));
}

/** One slice of a step's batch, as plain arrays (sent to a worker). */
export interface SliceData {
  x0: Float32Array;
  eps: Float32Array;
  t: Int32Array;
  /** Classes of a conditional model's slice (null class included), else null. */
  c: Int32Array | null;
  /** The slice's shape ([n, ...]). */
  shape: number[];
}

/** What the init message carries. */
interface InitMessage {
  type: 'init';
  backend: string;
  kind: string;
  config: Record<string, unknown>;
  betas: number[];
  scheduleConfig: unknown;
  loss: LossType;
}

/** The worker script next to this file: compiled (.js) in dist/, or this .ts source under tsx. */
function workerScript(): { file: string; execArgv: string[] } {
  // (a bundle of the CLI, like the tests', carries parallel-worker.js next to itself)
  const ts = __filename.endsWith('.ts');
  const file = path.join(__dirname, `parallel-worker.${ts ? 'ts' : 'js'}`);
  return { file, execArgv: ts ? ['--require', require.resolve('tsx/cjs')] : [] };
}

/** n - 1 worker threads computing slice gradients for the calling thread; dispose() ends them. */
export class GradientWorkers {
  private readonly workers: Worker[];
  private failure: Error | null = null;

  private constructor(workers: Worker[]) {
    this.workers = workers;
  }

  /** How many threads share a batch (the calling one included). */
  get threads(): number {
    return this.workers.length + 1;
  }

  /**
   * Starts threads - 1 workers with replicas of `model` (same kind and config) on the current
   * backend, which must be one of PARALLEL_BACKENDS. Resolves once every worker has its model.
   */
  static async start(threads: number, model: TrainableDenoiser, schedule: Schedule, loss: LossType): Promise<GradientWorkers> {
    const backend = tf.getBackend();
    if (!PARALLEL_BACKENDS.includes(backend)) {
      throw new Error(`workers > 1 needs one of the backends ${PARALLEL_BACKENDS.join(', ')} (where a thread adds arithmetic), got '${backend}'; use workers: 1`);
    }
    let kind: string;
    try {
      kind = modelKind(model);
    } catch {
      throw new Error(`workers > 1 needs a model the worker threads can rebuild from its config (an MlpDenoiser or a UNetDenoiser), got ${model?.constructor?.name ?? typeof model}; use workers: 1`);
    }
    const config = (model as unknown as { config: Record<string, unknown> }).config;
    const init: InitMessage = {
      type: 'init',
      backend,
      kind,
      config: { ...config },
      betas: Array.from(schedule.betas.subarray(1)),
      scheduleConfig: schedule.config,
      loss,
    };
    const { file, execArgv } = workerScript();
    const workers: Worker[] = [];
    try {
      for (let i = 1; i < threads; i++) workers.push(new Worker(file, { execArgv }));
      await Promise.all(workers.map((w) => request(w, init)));
    } catch (err) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw err;
    }
    return new GradientWorkers(workers);
  }

  /**
   * Sends the current weights and one slice to each worker; resolves to each worker's mean loss
   * over its slice and the gradient of that loss, flat in trainableVariables order.
   */
  compute(weights: Float32Array, slices: SliceData[]): Promise<{ loss: number; grads: Float32Array }[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (slices.length !== this.workers.length) throw new Error(`GradientWorkers.compute: ${slices.length} slices for ${this.workers.length} workers`);
    return Promise.all(
      this.workers.map((w, i) => request(w, { type: 'step', weights, ...slices[i] }) as Promise<{ loss: number; grads: Float32Array }>),
    ).catch((err) => {
      this.failure = err;
      throw err;
    });
  }

  async dispose(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** Posts msg to w and resolves to its one reply (or rejects with the worker's error, or its exit). */
function request(w: Worker, msg: object): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      w.off('message', onMessage);
      w.off('error', onError);
      w.off('exit', onExit);
    };
    const onMessage = (m: { ok: boolean; value?: unknown; error?: string }) => {
      cleanup();
      if (m.ok) resolve(m.value);
      else reject(new Error(`a training worker failed: ${m.error}`));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(new Error(`a training worker failed: ${e.message}`));
    };
    const onExit = (code: number) => {
      cleanup();
      reject(new Error(`a training worker exited (code ${code}) before answering`));
    };
    w.on('message', onMessage);
    w.on('error', onError);
    w.on('exit', onExit);
    w.postMessage(msg);
  });
}

/** The values of `tensors`, one after another in one Float32Array (weights to the workers, gradients back). */
export function flatten(tensors: readonly tf.Tensor[]): Float32Array {
  const out = new Float32Array(tensors.reduce((n, t) => n + t.size, 0));
  let at = 0;
  for (const t of tensors) {
    out.set(t.dataSync() as Float32Array, at);
    at += t.size;
  }
  return out;
}

/** Slice sizes of a batch of n over k threads: as equal as possible, the larger ones first. */
export function sliceSizes(n: number, k: number): number[] {
  const base = Math.floor(n / k);
  return Array.from({ length: k }, (_, i) => base + (i < n % k ? 1 : 0));
}
