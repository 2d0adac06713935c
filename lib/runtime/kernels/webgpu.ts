/**
 * The Adam-step kernel (ADAM_UPDATE, lib/runtime/kernels/adam.ts) for tfjs-backend-webgpu, and a
 * dispatch counter. Written as tensor ops, FusedAdam's update costs about 15 element-wise kernels
 * plus a concat and a split over all variables (hundreds of compute dispatches per step for the
 * U-Net); here it is a few buffer copies and ceil(n / k) dispatches of one WGSL shader, where k
 * variables share a dispatch: as many as the device's maxStorageBuffersPerShaderStage allows
 * (2 buffers for the moments, 2 per variable: k = floor((limit - 2) / 2), 3 at the default 8).
 *
 * tfjs-backend-webgpu's own programs have exactly one output, and Adam has 2 + n, so this kernel
 * records its dispatches itself, the way the backend's recordAndSubmit does: in the backend's
 * command encoder and compute pass, with every buffer it touches marked as owned by the command
 * queue (so a tensor disposed before the submit keeps its buffer until then). The outputs are
 * fresh tensors first filled by copyBufferToBuffer from their inputs (m, v, each weight) and then
 * updated in place by the shader, in float32:
 *   m' = beta1 m + (1 - beta1) g,  v' = beta2 v + (1 - beta2) g^2,
 *   w' = w - lr (m' / (1 - beta1^t)) / (sqrt(v' / (1 - beta2^t)) + epsilon).
 * Nothing here loads the webgpu package; registerWebgpuKernels() only adds a kernel to tfjs's registry.
 */
import * as tf from '@tensorflow/tfjs';
import { ADAM_UPDATE, AdamUpdateAttrs, checkAdamAttrs } from './adam';

type Info = tf.TensorInfo;

// Minimal shapes of the WebGPU objects and of tfjs-backend-webgpu's WebGPUBackend used here.
interface GpuBufferLike {
  size: number;
}
interface GpuPassLike {
  setPipeline(p: unknown): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
interface GpuDeviceLike {
  limits: Record<string, number>;
  createShaderModule(d: { code: string }): unknown;
  createComputePipeline(d: unknown): { getBindGroupLayout(i: number): unknown };
  createBindGroup(d: unknown): unknown;
}
/** The part of tfjs-backend-webgpu's WebGPUBackend that this module's kernels use. */
export interface WebgpuBackendLike {
  device: GpuDeviceLike;
  queue: { writeBuffer(b: GpuBufferLike, offset: number, data: ArrayBuffer, dataOffset: number, size: number): void };
  tensorMap: { get(dataId: object): { resource: GpuBufferLike | null } | undefined };
  bufferManager: { acquireBuffer(size: number, usage: number): GpuBufferLike };
  commandEncoder: { copyBufferToBuffer(a: GpuBufferLike, ao: number, b: GpuBufferLike, bo: number, size: number): void; beginComputePass(d: object): GpuPassLike } | null;
  computePassEncoder: GpuPassLike | null;
  commandQueueOwnedIds: WeakSet<object>;
  uniformPendingDisposal: GpuBufferLike[];
  dispatchCountInPass: number;
  makeTensorInfo(shape: number[], dtype: 'float32'): Info;
  uploadToGPU(dataId: object): void;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

const WORKGROUP = 256;
/** Workgroups per dispatch at most; larger variables are covered by a grid-stride loop. */
const MAX_WORKGROUPS = 4096;

/** Variables per dispatch on a device: two storage buffers for m and v, two per variable (w' read-write, g). */
export function adamVariablesPerDispatch(limits: Record<string, number>): number {
  const storage = limits.maxStorageBuffersPerShaderStage ?? 8;
  const bindings = limits.maxBindingsPerBindGroup ?? 1000;
  // One binding more for the uniform buffer.
  return Math.max(1, Math.min(Math.floor((storage - 2) / 2), Math.floor((bindings - 3) / 2)));
}

/** The WGSL of one dispatch over k variables: slot[i] = (offset of variable i in m and v, its size). */
function adamShader(k: number): string {
  const decls: string[] = [];
  const loops: string[] = [];
  for (let i = 0; i < k; i++) {
    decls.push(`@group(0) @binding(${3 + 2 * i}) var<storage, read_write> w${i}: array<f32>;`);
    decls.push(`@group(0) @binding(${4 + 2 * i}) var<storage, read> g${i}: array<f32>;`);
    loops.push(`  for (var j = gid.x; j < p.slot[${i}].y; j = j + stride) { w${i}[j] = step(p.slot[${i}].x + j, g${i}[j], w${i}[j]); }`);
  }
  return `
struct Params { lr: f32, beta1: f32, beta2: f32, epsilon: f32, c1: f32, c2: f32, bc1: f32, bc2: f32, slot: array<vec4<u32>, ${k}> };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
${decls.join('\n')}
fn step(k: u32, g: f32, w: f32) -> f32 {
  let mk = p.beta1 * m[k] + p.c1 * g;
  let vk = p.beta2 * v[k] + p.c2 * g * g;
  m[k] = mk;
  v[k] = vk;
  return w - p.lr * (mk / p.bc1) / (sqrt(vk / p.bc2) + p.epsilon);
}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * ${WORKGROUP}u;
${loops.join('\n')}
}
`;
}

const pipelines = new WeakMap<GpuDeviceLike, Map<number, { getBindGroupLayout(i: number): unknown }>>();

function pipeline(device: GpuDeviceLike, k: number) {
  let byK = pipelines.get(device);
  if (!byK) pipelines.set(device, (byK = new Map()));
  let p = byK.get(k);
  if (!p) {
    p = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code: adamShader(k) }), entryPoint: 'main' } });
    byK.set(k, p);
  }
  return p;
}

