/**
 * eps_theta(x_t, t) for images (docs/equations.md#noise-prediction): the U-Net of DDPM (Ho et al.
 * 2020, after PixelCNN++), scaled down for 28x28 images. Residual blocks with GroupNorm, SiLU and a
 * per-channel bias from the time embedding; stride-2 convs down, nearest-neighbour + conv up; the
 * down path's activations concatenated into the up path; single-head self-attention at the lowest
 * resolution. No dropout. With numClasses it is class-conditional (docs/equations.md#guidance): a
 * learned class embedding is added to the time embedding, and the null class numClasses means "no
 * class". Notebooks: 07_mnist, 08_guidance.
 */
import * as tf from '@tensorflow/tfjs';
import type { TrainableDenoiser } from '../diffusion/denoiser';
import { ClassLabel, ConditionalDenoiser, checkClassLabel } from '../diffusion/guidance';
import type { Timestep } from '../diffusion/schedule';
import { checkInteger } from '../diffusion/validate';
import { checkModelTimestep, timestepEmbedding } from './embedding';
import { ConvParams, DenseParams, NormParams, ParamBuilder, conv2d, dense, groupNormAct, silu, upsampleNearest } from './layers';

/** The architecture of a UNetDenoiser; every field has a default. */
export type UNetDenoiserConfig = {
  /** Height = width of the (square) images. */
  imageSize: number;
  /** Channels of the images (1 for MNIST). */
  channels: number;
  /** Channels at full resolution; level i has baseChannels * channelMults[i]. */
  baseChannels: number;
  /** One entry per resolution level; each level after the first halves the resolution. */
  channelMults: number[];
  /** Residual blocks per level on the way down (the way up has one more, as in DDPM). */
  numResBlocks: number;
  /** Self-attention at the lowest resolution (7x7 for 28x28 with three levels). */
  attention: boolean;
  /** Groups of every GroupNorm; must divide every level's channel count. */
  groups: number;
  /**
   * Zero-initialise the last conv of each residual block, the attention output projection and the
   * output conv, as DDPM does: each block starts as the identity and the model predicts eps = 0.
   * Gradient checks turn it off so that every weight gets a non-trivial gradient.
   */
  zeroInitOutput: boolean;
  /** Every weight is drawn from a seed derived from this one. */
  seed: number;
  /**
   * Class-conditional with this many classes (0 .. numClasses - 1) when set and >= 1: a learned
   * embedding row per class, plus one for the null class, is added to the time embedding. Left out
   * (or 0), the model is unconditional and exactly the model it was without the option.
   */
  numClasses?: number;
  /** The label meaning "no class"; it must be numClasses (the default), recorded so that checkpoints carry it. */
  nullClass?: number;
};

const UNET_DEFAULTS: UNetDenoiserConfig = {
  imageSize: 28,
  channels: 1,
  baseChannels: 32,
  channelMults: [1, 2, 2],
  numResBlocks: 1,
  attention: true,
  groups: 8,
  zeroInitOutput: true,
  seed: 0,
};

type ResBlockParams = {
  norm1: NormParams;
  conv1: ConvParams;
  timeProjection: DenseParams;
  norm2: NormParams;
  conv2: ConvParams;
  /** A 1x1 conv on the skip path, only when the block changes the channel count. */
  skip?: ConvParams;
};

type AttentionParams = { norm: NormParams; q: ConvParams; k: ConvParams; v: ConvParams; proj: ConvParams };

type Block = { res: ResBlockParams; attention?: AttentionParams };

/**
 * DDPM's residual block: GroupNorm -> SiLU -> conv3x3, plus a per-channel bias projected from the
 * time embedding, -> GroupNorm -> SiLU -> conv3x3, added to x (through a 1x1 conv if the channel
 * count changes).
 */
function resBlock(x: tf.Tensor4D, timeEmb: tf.Tensor2D, p: ResBlockParams, groups: number): tf.Tensor4D {
  let h = conv2d(groupNormAct(x, p.norm1.gamma, p.norm1.beta, groups), p.conv1);
  const timeBias = dense(silu(timeEmb), p.timeProjection);
  // The time bias is added inside the second GroupNorm's kernel (one dispatch on webgpu).
  h = conv2d(groupNormAct(h, p.norm2.gamma, p.norm2.beta, groups, { bias: timeBias }), p.conv2);
  return tf.add(p.skip ? conv2d(x, p.skip) : x, h);
}

