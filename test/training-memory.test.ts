/**
 * Every public function of lib/training leaves tf.memory().numTensors as it found it, on success
 * and on failure (issue 12, item 6: train with wrongly shaped data leaked 12 tensors per call,
 * loadRunForResume then dispose 2).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { FusedAdam, MlpDenoiser, TrainableDenoiser, buildModel, createOptimizer, gaussianMixture2d, linearSchedule, loadRun, loadRunForResume, readCheckpoint, readManifest, saveCheckpoint, train } from '../lib';
import { MANIFEST_FILE } from '../lib/training/checkpoint';
import { expectRejects } from './support';

const s = linearSchedule(20);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-memory-test-'));

/** Asserts that fn leaves numTensors unchanged, whether it resolves or rejects (a rejection must match `fails`). */
async function noLeak(what: string, fn: () => Promise<unknown> | unknown, fails?: RegExp): Promise<void> {
  const before = tf.memory().numTensors;
  if (fails) await expectRejects(async () => fn(), fails);
  else await fn();
  expect(tf.memory().numTensors - before, `${what} leaked`).to.equal(0);
}

async function trainedRun(dir: string, model: TrainableDenoiser): Promise<void> {
  const data = gaussianMixture2d(64, { seed: 1 });
  const r = await train({
    model,
    schedule: s,
    data,
    steps: 4,
    batchSize: 16,
    emaDecay: 0.9,
    checkpointEvery: 4,
    onCheckpoint: (c) =>
      saveCheckpoint(dir, { model, ema: c.ema, optimizer: c.optimizer, schedule: s, step: c.step, seed: 0, rngState: c.rngState, losses: c.losses, skipped: 0, train: {} }).then(() => undefined),
  });
  r.ema?.dispose();
  data.dispose();
}