/** The GPU buffer holding t (uploaded first if its values are still on the CPU). */
export function bufferOf(b: WebgpuBackendLike, t: Info, kernel: string): GpuBufferLike {
  b.uploadToGPU(t.dataId);
  const resource = b.tensorMap.get(t.dataId)?.resource;
  if (!resource || typeof resource.size !== 'number') throw new Error(`${kernel}: an input is not held in a GPU buffer on webgpu`);
  return resource;
}

/**
 * Records one dispatch the way tfjs-backend-webgpu's recordAndSubmit does: binding 0 is `uniform`
 * (copied into a uniform buffer released at the next submit), bindings 1.. are `buffers`, in the
 * backend's open compute pass; `tensors` are marked as owned by the command queue, so that one
 * disposed before the submit keeps its buffer until then. Submits when the batch of dispatches is full.
 */
export function recordDispatch(
  b: WebgpuBackendLike,
  pipe: { getBindGroupLayout(i: number): unknown },
  uniform: ArrayBuffer,
  buffers: GpuBufferLike[],
  tensors: Info[],
  workgroups: number,
): void {
  const usage = (globalThis as unknown as { GPUBufferUsage: Record<string, number> }).GPUBufferUsage;
  const ubuf = b.bufferManager.acquireBuffer(uniform.byteLength, usage.COPY_DST | usage.UNIFORM);
  b.queue.writeBuffer(ubuf, 0, uniform, 0, uniform.byteLength);
  b.uniformPendingDisposal.push(ubuf);
  const entries = [{ binding: 0, resource: { buffer: ubuf } }, ...buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } }))];
  const bindGroup = b.device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
  for (const t of tensors) b.commandQueueOwnedIds.add(t.dataId);
  b.ensureCommandEncoderReady();
  if (!b.computePassEncoder) b.computePassEncoder = b.commandEncoder!.beginComputePass({});
  b.computePassEncoder.setPipeline(pipe);
  b.computePassEncoder.setBindGroup(0, bindGroup);
  b.computePassEncoder.dispatchWorkgroups(workgroups);
  b.dispatchCountInPass++;
  if ((tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number) <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
}

const webgpuKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const ins = inputs as unknown as Record<string, Info>;
  const a = attrs as unknown as AdamUpdateAttrs;
  checkAdamAttrs(a, ins);
  const b = backend as unknown as WebgpuBackendLike;
  const { device } = b;
  const { count, lr, beta1, beta2, epsilon, t } = a;
  const size = (x: Info) => x.shape.reduce((p, d) => p * d, 1);
  const total = size(ins.m);
  const maxBinding = device.limits.maxStorageBufferBindingSize ?? 134217728;
  if (total * 4 > maxBinding) {
    throw new Error(`${ADAM_UPDATE}: ${total} parameters (${total * 4} bytes) exceed the device's maxStorageBufferBindingSize of ${maxBinding} bytes`);
  }
  const mOut = b.makeTensorInfo(ins.m.shape, 'float32');
  const vOut = b.makeTensorInfo(ins.v.shape, 'float32');
  const wOut = Array.from({ length: count }, (_, i) => b.makeTensorInfo(ins[`w${i}`].shape, 'float32'));
  const all = [ins.m, ins.v, mOut, vOut, ...wOut];
  for (let i = 0; i < count; i++) all.push(ins[`w${i}`], ins[`g${i}`]);
  const buffers = new Map<Info, GpuBufferLike>();
  for (const x of all) buffers.set(x, bufferOf(b, x, ADAM_UPDATE));

  // Copies happen outside a compute pass; the update dispatches follow in one pass.
  b.endComputePassEncoder();
  b.ensureCommandEncoderReady();
  const enc = b.commandEncoder!;
  enc.copyBufferToBuffer(buffers.get(ins.m)!, 0, buffers.get(mOut)!, 0, total * 4);
  enc.copyBufferToBuffer(buffers.get(ins.v)!, 0, buffers.get(vOut)!, 0, total * 4);
  for (let i = 0; i < count; i++) {
    const n = size(wOut[i]);
    if (n > 0) enc.copyBufferToBuffer(buffers.get(ins[`w${i}`])!, 0, buffers.get(wOut[i])!, 0, n * 4);
  }
  for (const x of all) b.commandQueueOwnedIds.add(x.dataId);

  const k = adamVariablesPerDispatch(device.limits);
  const offsets: number[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    offsets.push(offset);
    offset += size(wOut[i]);
  }
  for (let first = 0; first < count; first += k) {
    const group = Array.from({ length: Math.min(k, count - first) }, (_, j) => first + j).filter((i) => size(wOut[i]) > 0);
    if (group.length === 0) continue;
    // A shader per group size: at most two (k, and the remainder of count / k).
    const n = group.length;
    const uniform = new ArrayBuffer(32 + 16 * n);
    new Float32Array(uniform, 0, 8).set([lr, beta1, beta2, epsilon, 1 - beta1, 1 - beta2, 1 - beta1 ** t, 1 - beta2 ** t]);
    const slotView = new Uint32Array(uniform, 32, 4 * n);
    group.forEach((i, j) => {
      slotView[4 * j] = offsets[i];
      slotView[4 * j + 1] = size(wOut[i]);
    });
    const groupTensors = [mOut, vOut];
    for (const i of group) groupTensors.push(wOut[i], ins[`g${i}`]);
    const largest = Math.max(...group.map((i) => size(wOut[i])));
    // Each dispatch marks its own tensors: a submit between two groups starts a new ownership set.
    recordDispatch(b, pipeline(device, n), uniform, groupTensors.map((x) => buffers.get(x)!), groupTensors, Math.min(MAX_WORKGROUPS, Math.ceil(largest / WORKGROUP)));
  }
  return [mOut, vOut, ...wOut];
};

/** Registers the Adam-step kernel for 'webgpu' (idempotent; the webgpu package is not loaded). */
export function registerWebgpuKernels(): void {
  if (!tf.getKernel(ADAM_UPDATE, 'webgpu')) tf.registerKernel({ kernelName: ADAM_UPDATE, backendName: 'webgpu', kernelFunc: webgpuKernel });
}

/**
 * Runs fn and counts the compute dispatches the webgpu backend records meanwhile (every
 * dispatchWorkgroups of a compute pass: tfjs's programs and this module's kernels alike).
 * Throws unless the current backend is webgpu.
 */
export async function countDispatches<T>(fn: () => T | Promise<T>): Promise<{ result: T; dispatches: number }> {
  if (tf.getBackend() !== 'webgpu') throw new Error(`countDispatches needs the webgpu backend, the current one is '${tf.getBackend()}'`);
  const proto = (globalThis as unknown as { GPUComputePassEncoder?: { prototype: GpuPassLike } }).GPUComputePassEncoder?.prototype;
  if (!proto || typeof proto.dispatchWorkgroups !== 'function') throw new Error('countDispatches: no GPUComputePassEncoder.prototype.dispatchWorkgroups to count');
  const original = proto.dispatchWorkgroups;
  let dispatches = 0;
  proto.dispatchWorkgroups = function (this: GpuPassLike, ...args: [number, number?, number?]) {
    dispatches++;
    return original.apply(this, args);
  };
  try {
    const result = await fn();
    return { result, dispatches };
  } finally {
    proto.dispatchWorkgroups = original;
  }
}