/**
 * Single-head self-attention over the H*W positions of each example, added back to x:
 * softmax(q k^T / sqrt(C)) v, with q, k, v and the output projection as 1x1 convs.
 */
function selfAttention(x: tf.Tensor4D, p: AttentionParams, groups: number): tf.Tensor4D {
  const [batch, height, width, C] = x.shape;
  const h = groupNormAct(x, p.norm.gamma, p.norm.beta, groups, { silu: false });
  const positions = (y: tf.Tensor4D) => tf.reshape(y, [batch, height * width, C]) as tf.Tensor3D;
  const q = positions(conv2d(h, p.q));
  const k = positions(conv2d(h, p.k));
  const v = positions(conv2d(h, p.v));
  const weights = tf.softmax(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(C)));
  const attended = tf.reshape(tf.matMul(weights, v), [batch, height, width, C]) as tf.Tensor4D;
  return tf.add(x, conv2d(attended, p.proj));
}

/** eps_theta for images of shape [batch, imageSize, imageSize, channels] (NHWC): DDPM's U-Net. */
export class UNetDenoiser implements TrainableDenoiser, ConditionalDenoiser {
  readonly config: UNetDenoiserConfig;
  /** The shape of one example, [imageSize, imageSize, channels]: train() checks data against it without running the model. */
  readonly inputShape: readonly number[];
  /** The class count (0: unconditional) and the null class (numClasses; -1 when unconditional). */
  readonly numClasses: number;
  readonly nullClass: number;
  /** [numClasses + 1, 4 * baseChannels]: row c is added to the time embedding for class c (row numClasses: the null class). */
  private readonly classEmbedding?: tf.Variable;
  readonly trainableVariables: tf.Variable[];
  /** One dotted name per trainable variable, in the same order. */
  readonly variableNames: string[];
  private readonly timeMlp: [DenseParams, DenseParams];
  private readonly convIn: ConvParams;
  private readonly down: { blocks: Block[]; downsample?: ConvParams }[] = [];
  private readonly middle: { res1: ResBlockParams; attention?: AttentionParams; res2: ResBlockParams };
  private readonly up: { blocks: Block[]; upsample?: ConvParams }[] = [];
  private readonly outNorm: NormParams;
  private readonly convOut: ConvParams;

