/**
 * The bench's tfjs workloads. Each builds its model and data on the current backend and returns a
 * `step` that does one unit of work and resolves only when the device has finished it (it reads the
 * loss back asynchronously, which works on every backend, webgpu included). bench/torch_bench.py
 * has the same workloads in PyTorch: same shapes, same initial-weight scheme, same Adam.
 *
 *   mlp          x [256, 3] -> dense 128 -> ReLU -> dense 128 -> ReLU -> dense 128 -> ReLU -> dense 2,
 *                mean squared error to a fixed target [256, 2], Adam(1e-3).
 *   conv         x [32, 28, 28, 1] -> conv3x3 32 -> ReLU -> conv3x3 32 -> ReLU -> conv3x3 1 ('same'
 *                padding, bias), mean squared error to a fixed target, Adam(1e-3).
 *   mlpDenoiser  the library's MlpDenoiser (default config) trained by the library's train() (its
 *                optimizer, its loop): batches of 256 from 10,000 swiss-roll points, T = 1000, the
 *                simple loss, lr 1e-3; each step's time is taken in train()'s onProgress with
 *                progressEvery 1, i.e. including the loss read-back that makes the device finish.
 *   unet         the library's UNetDenoiser (default config = the MNIST U-Net), the same on
 *                [unetBatch, 28, 28, 1] images in [-1, 1].
 *   sample       sampleDDPM with an MlpDenoiser (default config): 256 samples of 2-D, T = 1000.
 */
import * as tf from '@tensorflow/tfjs';
import { MlpDenoiser, UNetDenoiser, linearSchedule, sampleDDPM, swissRoll, train } from '../lib';
import type { TrainableDenoiser } from '../lib';
import { StepRunner, WorkloadName, stepsRunner } from './core';

export interface Workload {
  /** Runs n steps (or sampling runs) and resolves to each one's seconds, the device's work included. */
  run: StepRunner;
  /** Trainable parameters (0 for sampling, which trains nothing). */
  params: number;
  dispose(): void;
}

const glorot = (shape: number[], seed: number): tf.Variable => {
  const fanIn = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const fanOut = shape.slice(0, -2).reduce((a, b) => a * b, 1) * shape[shape.length - 1];
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  return tf.variable(tf.randomUniform(shape, -limit, limit, 'float32', seed));
};

/** One Adam step of `loss` over `vars`, read back asynchronously so that async backends finish it. */
function adamStep(vars: tf.Variable[], loss: () => tf.Scalar): () => Promise<void> {
  const optimizer = tf.train.adam(1e-3);
  return async () => {
    const value = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(loss, vars);
      optimizer.applyGradients(Object.keys(grads).map((name) => ({ name, tensor: grads[name] })));
      return value;
    });
    await value.data();
    value.dispose();
  };
}

const countParams = (vars: tf.Variable[]): number => vars.reduce((n, v) => n + v.size, 0);

function mlp(): Workload {
  const sizes = [3, 128, 128, 128, 2];
  const layers = sizes.slice(1).map((out, i) => ({ kernel: glorot([sizes[i], out], 10 + i), bias: tf.variable(tf.zeros([out])) }));
  const vars = layers.flatMap((l) => [l.kernel, l.bias]);
  const x = tf.randomNormal([256, 3], 0, 1, 'float32', 1);
  const target = tf.randomNormal([256, 2], 0, 1, 'float32', 2);
  const step = adamStep(vars, () => {
    let h: tf.Tensor = x;
    layers.forEach((l, i) => {
      h = tf.add(tf.matMul(h as tf.Tensor2D, l.kernel as tf.Tensor2D), l.bias);
      if (i < layers.length - 1) h = tf.relu(h);
    });
    return tf.losses.meanSquaredError(target, h) as tf.Scalar;
  });
  return { run: stepsRunner(step), params: countParams(vars), dispose: () => tf.dispose([...vars, x, target]) };
}

function conv(): Workload {
  const channels = [1, 32, 32, 1];
  const layers = channels.slice(1).map((out, i) => ({ kernel: glorot([3, 3, channels[i], out], 20 + i), bias: tf.variable(tf.zeros([out])) }));
  const vars = layers.flatMap((l) => [l.kernel, l.bias]);
  const x = tf.randomNormal([32, 28, 28, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
  const target = tf.randomNormal([32, 28, 28, 1], 0, 1, 'float32', 4);
  const step = adamStep(vars, () => {
    let h: tf.Tensor4D = x;
    layers.forEach((l, i) => {
      h = tf.add(tf.conv2d(h, l.kernel as tf.Tensor4D, 1, 'same'), l.bias) as tf.Tensor4D;
      if (i < layers.length - 1) h = tf.relu(h);
    });
    return tf.losses.meanSquaredError(target, h) as tf.Scalar;
  });
  return { run: stepsRunner(step), params: countParams(vars), dispose: () => tf.dispose([...vars, x, target]) };
}

/**
 * n steps of the library's train() on `model`: one train() call of n + 1 steps with progressEvery 1
 * (a loss read-back after every step, so each step's device work is done when onProgress runs);
 * step k's time is the gap between onProgress k - 1 and k, and the first step (train()'s input
 * checks, a new optimizer) is dropped. The model keeps training across calls.
 */
function trainSteps(model: TrainableDenoiser, data: tf.Tensor, batchSize: number, workers: number): Workload {
  const schedule = linearSchedule(1000);
  let call = 0;
  const run: StepRunner = async (n) => {
    const stamps: number[] = [];
    await train({ model, schedule, data, steps: n + 1, batchSize, lr: 1e-3, seed: call++, progressEvery: 1, workers, onProgress: () => void stamps.push(performance.now()) });
    return stamps.slice(1).map((t, i) => (t - stamps[i]) / 1000);
  };
  return {
    run,
    params: countParams(model.trainableVariables),
    dispose: () => {
      model.dispose();
      data.dispose();
    },
  };
}

function sample(): Workload {
  const model = new MlpDenoiser({ seed: 0 });
  const s = linearSchedule(1000);
  let run = 0;
  const step = async () => {
    const { x0 } = await sampleDDPM(model, s, [256, 2], { seed: run++ });
    await x0.data();
    x0.dispose();
  };
  return {
    run: stepsRunner(step),
    params: 0,
    dispose: () => model.dispose(),
  };
}

/** Builds workload `name` on the current backend. */
export function buildWorkload(name: WorkloadName, o: { unetBatch: number; workers?: number }): Workload {
  const workers = o.workers ?? 1;
  switch (name) {
    case 'mlp':
      return mlp();
    case 'conv':
      return conv();
    case 'mlpDenoiser':
      return trainSteps(new MlpDenoiser({ seed: 0 }), swissRoll(10000, { seed: 1 }), 256, workers);
    case 'unet': {
      const images = tf.randomUniform([Math.max(256, o.unetBatch), 28, 28, 1], -1, 1, 'float32', 5);
      return trainSteps(new UNetDenoiser({ seed: 0 }), images, o.unetBatch, workers);
    }
    case 'sample':
      return sample();
    default:
      throw new Error(`unknown workload ${String(name)}`);
  }
}

/** Trainable-parameter counts of the training workloads, built on the current backend (for the PyTorch port check). */
export function tfjsParamCounts(o: { unetBatch: number }): Partial<Record<WorkloadName, number>> {
  const counts: Partial<Record<WorkloadName, number>> = {};
  for (const name of ['mlp', 'conv', 'mlpDenoiser', 'unet'] as const) {
    const w = buildWorkload(name, o);
    counts[name] = w.params;
    w.dispose();
  }
  return counts;
}