describe('lib/training leaks no tensors, on success or failure', () => {
  const dir = path.join(tmp, 'run');
  let model: MlpDenoiser;
  before(async () => {
    model = new MlpDenoiser({ hidden: 8, depth: 1, seed: 2 });
    await trainedRun(dir, model);
  });
  after(() => {
    model.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('train: success (with EMA returned and disposed), wrongly shaped data, a bad option, a NaN loss mid-run', async () => {
    const data = gaussianMixture2d(32, { seed: 4 });
    const wrong = tf.zeros([10, 3]);
    await noLeak('train (success)', async () => (await train({ model, schedule: s, data, steps: 3, batchSize: 8, emaDecay: 0.9 })).ema?.dispose());
    for (let i = 0; i < 2; i++) {
      await noLeak('train with data [10, 3] for a 2-D model', () => train({ model, schedule: s, data: wrong, steps: 2, batchSize: 4, emaDecay: 0.9 }), /data of shape \[10,3\] does not fit the model: xt must have shape \[batch, 2\]/);
    }
    await noLeak('train with batchSize 0', () => train({ model, schedule: s, data, steps: 2, batchSize: 0 }), /batchSize/);
    const nan: TrainableDenoiser = { trainableVariables: model.trainableVariables, config: model.config, clone: () => model.clone(), dispose: () => undefined, predictEps: (xt, t) => tf.tidy(() => model.predictEps(xt, t).mul(xt.shape[0] === 1 ? 1 : NaN)) };
    await noLeak('train with a NaN loss', () => train({ model: nan, schedule: s, data, steps: 3, batchSize: 8, emaDecay: 0.9 }), /the loss at step 1 is NaN/);
    tf.dispose([data, wrong]);
  });

  it('createOptimizer / FusedAdam: a step, getWeights, setWeights into a new optimizer, dispose', async () => {
    await noLeak('FusedAdam round trip', async () => {
      const a = createOptimizer(1e-2);
      const v = tf.tidy(() => tf.variable(tf.ones([3])));
      const grad = tf.fill([3], 0.5);
      a.applyGradients({ [v.name]: grad });
      const w = await a.getWeights();
      const b = new FusedAdam(1e-2);
      await b.setWeights(w);
      // The caller owns the gradient and getWeights' iteration count (as with tf.train.adam); the
      // optimizer owns the moments it handed out.
      tf.dispose([grad, w[0].tensor]);
      a.dispose();
      b.dispose();
      v.dispose();
    });
    await noLeak('FusedAdam.setWeights with a bad list', () => new FusedAdam(1e-2).setWeights([]), /weightValues must be/);
  });

  it('saveCheckpoint: success, and a failure (the run directory under a file)', async () => {
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, '');
    const opt = createOptimizer(1e-3);
    const state = { model, ema: null, optimizer: opt, schedule: s, step: 0, seed: 0, rngState: { rng: [1, 2, 3, 4, NaN], samplerOrder: new Int32Array(4), samplerPos: 4 }, losses: new Float32Array(0), skipped: 0, train: {} };
    await noLeak('saveCheckpoint (success)', () => saveCheckpoint(path.join(tmp, 'saved'), state));
    await noLeak('saveCheckpoint (failure)', () => saveCheckpoint(path.join(file, 'run'), state), /could not save the checkpoint of step 0 .*a parent of the path is a file/);
    opt.dispose();
  });

  it('readCheckpoint, loadRun, loadRunForResume: success (then dispose) and failure (truncated shard, NaN weights)', async () => {
    await noLeak('readCheckpoint + disposing its tensors', async () => tf.dispose(Object.values((await readCheckpoint(dir)).tensors)));
    await noLeak('loadRun + dispose', async () => (await loadRun(dir)).dispose());
    await noLeak('loadRunForResume + dispose', async () => (await loadRunForResume(dir, () => createOptimizer(1e-3))).dispose());
    const cut = path.join(tmp, 'cut');
    fs.cpSync(dir, cut, { recursive: true });
    const shard = path.join(cut, readManifest(cut).weightsManifest[0].paths[0]);
    fs.truncateSync(shard, 100);
    await noLeak('loadRun (truncated)', () => loadRun(cut), /truncated/);
    await noLeak('loadRunForResume (truncated)', () => loadRunForResume(cut, () => createOptimizer(1e-3)), /truncated/);
    // NaN weights: found after decoding, the decoded tensors must still go.
    const nanDir = path.join(tmp, 'nan');
    const bad = new MlpDenoiser({ hidden: 8, depth: 1, seed: 2 });
    bad.trainableVariables[0].assign(tf.fill(bad.trainableVariables[0].shape, NaN));
    const opt = createOptimizer(1e-3);
    await saveCheckpoint(nanDir, { model: bad, ema: null, optimizer: opt, schedule: s, step: 0, seed: 0, rngState: { rng: [1, 2, 3, 4, NaN], samplerOrder: new Int32Array(4), samplerPos: 4 }, losses: new Float32Array(0), skipped: 0, train: {} });
    bad.dispose();
    opt.dispose();
    await noLeak('loadRun (NaN weights)', () => loadRun(nanDir), /holds NaN or infinite values/);
    await noLeak('loadRunForResume (NaN weights)', () => loadRunForResume(nanDir, () => createOptimizer(1e-3)), /holds NaN or infinite values/);
    // An optimizer factory that throws after the run is assembled.
    await noLeak('loadRunForResume (the optimizer factory throws)', () => loadRunForResume(dir, () => { throw new Error('no optimizer'); }), /no optimizer/);
    expect(fs.existsSync(path.join(dir, MANIFEST_FILE))).to.equal(true);
  });

  it('buildModel: a model then dispose, and a bad config', async () => {
    await noLeak('buildModel + dispose', () => buildModel('mlp', { hidden: 4, depth: 1 }).dispose());
    await noLeak('buildModel (bad unet config)', async () => buildModel('unet', { baseChannels: 6, groups: 4 }), /groups/);
  });
});