  /** Builds the model from `config` (defaults filled in); `weights` (in trainableVariables order) are copied instead of drawn. */
  constructor(config: Partial<UNetDenoiserConfig> = {}, weights?: readonly tf.Tensor[]) {
    const c = checkUNetConfig({ ...UNET_DEFAULTS, ...config });
    this.config = c;
    this.inputShape = Object.freeze([c.imageSize, c.imageSize, c.channels]);
    const p = new ParamBuilder(c.seed, weights);
    const residualOutInit = c.zeroInitOutput ? 'zeros' : 'glorotUniform';
    const levels = c.channelMults.length;
    const lowest = levels - 1;
    const makeRes = (name: string, inC: number, outC: number): ResBlockParams => ({
      norm1: p.norm(`${name}.norm1`, inC),
      conv1: p.conv(`${name}.conv1`, 3, inC, outC),
      timeProjection: p.dense(`${name}.timeProjection`, 4 * c.baseChannels, outC),
      norm2: p.norm(`${name}.norm2`, outC),
      conv2: p.conv(`${name}.conv2`, 3, outC, outC, residualOutInit),
      skip: inC !== outC ? p.conv(`${name}.skip`, 1, inC, outC) : undefined,
    });
    const makeAttention = (name: string, C: number): AttentionParams => ({
      norm: p.norm(`${name}.norm`, C),
      q: p.conv(`${name}.q`, 1, C, C),
      k: p.conv(`${name}.k`, 1, C, C),
      v: p.conv(`${name}.v`, 1, C, C),
      proj: p.conv(`${name}.proj`, 1, C, C, residualOutInit),
    });

    // Built in forward order; skipChannels mirrors the stack of activations the up path consumes.
    this.timeMlp = [p.dense('time.0', c.baseChannels, 4 * c.baseChannels), p.dense('time.1', 4 * c.baseChannels, 4 * c.baseChannels)];
    this.convIn = p.conv('convIn', 3, c.channels, c.baseChannels);
    let C = c.baseChannels;
    const skipChannels = [C];
    for (let i = 0; i < levels; i++) {
      const blocks: Block[] = [];
      for (let j = 0; j < c.numResBlocks; j++) {
        const outC = c.baseChannels * c.channelMults[i];
        const res = makeRes(`down.${i}.${j}.res`, C, outC);
        C = outC;
        const attention = c.attention && i === lowest ? makeAttention(`down.${i}.${j}.attention`, C) : undefined;
        blocks.push({ res, attention });
        skipChannels.push(C);
      }
      const downsample = i < lowest ? p.conv(`down.${i}.downsample`, 3, C, C) : undefined;
      if (downsample) skipChannels.push(C);
      this.down.push({ blocks, downsample });
    }
    this.middle = {
      res1: makeRes('middle.res1', C, C),
      attention: c.attention ? makeAttention('middle.attention', C) : undefined,
      res2: makeRes('middle.res2', C, C),
    };
    for (let i = lowest; i >= 0; i--) {
      const blocks: Block[] = [];
      for (let j = 0; j <= c.numResBlocks; j++) {
        const outC = c.baseChannels * c.channelMults[i];
        const res = makeRes(`up.${i}.${j}.res`, C + skipChannels.pop()!, outC);
        C = outC;
        const attention = c.attention && i === lowest ? makeAttention(`up.${i}.${j}.attention`, C) : undefined;
        blocks.push({ res, attention });
      }
      const upsample = i > 0 ? p.conv(`up.${i}.upsample`, 3, C, C) : undefined;
      this.up.push({ blocks, upsample });
    }
    this.outNorm = p.norm('out.norm', C);
    this.convOut = p.conv('out.conv', 3, C, c.channels, residualOutInit);
    // Made last, so an unconditional model's variables and their seeds are those it always had.
    this.numClasses = c.numClasses ?? 0;
    this.nullClass = this.numClasses > 0 ? this.numClasses : -1;
    if (this.numClasses > 0) {
      const shape = [this.numClasses + 1, 4 * c.baseChannels];
      // N(0, 1) rows, like torch.nn.Embedding: at initialisation each class already moves the output.
      this.classEmbedding = p.variable('classEmbedding', shape, (seed) => tf.randomNormal(shape, 0, 1, 'float32', seed));
    }
    p.finish();
    this.trainableVariables = p.variables;
    this.variableNames = p.names;
  }

  /**
   * eps_theta(x_t, t) for x_t of shape [batch, imageSize, imageSize, channels]; t is one number or an
   * int32 tensor [batch]. A conditional model takes a class c (a number or an int32 [batch] tensor;
   * left out or nullClass: unconditional); an unconditional model refuses one.
   */
  predictEps(xt: tf.Tensor, t: Timestep, c?: ClassLabel): tf.Tensor4D {
    const { imageSize: S, channels, groups } = this.config;
    const ok = xt instanceof tf.Tensor && xt.rank === 4 && xt.shape[1] === S && xt.shape[2] === S && xt.shape[3] === channels;
    if (!ok) {
      throw new Error(`xt must have shape [batch, ${S}, ${S}, ${channels}], got ${xt instanceof tf.Tensor ? `[${xt.shape}]` : String(xt)}`);
    }
    const batch = xt.shape[0];
    checkInteger('xt batch size', batch, 1);
    checkModelTimestep(t, batch);
    if (c !== undefined) {
      if (!this.classEmbedding) throw new Error(`c must be left out: this U-Net is unconditional (numClasses 0), got class ${c instanceof tf.Tensor ? `tensor [${c.shape}]` : String(c)}`);
      checkClassLabel(c, this.numClasses, this.nullClass, batch);
    }
    return tf.tidy(() => {
      const sinusoid = timestepEmbedding(t, batch, this.config.baseChannels);
      let timeEmb = dense(silu(dense(sinusoid, this.timeMlp[0])), this.timeMlp[1]);
      if (this.classEmbedding) {
        // A one-hot product, not tf.gather: gather's gradient (UnsortedSegmentSum) has no wasm
        // kernel in tfjs 4.22, so a gathered embedding could not train on the CPU backend that
        // notebook 08 uses; the product's gradient is a matMul everywhere. The one-hot is made
        // int32 and cast: tfjs-backend-wasm 4.22's OneHot with dtype float32 writes the int bits
        // of 1 (1.4e-45) instead of 1.0.
        const label = c ?? this.nullClass;
        const ids = typeof label === 'number' ? tf.tensor1d([label], 'int32') : label;
        const rows = tf.matMul(tf.cast(tf.oneHot(ids, this.numClasses + 1), 'float32'), this.classEmbedding);
        timeEmb = tf.add(timeEmb, rows) as tf.Tensor2D;
      }

      let h = conv2d(tf.cast(xt, 'float32') as tf.Tensor4D, this.convIn);
      const skips: tf.Tensor4D[] = [h];
      for (const level of this.down) {
        for (const block of level.blocks) {
          h = resBlock(h, timeEmb, block.res, groups);
          if (block.attention) h = selfAttention(h, block.attention, groups);
          skips.push(h);
        }
        if (level.downsample) {
          h = conv2d(h, level.downsample, 2);
          skips.push(h);
        }
      }

      h = resBlock(h, timeEmb, this.middle.res1, groups);
      if (this.middle.attention) h = selfAttention(h, this.middle.attention, groups);
      h = resBlock(h, timeEmb, this.middle.res2, groups);

      for (const level of this.up) {
        for (const block of level.blocks) {
          h = resBlock(tf.concat([h, skips.pop()!], 3), timeEmb, block.res, groups);
          if (block.attention) h = selfAttention(h, block.attention, groups);
        }
        if (level.upsample) h = conv2d(upsampleNearest(h), level.upsample);
      }

      return conv2d(groupNormAct(h, this.outNorm.gamma, this.outNorm.beta, groups), this.convOut);
    });
  }

