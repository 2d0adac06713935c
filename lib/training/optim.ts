/**
 * Adam (Kingma & Ba 2015) with all of a model's weights updated at once: the gradients and the
 * weights are concatenated into one flat vector each, the moments are kept as one flat vector each,
 * and one chain of about fifteen kernels updates everything. tf.train.adam runs about fifteen
 * kernels per variable instead (2,300 per step for the U-Net's 150 variables), and on the CPU
 * backends those kernel launches, not the arithmetic, are what a step costs. The arithmetic is
 * Adam's, as tf.train.adam does it:
 *   m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2,
 *   w <- w - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + epsilon).
 * getWeights()/setWeights() use tf.train.adam's format ([iterations, m per variable, v per
 * variable], matched to variables by position), so either optimizer resumes the other's state.
 */
import * as tf from '@tensorflow/tfjs';
import { ADAM_UPDATE, hasAdamKernel, registerAdamKernels } from '../runtime/kernels/adam';
import { registerWebgpuKernels } from '../runtime/kernels/webgpu';
import { checkNumber } from '../diffusion/validate';

/** A tensor with a name, as optimizers take gradients and give their state (tfjs-core's NamedTensor). */
export type NamedTensor = { name: string; tensor: tf.Tensor };

/** One variable's place in the flat vectors. */
interface Slot {
  shape: number[];
  size: number;
}

/** Adam over flat moment vectors; a drop-in for tf.train.adam(learningRate, beta1, beta2, epsilon). */
export class FusedAdam extends tf.Optimizer {
  static get className(): string {
    return 'FusedAdam';
  }

  readonly epsilon: number;
  private slots: Slot[] | null = null;
  private m: tf.Variable | null = null;
  private v: tf.Variable | null = null;
  /** Tensors handed out by the last getWeights(), owned here (as tf.train.adam owns its moments). */
  private exported: tf.Tensor[] = [];
  /** The variable names of the last step (or of the restored state), for getWeights' `${name}/m`. */
  private savedNames: string[] | null = null;

  constructor(
    /** The step size of the next applyGradients; train() lowers it step by step under lrSchedule 'cosine'. */
    public learningRate = 0.001,
    readonly beta1 = 0.9,
    readonly beta2 = 0.999,
    epsilon?: number | null,
  ) {
    super();
    // The kernels this optimizer runs, registered by it (idempotent) rather than by importing a module:
    // a backend set with tf.setBackend directly, not through useBestBackend, still gets the one-kernel step.
    registerAdamKernels();
    registerWebgpuKernels();
    checkNumber('learningRate', learningRate, 0, Infinity, { lo: true, hi: true });
    checkNumber('beta1', beta1, 0, 1, { hi: true });
    checkNumber('beta2', beta2, 0, 1, { hi: true });
    // tf.train.adam's default: the backend's epsilon (1e-7 on float32 backends).
    this.epsilon = epsilon ?? tf.backend().epsilon();
    checkNumber('epsilon', this.epsilon, 0, Infinity, { lo: true, hi: true });
  }

  /** One Adam step on every variable named in `variableGradients` (all of them, every step, in the same order). */
  applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    const named: NamedTensor[] = Array.isArray(variableGradients)
      ? variableGradients
      : Object.keys(variableGradients).map((name) => ({ name, tensor: variableGradients[name] }));
    const values = named.map(({ name }) => {
      const v = tf.engine().registeredVariables[name];
      if (!v) throw new Error(`FusedAdam: no variable named '${name}' is registered`);
      return v;
    });
    named.forEach(({ name, tensor }, i) => {
      if (!(tensor instanceof tf.Tensor)) {
        throw new Error(`FusedAdam: every variable needs a gradient every step; got none for '${name}' (use tf.train.adam for partial updates)`);
      }
      if (tensor.size !== values[i].size) throw new Error(`FusedAdam: the gradient of '${name}' has shape [${tensor.shape}], its variable [${values[i].shape}]`);
    });
    if (!this.slots) {
      this.slots = values.map((v) => ({ shape: v.shape.slice(), size: v.size }));
    } else if (this.slots.length !== values.length || this.slots.some((s, i) => s.size !== values[i].size)) {
      throw new Error(
        `FusedAdam: variables must be the same, in the same order, every step; started with sizes [${this.slots.map((s) => s.size)}], ` +
          `got [${values.map((v) => v.size)}]`,
      );
    }
    this.savedNames = named.map((n) => n.name);
    const total = this.slots.reduce((n, s) => n + s.size, 0);
    if (!this.m || !this.v) {
      // tf.variable keeps its initial tensor alive unless disposed: tidy frees it, keeps the variable.
      this.m = tf.tidy(() => tf.variable(tf.zeros([total]), false));
      this.v = tf.tidy(() => tf.variable(tf.zeros([total]), false));
    }
    const t = this.iterations + 1;
    const { beta1, beta2, learningRate: lr, epsilon } = this;
    const m = this.m;
    const v = this.v;
    if (hasAdamKernel()) {
      // cpu and wasm: one pass over memory (lib/runtime/kernels/adam.ts); webgpu: a few dispatches (lib/runtime/kernels/webgpu.ts).
      const inputs: tf.NamedTensorMap = { m, v };
      values.forEach((w, i) => {
        inputs[`w${i}`] = w;
        inputs[`g${i}`] = named[i].tensor;
      });
      const attrs = { count: values.length, lr, beta1, beta2, epsilon, t };
      tf.tidy(() => {
        const out = tf.engine().runKernel(ADAM_UPDATE, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
        m.assign(out[0] as tf.Tensor1D);
        v.assign(out[1] as tf.Tensor1D);
        values.forEach((w, i) => w.assign(out[i + 2]));
      });
    } else {
      // Elsewhere: the same arithmetic as one chain of tensor ops over the concatenated vectors.
      tf.tidy(() => {
        const flat = (ts: tf.Tensor[]) => (ts.length === 1 ? tf.reshape(ts[0], [-1]) : tf.concat(ts.map((x) => tf.reshape(x, [-1]))));
        const g = flat(named.map((n) => n.tensor));
        const w = flat(values);
        const newM = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const newV = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        // lr m_hat / (sqrt(v_hat) + eps), with the bias corrections 1 - beta^t folded into scalars.
        const step = tf.div(tf.mul(newM, -lr / (1 - beta1 ** t)), tf.add(tf.mul(tf.sqrt(newV), 1 / Math.sqrt(1 - beta2 ** t)), epsilon));
        const newW = tf.add(w, step);
        m.assign(newM);
        v.assign(newV);
        const parts = values.length === 1 ? [newW] : tf.split(newW, this.slots!.map((s) => s.size));
        values.forEach((variable, i) => variable.assign(tf.reshape(parts[i], variable.shape)));
      });
    }
    this.incrementIterations();
  }

