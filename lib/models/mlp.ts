/**
 * eps_theta(x_t, t) for vector data (2-D toy sets or any D): a small MLP that sees x_t next to the
 * sinusoidal embedding of t (docs/equations.md#noise-prediction). Notebook: 05_training_2d.
 */
import * as tf from '@tensorflow/tfjs';
import type { TrainableDenoiser } from '../diffusion/denoiser';
import type { Timestep } from '../diffusion/schedule';
import { checkInteger } from '../diffusion/validate';
import { checkModelTimestep, timestepEmbedding } from './embedding';
import { DenseParams, ParamBuilder, dense, silu } from './layers';

/** The architecture of an MlpDenoiser; every field has a default. */
export type MlpDenoiserConfig = {
  /** D, the length of each data vector. */
  dataDim: number;
  /** Width of each hidden layer. */
  hidden: number;
  /** Number of hidden (dense -> SiLU) layers. */
  depth: number;
  /** Length of the sinusoidal embedding of t (even). */
  embedDim: number;
  /** Every weight is drawn from a seed derived from this one. */
  seed: number;
};

const MLP_DEFAULTS: MlpDenoiserConfig = { dataDim: 2, hidden: 128, depth: 3, embedDim: 32, seed: 0 };

/**
 * eps_theta for data of shape [batch, dataDim]: concat(x_t, embedding(t)) -> [dense -> SiLU] x depth
 * -> dense(dataDim).
 */
export class MlpDenoiser implements TrainableDenoiser {
  readonly config: MlpDenoiserConfig;
  /** The shape of one example, [dataDim]: train() checks data against it without running the model. */
  readonly inputShape: readonly number[];
  readonly trainableVariables: tf.Variable[];
  /** One dotted name per trainable variable, in the same order. */
  readonly variableNames: string[];
  private readonly hiddenLayers: DenseParams[];
  private readonly outputLayer: DenseParams;

  /** Builds the model from `config` (defaults filled in); `weights` (in trainableVariables order) are copied instead of drawn. */
  constructor(config: Partial<MlpDenoiserConfig> = {}, weights?: readonly tf.Tensor[]) {
    const c: MlpDenoiserConfig = { ...MLP_DEFAULTS, ...config };
    checkInteger('dataDim', c.dataDim, 1);
    checkInteger('hidden', c.hidden, 1);
    checkInteger('depth', c.depth, 1);
    checkInteger('embedDim', c.embedDim, 2);
    if (c.embedDim % 2 !== 0) throw new Error(`embedDim must be an even integer >= 2, got ${c.embedDim}`);
    checkInteger('seed', c.seed, 0);
    this.config = Object.freeze(c);
    this.inputShape = Object.freeze([c.dataDim]);

    const p = new ParamBuilder(c.seed, weights);
    this.hiddenLayers = [];
    for (let i = 0; i < c.depth; i++) {
      const inDim = i === 0 ? c.dataDim + c.embedDim : c.hidden;
      this.hiddenLayers.push(p.dense(`hidden.${i}`, inDim, c.hidden));
    }
    this.outputLayer = p.dense('out', c.hidden, c.dataDim);
    p.finish();
    this.trainableVariables = p.variables;
    this.variableNames = p.names;
  }

  /** eps_theta(x_t, t) for x_t of shape [batch, dataDim]; t is one number or an int32 tensor [batch]. */
  predictEps(xt: tf.Tensor, t: Timestep): tf.Tensor2D {
    const D = this.config.dataDim;
    if (!(xt instanceof tf.Tensor) || xt.rank !== 2 || xt.shape[1] !== D) {
      throw new Error(`xt must have shape [batch, ${D}], got ${xt instanceof tf.Tensor ? `[${xt.shape}]` : String(xt)}`);
    }
    const batch = xt.shape[0];
    checkInteger('xt batch size', batch, 1);
    checkModelTimestep(t, batch);
    return tf.tidy(() => {
      const x = tf.cast(xt, 'float32') as tf.Tensor2D;
      const [first, ...rest] = this.hiddenLayers;
      let h: tf.Tensor2D;
      if (typeof t === 'number') {
        // One t for the whole batch (the samplers): concat(x, emb) W + b = x W_x + (emb W_emb + b),
        // and the bracket is one row, computed once instead of a [batch, embedDim] block per example.
        const { embedDim } = this.config;
        const hidden = this.config.hidden;
        const kernel = first.kernel as tf.Tensor2D;
        const row = tf.add(tf.matMul(timestepEmbedding(t, 1, embedDim), tf.slice(kernel, [D, 0], [embedDim, hidden])), first.bias);
        h = silu(tf.add(tf.matMul(x, tf.slice(kernel, [0, 0], [D, hidden])), row));
      } else {
        h = silu(dense(tf.concat([x, timestepEmbedding(t, batch, this.config.embedDim)], 1), first));
      }
      for (const layer of rest) h = silu(dense(h, layer));
      return dense(h, this.outputLayer);
    });
  }

  /** A new MlpDenoiser with the same config and copies of the current weights. */
  clone(): MlpDenoiser {
    return new MlpDenoiser(this.config, this.trainableVariables);
  }

  /** Frees the weights; the model cannot be used afterwards. */
  dispose(): void {
    for (const v of this.trainableVariables) v.dispose();
  }
}
