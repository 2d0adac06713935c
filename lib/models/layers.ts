/**
 * The few building blocks the denoisers are written with: seeded weight initialisers, a builder
 * that creates a model's variables in a fixed order, and the pure layer functions (dense, conv2d,
 * groupNorm, silu) that a forward pass calls on those variables. Plain functions over tf.Variables,
 * no tf.layers, so that a model's forward pass reads top to bottom. Notebooks: 05_training_2d, 07_mnist.
 */
import * as tf from '@tensorflow/tfjs';
import { deriveSeed } from '../diffusion/random';
import { checkInteger, checkNumber } from '../diffusion/validate';
import { fusedGroupNormSilu, hasGroupNormSiluKernel } from '../runtime/kernels/groupnorm';
import { fusedGroupNorm } from '../runtime/kernels/groupnorm-webgpu';

/**
 * How a kernel is initialised: He (fan-in) or Glorot (fan-average) scaling, normal or uniform, or
 * zeros. DDPM's default_init is Glorot uniform (variance_scaling(1, 'fan_avg', 'uniform')).
 */
export type KernelInit = 'heNormal' | 'heUniform' | 'glorotNormal' | 'glorotUniform' | 'zeros';

/** A truncated normal cut at 2 sd has sd 0.8796 of the untruncated one; Keras rescales by it too. */
const TRUNCATED_NORMAL_SD = 0.87962566103423978;

/**
 * fan_in and fan_out of a kernel: [in, out] for a dense layer, [kh, kw, in, out] for a conv
 * (the receptive field counts towards both fans, as in Keras and DDPM).
 */
export function kernelFans(shape: number[]): [number, number] {
  if (shape.length < 2) throw new Error(`kernel shape must have rank >= 2 ([..., in, out]), got [${shape}]`);
  const receptive = shape.slice(0, -2).reduce((a, b) => a * b, 1);
  return [receptive * shape[shape.length - 2], receptive * shape[shape.length - 1]];
}

/**
 * A freshly drawn kernel of the given shape: variance 2/fan_in (He) or 2/(fan_in + fan_out)
 * (Glorot), from `seed`, so the same seed gives the same kernel on the same backend.
 */
export function initKernel(shape: number[], init: KernelInit, seed: number): tf.Tensor {
  const [fanIn, fanOut] = kernelFans(shape);
  const variance = init === 'heNormal' || init === 'heUniform' ? 2 / fanIn : 2 / (fanIn + fanOut);
  switch (init) {
    case 'zeros':
      return tf.zeros(shape);
    case 'heNormal':
    case 'glorotNormal':
      return tf.truncatedNormal(shape, 0, Math.sqrt(variance) / TRUNCATED_NORMAL_SD, 'float32', seed);
    case 'heUniform':
    case 'glorotUniform': {
      // U(-a, a) has variance a^2 / 3.
      const limit = Math.sqrt(3 * variance);
      return tf.randomUniform(shape, -limit, limit, 'float32', seed);
    }
    default:
      throw new Error(`init must be one of heNormal, heUniform, glorotNormal, glorotUniform, zeros, got ${String(init)}`);
  }
}

/** The weights of a dense layer y = x W + b: kernel [in, out], bias [out]. */
export interface DenseParams {
  kernel: tf.Variable;
  bias: tf.Variable;
}

/** The weights of a 2-D convolution: kernel [kh, kw, in, out] (NHWC), bias [out]. */
export interface ConvParams {
  kernel: tf.Variable;
  bias: tf.Variable;
}

/** The per-channel scale and shift of a normalisation layer, each [channels]. */
export interface NormParams {
  gamma: tf.Variable;
  beta: tf.Variable;
}

/**
 * Creates a model's variables one by one, in the order the constructor asks for them. Variable k
 * is drawn with seed deriveSeed(seed, k), so every weight is reproducible from the model's seed;
 * given `weights` (a clone or a checkpoint), variable k is a copy of weights[k] instead.
 */
export class ParamBuilder {
  /** The variables made so far, in creation order (the model's trainableVariables). */
  readonly variables: tf.Variable[] = [];
  /** A dotted path per variable ("down.1.res.0.conv1.kernel"), for messages and checkpoints. */
  readonly names: string[] = [];

  constructor(
    private readonly seed: number,
    private readonly weights?: readonly tf.Tensor[],
  ) {
    checkInteger('seed', seed, 0);
    if (weights && !Array.isArray(weights)) throw new Error(`weights must be an array of tensors, got ${String(weights)}`);
  }

