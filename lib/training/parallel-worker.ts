/**
 * A training worker thread (lib/training/parallel.ts): on 'init' it sets up TensorFlow.js on the
 * caller's backend and builds a replica of the model; on each 'step' it takes the caller's weights
 * and one slice of the batch, and answers the slice's mean loss and its gradient, flat in the
 * model's trainableVariables order. Every reply is { ok, value } or { ok: false, error }.
 */
import { parentPort } from 'worker_threads';
import * as tf from '@tensorflow/tfjs';
import type { TrainableDenoiser } from '../diffusion/denoiser';
import type { LossType } from '../diffusion/loss';
import { Schedule, ScheduleConfig } from '../diffusion/schedule';
import { useBestBackend } from '../runtime/backend';
import { buildModel } from './checkpoint';
import { flatten } from './parallel';
import type { ModelKind } from './checkpoint';
import { batchLoss } from './train';

let model: TrainableDenoiser | null = null;
let schedule: Schedule | null = null;
let lossType: LossType = 'simple';

async function init(m: { backend: string; kind: ModelKind; config: Record<string, unknown>; betas: number[]; scheduleConfig: ScheduleConfig; loss: LossType }): Promise<string> {
  await useBestBackend({ prefer: m.backend, preferLabel: 'the training backend' });
  // the cpu backend's "install tfjs-node" banner: the calling thread has already shown it, once
  const cpu = tf.findBackend('cpu') as { firstUse?: boolean } | null;
  if (cpu) cpu.firstUse = false;
  model = buildModel(m.kind, m.config);
  schedule = new Schedule(m.betas, m.scheduleConfig);
  lossType = m.loss;
  return tf.getBackend();
}

function step(m: { weights: Float32Array; x0: Float32Array; eps: Float32Array; t: Int32Array; c: Int32Array | null; shape: number[] }): { loss: number; grads: Float32Array } {
  if (!model || !schedule) throw new Error('step before init');
  const vars = model.trainableVariables;
  let at = 0;
  for (const v of vars) {
    const w = tf.tensor(m.weights.subarray(at, at + v.size), v.shape, 'float32');
    v.assign(w);
    w.dispose();
    at += v.size;
  }
  if (at !== m.weights.length) throw new Error(`the weights hold ${m.weights.length} numbers, the model ${at}`);
  const net = model;
  const s = schedule;
  const { value, grads } = tf.tidy(() => {
    const x0 = tf.tensor(m.x0, m.shape, 'float32');
    const eps = tf.tensor(m.eps, m.shape, 'float32');
    return tf.variableGrads(() => batchLoss(net, s, lossType, x0, eps, m.t, m.c), vars);
  });
  const flat = flatten(vars.map((v) => grads[v.name]));
  const loss = value.dataSync()[0];
  tf.dispose([value, ...Object.values(grads)]);
  return { loss, grads: flat };
}

parentPort!.on('message', async (m: { type: string }) => {
  try {
    if (m.type === 'init') {
      parentPort!.postMessage({ ok: true, value: await init(m as never) });
    } else if (m.type === 'step') {
      const r = step(m as never);
      parentPort!.postMessage({ ok: true, value: r }, [r.grads.buffer as ArrayBuffer]);
    } else {
      throw new Error(`unknown message type '${m.type}'`);
    }
  } catch (err) {
    parentPort!.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) });
  }
});