  /** A new UNetDenoiser with the same config and copies of the current weights. */
  clone(): UNetDenoiser {
    return new UNetDenoiser(this.config, this.trainableVariables);
  }

  /** Frees the weights; the model cannot be used afterwards. */
  dispose(): void {
    for (const v of this.trainableVariables) v.dispose();
  }
}

/** Throws unless the config describes a U-Net that can be built; returns a frozen copy. */
function checkUNetConfig(c: UNetDenoiserConfig): UNetDenoiserConfig {
  checkInteger('imageSize', c.imageSize, 1);
  checkInteger('channels', c.channels, 1);
  checkInteger('baseChannels', c.baseChannels, 2);
  if (c.baseChannels % 2 !== 0) throw new Error(`baseChannels must be even (it is the sinusoidal embedding's length), got ${c.baseChannels}`);
  if (!Array.isArray(c.channelMults) || c.channelMults.length === 0) {
    throw new Error(`channelMults must be a non-empty array of positive integers, got ${String(c.channelMults)}`);
  }
  c.channelMults.forEach((m, i) => checkInteger(`channelMults[${i}]`, m, 1));
  checkInteger('numResBlocks', c.numResBlocks, 1);
  checkInteger('groups', c.groups, 1);
  for (const m of c.channelMults) {
    if ((c.baseChannels * m) % c.groups !== 0) {
      throw new Error(`groups must divide every level's channels (baseChannels * channelMults = ${c.baseChannels * m}), got ${c.groups}`);
    }
  }
  const factor = 2 ** (c.channelMults.length - 1);
  if (c.imageSize % factor !== 0) {
    throw new Error(
      `imageSize must be divisible by 2^(levels - 1) = ${factor} (${c.channelMults.length} levels in channelMults), got ${c.imageSize}`,
    );
  }
  if (typeof c.attention !== 'boolean') throw new Error(`attention must be true or false, got ${String(c.attention)}`);
  if (typeof c.zeroInitOutput !== 'boolean') throw new Error(`zeroInitOutput must be true or false, got ${String(c.zeroInitOutput)}`);
  checkInteger('seed', c.seed, 0);
  if (c.numClasses !== undefined) checkInteger('numClasses', c.numClasses, 0);
  if (c.nullClass !== undefined) {
    if (!c.numClasses) throw new Error(`nullClass needs numClasses >= 1 (a conditional model), got nullClass ${String(c.nullClass)} with numClasses ${String(c.numClasses)}`);
    checkInteger('nullClass', c.nullClass, c.numClasses, c.numClasses);
  }
  if (c.numClasses) c = { ...c, nullClass: c.numClasses };
  return Object.freeze({ ...c, channelMults: Object.freeze([...c.channelMults]) as number[] });
}