  /** A new variable named `name` of `shape`, drawn by `draw(seed)` unless copied from weights. */
  variable(name: string, shape: number[], draw: (seed: number) => tf.Tensor): tf.Variable {
    const k = this.variables.length;
    const v = tf.tidy(() => {
      if (!this.weights) return tf.variable(draw(deriveSeed(this.seed, k)));
      const w = this.weights[k];
      if (!(w instanceof tf.Tensor)) {
        throw new Error(`weights[${k}] (${name}) must be a tensor of shape [${shape}], got ${String(w)}`);
      }
      if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i])) {
        throw new Error(`weights[${k}] (${name}) must have shape [${shape}], got [${w.shape}]`);
      }
      // clone() shares the buffer until either side is assigned; assign swaps buffers, so the
      // copy and the original are independent from the first optimizer step on.
      return tf.variable(w.clone().asType('float32'));
    });
    this.variables.push(v);
    this.names.push(name);
    return v;
  }

  /** A dense layer's kernel (drawn with `init`) and zero bias. */
  dense(name: string, inDim: number, outDim: number, init: KernelInit = 'glorotUniform'): DenseParams {
    return {
      kernel: this.variable(`${name}.kernel`, [inDim, outDim], (s) => initKernel([inDim, outDim], init, s)),
      bias: this.variable(`${name}.bias`, [outDim], () => tf.zeros([outDim])),
    };
  }

  /** A size x size convolution's kernel (drawn with `init`) and zero bias. */
  conv(name: string, size: number, inChannels: number, outChannels: number, init: KernelInit = 'glorotUniform'): ConvParams {
    const shape = [size, size, inChannels, outChannels];
    return {
      kernel: this.variable(`${name}.kernel`, shape, (s) => initKernel(shape, init, s)),
      bias: this.variable(`${name}.bias`, [outChannels], () => tf.zeros([outChannels])),
    };
  }

  /** A normalisation layer that starts as the identity map (gamma = 1, beta = 0). */
  norm(name: string, channels: number): NormParams {
    return {
      gamma: this.variable(`${name}.gamma`, [channels], () => tf.ones([channels])),
      beta: this.variable(`${name}.beta`, [channels], () => tf.zeros([channels])),
    };
  }

  /** Throws unless every given weight was used (a checkpoint for a different architecture). */
  finish(): void {
    if (this.weights && this.weights.length !== this.variables.length) {
      throw new Error(`weights must have ${this.variables.length} tensors for this config, got ${this.weights.length}`);
    }
  }
}

/** y = x W + b for x of shape [batch, in]. */
export function dense(x: tf.Tensor2D, p: DenseParams): tf.Tensor2D {
  return tf.tidy(() => tf.add(tf.matMul(x, p.kernel as tf.Tensor2D), p.bias));
}

/** A 2-D convolution with 'same' padding on NHWC input, plus bias; stride 2 halves H and W. */
export function conv2d(x: tf.Tensor4D, p: ConvParams, stride: 1 | 2 = 1): tf.Tensor4D {
  return tf.tidy(() => tf.add(tf.conv2d(x, p.kernel as tf.Tensor4D, stride, 'same'), p.bias));
}

/** SiLU (swish), x sigmoid(x): the nonlinearity of DDPM's U-Net. */
export function silu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/**
 * Group normalisation (Wu & He 2018) of NHWC input: each example's channels are split into
 * `groups` groups, and each (example, group) is normalised by its own mean and (biased) variance
 * over H, W and the group's channels, then scaled by gamma and shifted by beta per channel.
 * No statistic crosses examples, so an example's output never depends on the rest of the batch.
 */
export function groupNorm(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, groups: number, eps = 1e-5): tf.Tensor4D {
  checkGroupNorm(x, gamma, beta, groups, eps);
  const [batch, height, width, channels] = x.shape;
  return tf.tidy(() => {
    const grouped = tf.reshape(x, [batch, height, width, groups, channels / groups]);
    const { mean, variance } = tf.moments(grouped, [1, 2, 4], true);
    const normalised = tf.div(tf.sub(grouped, mean), tf.sqrt(tf.add(variance, eps)));
    return tf.add(tf.mul(tf.reshape(normalised, [batch, height, width, channels]), gamma), beta) as tf.Tensor4D;
  });
}

function checkGroupNorm(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, groups: number, eps: number): void {
  if (x.rank !== 4) throw new Error(`x must have shape [batch, height, width, channels], got [${x.shape}]`);
  const channels = x.shape[3];
  checkInteger('groups', groups, 1, channels);
  if (channels % groups !== 0) throw new Error(`groups must divide the ${channels} channels, got ${groups}`);
  if (gamma.size !== channels || beta.size !== channels) {
    throw new Error(`gamma and beta must have shape [${channels}], got [${gamma.shape}] and [${beta.shape}]`);
  }
  checkNumber('eps', eps, 0, Infinity, { lo: true });
}