  /** tf.train.adam's format: [iterations, `${name}/m` per variable, `${name}/v` per variable]; the tensors stay owned here. */
  override async getWeights(): Promise<NamedTensor[]> {
    tf.dispose(this.exported);
    this.exported = [];
    const iterations = await this.saveIterations();
    if (!this.slots || !this.m || !this.v) return [iterations];
    const names = this.variableNames();
    const split = (flat: tf.Variable) => (this.slots!.length === 1 ? [flat.clone()] : tf.split(flat, this.slots!.map((s) => s.size)));
    const ms = tf.tidy(() => split(this.m!).map((x, i) => tf.reshape(x, this.slots![i].shape)));
    const vs = tf.tidy(() => split(this.v!).map((x, i) => tf.reshape(x, this.slots![i].shape)));
    this.exported = [...ms, ...vs];
    return [
      iterations,
      ...ms.map((tensor, i) => ({ name: `${names[i]}/m`, tensor })),
      ...vs.map((tensor, i) => ({ name: `${names[i]}/v`, tensor })),
    ];
  }

  /** Restores what getWeights() (of this class or of tf.train.adam) returned; variables are matched by position. */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    if (!Array.isArray(weightValues) || weightValues.length < 1) {
      throw new Error(`FusedAdam.setWeights: weightValues must be [iterations, m..., v...], got ${String(weightValues)}`);
    }
    const rest = await this.extractIterations(weightValues);
    if (rest.length % 2 !== 0) throw new Error(`FusedAdam.setWeights: expected as many m as v tensors after iterations, got ${rest.length} tensors`);
    const count = rest.length / 2;
    const ms = rest.slice(0, count).map((w) => w.tensor);
    const vs = rest.slice(count).map((w) => w.tensor);
    ms.forEach((mi, i) => {
      if (mi.size !== vs[i].size) throw new Error(`FusedAdam.setWeights: m and v of variable ${i} differ in size (${mi.size} vs ${vs[i].size})`);
    });
    this.m?.dispose();
    this.v?.dispose();
    this.m = this.v = null;
    this.slots = null;
    if (count === 0) return;
    this.slots = ms.map((mi) => ({ shape: mi.shape.slice(), size: mi.size }));
    this.savedNames = rest.slice(0, count).map((w) => w.name.replace(/\/m$/, ''));
    const flat = (ts: tf.Tensor[]) => tf.tidy(() => tf.concat(ts.map((x) => tf.reshape(tf.cast(x, 'float32'), [-1]))));
    // As in applyGradients: without tidy the concatenated initial values (2 tensors) outlive the variables.
    this.m = tf.tidy(() => tf.variable(flat(ms), false));
    this.v = tf.tidy(() => tf.variable(flat(vs), false));
  }

  private variableNames(): string[] {
    return this.slots!.map((_, i) => this.savedNames?.[i] ?? String(i));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { learningRate: this.learningRate, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon };
  }

  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: tf.serialization.ConfigDict,
  ): T {
    return new (cls as unknown as new (...a: unknown[]) => T)(config.learningRate, config.beta1, config.beta2, config.epsilon);
  }

  override dispose(): void {
    super.dispose();
    tf.dispose(this.exported);
    this.exported = [];
    this.m?.dispose();
    this.v?.dispose();
    this.m = this.v = null;
  }
}
