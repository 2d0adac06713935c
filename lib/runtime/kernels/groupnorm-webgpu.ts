/**
 * GroupNorm (+ an optional per-(example, channel) bias added first, + an optional SiLU after) as one
 * WebGPU dispatch: one workgroup per (example, group) reduces the group's mean, then its biased
 * variance about that mean, and writes act(gamma (x - mean) / sqrt(var + eps) + beta). Written as
 * tensor ops (lib/models/layers.ts groupNorm and silu) the same thing is about 13 dispatches, and the
 * MNIST U-Net has 26 GroupNorms per forward pass. Forward only: under a gradient tape the caller
 * takes the tensor-op path (fusedGroupNorm returns null), so gradients are tfjs's own.
 */
import * as tf from '@tensorflow/tfjs';
import { WebgpuBackendLike, bufferOf, recordDispatch } from './webgpu';

/** The kernel's name, registered for 'webgpu' only. */
export const GROUP_NORM = 'DiffusionGroupNormActWebGPU';

/** Attributes: groups, eps, silu (apply x sigmoid(x) after), hasBias (input `bias` [batch, channels] is added before the norm). */
export interface GroupNormAttrs {
  groups: number;
  eps: number;
  silu: boolean;
  hasBias: boolean;
}

const WORKGROUP = 256;

const SHADER = `
struct Params { HW: u32, C: u32, G: u32, cpg: u32, eps: f32, silu: u32, hasBias: u32, pad: u32 };
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
var<workgroup> red: array<f32, ${WORKGROUP}>;
fn at(b: u32, g: u32, i: u32) -> u32 { return (b * p.HW + i / p.cpg) * p.C + g * p.cpg + i % p.cpg; }
fn load(b: u32, g: u32, i: u32) -> f32 {
  var v = x[at(b, g, i)];
  if (p.hasBias == 1u) { v = v + bias[b * p.C + g * p.cpg + i % p.cpg]; }
  return v;
}
fn total(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${WORKGROUP / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.x / p.G;
  let g = wid.x % p.G;
  let n = p.HW * p.cpg;
  var s = 0.0;
  for (var i = lid; i < n; i = i + ${WORKGROUP}u) { s = s + load(b, g, i); }
  let mean = total(lid, s) / f32(n);
  var q = 0.0;
  for (var i = lid; i < n; i = i + ${WORKGROUP}u) { let d = load(b, g, i) - mean; q = q + d * d; }
  let inv = 1.0 / sqrt(total(lid, q) / f32(n) + p.eps);
  for (var i = lid; i < n; i = i + ${WORKGROUP}u) {
    let c = g * p.cpg + i % p.cpg;
    var v = (load(b, g, i) - mean) * inv * gamma[c] + beta[c];
    if (p.silu == 1u) { v = v / (1.0 + exp(-v)); }
    y[at(b, g, i)] = v;
  }
}
`;

const pipelines = new WeakMap<object, { getBindGroupLayout(i: number): unknown }>();

const webgpuKernel: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, gamma, beta, bias } = inputs as unknown as Record<string, tf.TensorInfo>;
  const { groups, eps, silu, hasBias } = attrs as unknown as GroupNormAttrs;
  const [B, H, W, C] = x.shape;
  if (x.shape.length !== 4 || C % groups !== 0) throw new Error(`${GROUP_NORM}: x must be [batch, height, width, channels] with channels divisible by groups, got [${x.shape}] and ${groups}`);
  if (B * groups > 65535) throw new Error(`${GROUP_NORM}: batch x groups = ${B * groups} exceeds the 65535 workgroups of one dispatch`);
  const b = backend as unknown as WebgpuBackendLike;
  const y = b.makeTensorInfo(x.shape, 'float32');
  const uniform = new ArrayBuffer(32);
  new Uint32Array(uniform).set([H * W, C, groups, C / groups, 0, silu ? 1 : 0, hasBias ? 1 : 0, 0]);
  new Float32Array(uniform, 16, 1)[0] = eps;
  const buffers = [x, gamma, beta, hasBias ? bias : gamma, y].map((t) => bufferOf(b, t, GROUP_NORM));
  let pipeline = pipelines.get(b.device);
  if (!pipeline) {
    pipeline = b.device.createComputePipeline({ layout: 'auto', compute: { module: b.device.createShaderModule({ code: SHADER }), entryPoint: 'main' } });
    pipelines.set(b.device, pipeline);
  }
  recordDispatch(b, pipeline, uniform, buffers, [x, gamma, beta, y, ...(hasBias ? [bias] : [])], B * groups);
  return y;
};

/** Registers the fused GroupNorm kernel for 'webgpu' (idempotent; the webgpu package is not loaded). */
export function registerGroupNormKernel(): void {
  if (!tf.getKernel(GROUP_NORM, 'webgpu')) tf.registerKernel({ kernelName: GROUP_NORM, backendName: 'webgpu', kernelFunc: webgpuKernel });
}

/**
 * act(GroupNorm(x + bias)) in one kernel when the current backend has it and no gradient is being
 * recorded; null otherwise (the caller computes it with tensor ops). Arguments are the caller's,
 * already checked: x [batch, height, width, channels], gamma and beta [channels], bias [batch, channels].
 */
export function fusedGroupNorm(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, groups: number, eps: number, silu: boolean, bias?: tf.Tensor): tf.Tensor4D | null {
  const engine = tf.engine() as unknown as { isTapeOn(): boolean };
  if (engine.isTapeOn() || !tf.getKernel(GROUP_NORM, tf.getBackend()) || x.dtype !== 'float32') return null;
  const inputs: tf.NamedTensorMap = { x, gamma, beta };
  if (bias) inputs.bias = bias;
  const attrs: GroupNormAttrs = { groups, eps, silu, hasBias: bias !== undefined };
  return tf.engine().runKernel(GROUP_NORM, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}