/**
 * silu(groupNorm(x + bias)) (or without the SiLU when opts.silu is false), bias [batch, channels]
 * optional: the U-Net's "GroupNorm -> SiLU" with the time bias added first. On wasm one kernel
 * forward and one backward (groupNormSilu below); on webgpu one dispatch when no gradient is
 * recorded (lib/runtime/kernels/groupnorm-webgpu.ts); elsewhere groupNorm and silu above.
 */
export function groupNormAct(
  x: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  groups: number,
  opts: { silu?: boolean; bias?: tf.Tensor2D; eps?: number } = {},
): tf.Tensor4D {
  const eps = opts.eps ?? 1e-5;
  const act = opts.silu ?? true;
  checkGroupNorm(x, gamma, beta, groups, eps);
  const [batch, , , channels] = x.shape;
  if (opts.bias && (opts.bias.rank !== 2 || opts.bias.shape[0] !== batch || opts.bias.shape[1] !== channels)) {
    throw new Error(`bias must have shape [${batch}, ${channels}], got [${opts.bias.shape}]`);
  }
  // wasm: one kernel forward and one backward (gradients too); webgpu: one dispatch when no gradient is recorded
  if (act && hasGroupNormSiluKernel() && x.dtype === 'float32') return groupNormSilu(x, gamma, beta, groups, opts.bias, eps);
  const fused = fusedGroupNorm(x, gamma, beta, groups, eps, act, opts.bias);
  if (fused) return fused;
  return tf.tidy(() => {
    const input = opts.bias ? tf.add(x, tf.reshape(opts.bias, [batch, 1, 1, channels])) : x;
    const y = groupNorm(input as tf.Tensor4D, gamma, beta, groups, eps);
    return act ? silu(y) : y;
  });
}

/**
 * silu(groupNorm(x + bias)): GroupNorm with its scale/shift, after an optional per-(example,
 * channel) bias [batch, channels] (the U-Net's time embedding), then SiLU. Where the backend has
 * the fused kernels (wasm) this is one kernel forward and one backward; elsewhere the same ops as
 * written out, whose numbers it matches to float32 rounding.
 */
export function groupNormSilu(x: tf.Tensor4D, gamma: tf.Tensor, beta: tf.Tensor, groups: number, bias?: tf.Tensor2D, eps = 1e-5): tf.Tensor4D {
  if (x.rank !== 4) throw new Error(`x must have shape [batch, height, width, channels], got [${x.shape}]`);
  const [batch, , , channels] = x.shape;
  if (bias !== undefined && (bias.rank !== 2 || bias.shape[0] !== batch || bias.shape[1] !== channels)) {
    throw new Error(`bias must have shape [${batch}, ${channels}] (batch, channels), got [${bias.shape}]`);
  }
  if (!hasGroupNormSiluKernel() || x.dtype !== 'float32') {
    return tf.tidy(() => silu(groupNorm(bias ? (tf.add(x, tf.reshape(bias, [batch, 1, 1, channels])) as tf.Tensor4D) : x, gamma, beta, groups, eps)));
  }
  // The same argument checks as the unfused path, before any work.
  checkInteger('groups', groups, 1, channels);
  if (channels % groups !== 0) throw new Error(`groups must divide the ${channels} channels, got ${groups}`);
  if (gamma.size !== channels || beta.size !== channels) {
    throw new Error(`gamma and beta must have shape [${channels}], got [${gamma.shape}] and [${beta.shape}]`);
  }
  checkNumber('eps', eps, 0, Infinity, { lo: true });
  return tf.tidy(() =>
    fusedGroupNormSilu(x, bias ?? tf.zeros([batch, channels]), tf.reshape(gamma, [channels]), tf.reshape(beta, [channels]), groups, eps),
  );
}

/**
 * Nearest-neighbour upsampling by 2 in H and W (each pixel becomes a 2x2 block). Written as a
 * broadcast, not tf.image.resizeNearestNeighbor: that op's cpu gradient (tfjs 4.22) offsets the
 * batch by the input's stride instead of dy's and is wrong for batch > 1.
 */
export function upsampleNearest(x: tf.Tensor4D): tf.Tensor4D {
  const [batch, height, width, channels] = x.shape;
  return tf.tidy(() => {
    const blocks = tf.mul(tf.reshape(x, [batch, height, 1, width, 1, channels]), tf.ones([1, 1, 2, 1, 2, 1]));
    return tf.reshape(blocks, [batch, 2 * height, 2 * width, channels]) as tf.Tensor4D;
  });
}
