import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  MlpDenoiser,
  TrainCheckpoint,
  TrainableDenoiser,
  UNetDenoiser,
  createOptimizer,
  gaussianMixture2d,
  linearSchedule,
  loadRun,
  loadRunForResume,
  readCheckpoint,
  saveCheckpoint,
  train,
} from '../lib';
import { MANIFEST_FILE, RUN_FORMAT_VERSION } from '../lib/training/checkpoint';
import { expectRejects } from './support';

const s = linearSchedule(20);
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-ckpt-test-'));
let counter = 0;
const freshDir = () => path.join(tmpRoot, `run${counter++}`);

const BASE = { schedule: s, batchSize: 16, emaDecay: 0.9, emaWarmup: true, seed: 3, lr: 1e-2 } as const;
const modelConfig = { hidden: 16, depth: 1, seed: 5 };

/** Saves a checkpoint the way the CLI does: losses of every step so far. */
function saver(dir: string, model: TrainableDenoiser, seed = 3, history = new Float32Array(0), initial = 0) {
  return async (c: TrainCheckpoint) => {
    const losses = new Float32Array(initial + c.losses.length);
    losses.set(history.subarray(0, initial));
    losses.set(c.losses, initial);
    await saveCheckpoint(dir, { model, ema: c.ema, optimizer: c.optimizer, schedule: s, step: c.step, seed, rngState: c.rngState, losses, skipped: c.skipped, train: { note: 'test' } });
  };
}

const values = (m: TrainableDenoiser) => m.trainableVariables.map((v) => Array.from(v.dataSync()));

/** A trained-10-steps run directory (MLP with EMA), made once per test that needs one. */
async function smallRun(): Promise<string> {
  const dir = freshDir();
  const data = gaussianMixture2d(64, { seed: 1 });
  const model = new MlpDenoiser(modelConfig);
  await train({ ...BASE, model, data, steps: 10, checkpointEvery: 10, onCheckpoint: saver(dir, model) }).then((r) => r.ema?.dispose());
  model.dispose();
  data.dispose();
  return dir;
}

function editManifest(dir: string, edit: (m: Record<string, any>) => void): void {
  const file = path.join(dir, MANIFEST_FILE);
  const m = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(m);
  fs.writeFileSync(file, JSON.stringify(m));
}

/**
 * A real model whose output turns NaN at its k-th training forward pass (training step k: one pass
 * per step of batch 16; train's shape probe on one example before the loop is not counted).
 */
function nanAtStep(real: TrainableDenoiser, k: number): TrainableDenoiser {
  let calls = 0;
  return {
    trainableVariables: real.trainableVariables,
    config: real.config,
    clone: () => real.clone(),
    dispose: () => real.dispose(),
    predictEps: (xt, t) => {
      const eps = real.predictEps(xt, t);
      if (xt.shape[0] === 1) return eps;
      return ++calls === k ? tf.tidy(() => eps.mul(NaN)) : eps;
    },
  };
}

const shardOf = (dir: string) => path.join(dir, JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')).weightsManifest[0].paths[0]);

describe('checkpoints (run directories)', () => {
  after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

  it('save then loadRun gives back the weights, the EMA, the schedule and a manifest with every field the issue names', async () => {
    const dir = freshDir();
    const data = gaussianMixture2d(64, { seed: 1 });
    const model = new MlpDenoiser(modelConfig);
    const r = await train({ ...BASE, model, data, steps: 6, checkpointEvery: 3, onCheckpoint: saver(dir, model) });
    const before = tf.memory().numTensors;
    const run = await loadRun(dir);
    expect(values(run.model)).to.deep.equal(values(model));
    expect(values(run.ema!)).to.deep.equal(values(r.ema!));
    expect(values(run.ema!)).to.not.deep.equal(values(model));
    expect(Array.from(run.losses)).to.deep.equal(Array.from(r.losses));
    expect(run.schedule.config).to.deep.equal(s.config);
    expect(Array.from(run.schedule.betas)).to.deep.equal(Array.from(s.betas));
    const m = run.manifest;
    expect(m.formatVersion).to.equal(RUN_FORMAT_VERSION);
    expect(m.libraryVersion).to.equal(JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version);
    expect(m.model).to.deep.equal({ kind: 'mlp', config: { ...model.config } });
    expect([m.step, m.seed, m.backend, m.skipped]).to.deep.equal([6, 3, 'cpu', 0]);
    expect(m.rng.state).to.have.length(5);
    expect(m.weightsManifest[0].weights.map((w) => w.name)).to.include.members(['model/hidden.0.kernel', 'ema/out.bias', 'optimizer/iter', 'optimizer/hidden.0.kernel/m', 'state/samplerOrder', 'history/losses']);
    // only the newest shard and manifest remain: the step-3 shard went once step 6 was committed
    expect(fs.readdirSync(dir).sort()).to.deep.equal([MANIFEST_FILE, 'weights-00000006.bin']);
    run.dispose();
    expect(tf.memory().numTensors, 'loadRun + dispose leaves no tensor behind').to.equal(before);
    r.ema?.dispose();
    model.dispose();
    data.dispose();
  });

  it('a tiny U-Net run saves and loads (names, shapes, values)', async () => {
    const dir = freshDir();
    const model = new UNetDenoiser({ imageSize: 8, baseChannels: 4, groups: 2, channelMults: [1, 2], seed: 2 });
    const order = Int32Array.from([1, 0, 2]);
    await saveCheckpoint(dir, { model, ema: null, optimizer: null, schedule: s, step: 0, seed: 0, rngState: { rng: [1, 2, 3, 4, NaN], samplerOrder: order, samplerPos: 3 }, losses: new Float32Array(0), skipped: 0, train: {} });
    const run = await loadRun(dir);
    expect(run.model).to.be.instanceOf(UNetDenoiser);
    expect(run.ema).to.equal(null);
    expect(values(run.model)).to.deep.equal(values(model));
    expect(run.manifest.rng.state).to.deep.equal([1, 2, 3, 4, null]);
    run.dispose();
    model.dispose();
  });

  it('a conditional U-Net run records numClasses and nullClass; loadRun rebuilds it with the same class embedding; a class count that disagrees with the weights is refused', async () => {
    const dir = freshDir();
    const model = new UNetDenoiser({ imageSize: 4, baseChannels: 4, groups: 2, channelMults: [1], attention: false, numClasses: 3, seed: 2 });
    const rngState = { rng: [1, 2, 3, 4, NaN], samplerOrder: Int32Array.from([1, 0, 2]), samplerPos: 3 };
    await saveCheckpoint(dir, { model, ema: null, optimizer: null, schedule: s, step: 0, seed: 0, rngState, losses: new Float32Array(0), skipped: 0, train: { conditional: true, pUncond: 0.1 } });
    const m = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8'));
    expect(m.model.config.numClasses).to.equal(3);
    expect(m.model.config.nullClass).to.equal(3);
    expect(m.train).to.deep.equal({ conditional: true, pUncond: 0.1 });
    const run = await loadRun(dir);
    const loaded = run.model as UNetDenoiser;
    expect([loaded.numClasses, loaded.nullClass]).to.deep.equal([3, 3]);
    expect(values(loaded)).to.deep.equal(values(model));
    // The class reaches the output: the same x_t and t with class 0 and class 2 give what the saved model gives.
    const xt = tf.randomNormal([2, 4, 4, 1], 0, 1, 'float32', 9);
    for (const c of [0, 2, 3]) {
      const [a, b] = [model.predictEps(xt, 5, c), loaded.predictEps(xt, 5, c)];
      expect(Array.from(b.dataSync()), `class ${c}`).to.deep.equal(Array.from(a.dataSync()));
      tf.dispose([a, b]);
    }
    xt.dispose();
    run.dispose();
    model.dispose();
    editManifest(dir, (mm) => Object.assign(mm.model.config, { numClasses: 4, nullClass: 4 }));
    await expectRejects(() => loadRun(dir), /model\.config\.numClasses is 4 but the weights' class embedding has 4 rows \(3 classes and the null class\): the config does not match the weights/);
    editManifest(dir, (mm) => {
      delete mm.model.config.numClasses;
      delete mm.model.config.nullClass;
    });
    await expectRejects(() => loadRun(dir), /model\.config\.numClasses is null but the weights' class embedding has 4 rows \(3 classes and the null class\)/);
    editManifest(dir, (mm) => Object.assign(mm.model.config, { numClasses: 3, nullClass: 2 }));
    await expectRejects(() => loadRun(dir), /the model config is invalid: nullClass must be an integer in \[3, 3\], got 2/);
    // An unconditional run whose manifest claims classes.
    const plain = freshDir();
    const u = new UNetDenoiser({ imageSize: 4, baseChannels: 4, groups: 2, channelMults: [1], attention: false, seed: 2 });
    await saveCheckpoint(plain, { model: u, ema: null, optimizer: null, schedule: s, step: 0, seed: 0, rngState, losses: new Float32Array(0), skipped: 0, train: {} });
    u.dispose();
    editManifest(plain, (mm) => Object.assign(mm.model.config, { numClasses: 10 }));
    await expectRejects(() => loadRun(plain), /model\.config\.numClasses is 10 but the weights' class embedding is absent \(an unconditional model\)/);
  });

  it('resume: 10 steps, saved, loaded in a fresh model, resumed to 20 equals 20 uninterrupted steps bit for bit (weights, EMA, losses); a fresh optimizer would not', async () => {
    const data = gaussianMixture2d(100, { seed: 1 });
    const m1 = new MlpDenoiser(modelConfig);
    const full = await train({ ...BASE, model: m1, data, steps: 20 });
    const dir = freshDir();
    const m2 = new MlpDenoiser(modelConfig);
    const half = await train({ ...BASE, model: m2, data, steps: 10, checkpointEvery: 10, onCheckpoint: saver(dir, m2) });
    half.ema?.dispose();
    m2.dispose();
    const r = await loadRunForResume(dir, () => createOptimizer(BASE.lr));
    const rest = await train({ ...BASE, model: r.model, ema: r.ema!, optimizer: r.optimizer, rngState: r.rngState, data, initialStep: 10, steps: 20 });
    expect(values(r.model), 'weights').to.deep.equal(values(m1));
    expect(values(r.ema!), 'EMA').to.deep.equal(values(full.ema!));
    expect(Array.from(half.losses).concat(Array.from(rest.losses)), 'losses').to.deep.equal(Array.from(full.losses));
    expect(rest.step).to.equal(20);
    // The same resume with a fresh Adam (no saved moments) drifts: the comparison above can fail.
    const r2 = await loadRunForResume(dir, () => createOptimizer(BASE.lr));
    const fresh = createOptimizer(BASE.lr);
    await train({ ...BASE, model: r2.model, ema: r2.ema!, optimizer: fresh, rngState: r2.rngState, data, initialStep: 10, steps: 20 });
    expect(values(r2.model)).to.not.deep.equal(values(m1));
    [r, r2].forEach((x) => (x.dispose(), x.optimizer.dispose()));
    fresh.dispose();
    full.ema?.dispose();
    m1.dispose();
    data.dispose();
  });

  it('a NaN loss stops at its step; the last checkpoint stays intact; skipNonFinite skips the batch and counts it', async () => {
    const data = gaussianMixture2d(64, { seed: 1 });
    const real = new MlpDenoiser(modelConfig);
    const flaky = nanAtStep(real, 15);
    const dir = freshDir();
    const save = saver(dir, real);
    let shard = Buffer.alloc(0);
    let manifestText = '';
    const onCheckpoint = async (c: TrainCheckpoint) => {
      await save(c);
      shard = fs.readFileSync(shardOf(dir));
      manifestText = fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8');
    };
    await expectRejects(() => train({ ...BASE, model: flaky, data, steps: 30, checkpointEvery: 10, onCheckpoint }), /the loss at step 15 is NaN/);
    expect(fs.readFileSync(shardOf(dir)).equals(shard), 'the step-10 shard is byte for byte what was saved').to.equal(true);
    expect(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')).to.equal(manifestText);
    const run = await loadRun(dir);
    expect(run.manifest.step).to.equal(10);
    expect(run.losses.every(Number.isFinite)).to.equal(true);
    run.dispose();

    const model2 = new MlpDenoiser(modelConfig);
    const flaky2 = nanAtStep(model2, 15);
    const r = await train({ ...BASE, emaDecay: undefined, model: flaky2, data, steps: 30, skipNonFinite: true });
    expect(r.skipped).to.equal(1);
    expect(Number.isNaN(r.losses[14])).to.equal(true);
    expect(Array.from(r.losses).filter((l) => !Number.isFinite(l))).to.have.length(1);
    expect(values(model2).flat().every(Number.isFinite), 'the skipped batch did not touch the weights').to.equal(true);
    expect(r.step).to.equal(30);
    real.dispose();
    model2.dispose();
    data.dispose();
  });

  it('an aborted signal finishes the step, checkpoints, and returns stopped = true', async () => {
    const data = gaussianMixture2d(64, { seed: 1 });
    const model = new MlpDenoiser(modelConfig);
    const controller = new AbortController();
    const saved: number[] = [];
    const r = await train({
      ...BASE,
      model,
      data,
      steps: 1000,
      progressEvery: 1,
      signal: controller.signal,
      onProgress: (p) => p.step === 7 && controller.abort(),
      onCheckpoint: (c) => void saved.push(c.step),
    });
    expect([r.stopped, r.step, r.losses.length]).to.deep.equal([true, 7, 7]);
    expect(saved).to.deep.equal([7]);
    r.ema?.dispose();
    model.dispose();
    data.dispose();
  });

  it('memory: 400 steps with a checkpoint every 50 keep numTensors flat and RSS bounded (the bench runs 10,000)', async () => {
    const data = gaussianMixture2d(256, { seed: 1 });
    const model = new MlpDenoiser(modelConfig);
    const dir = freshDir();
    const counts: number[] = [];
    const rss: number[] = [];
    const save = saver(dir, model);
    const before = tf.memory().numTensors;
    const r = await train({
      ...BASE,
      model,
      data,
      steps: 400,
      checkpointEvery: 50,
      onCheckpoint: async (c) => {
        await save(c);
        counts.push(tf.memory().numTensors);
        rss.push(process.memoryUsage().rss);
      },
    });
    expect(new Set(counts).size, `numTensors at each checkpoint: ${counts}`).to.equal(1);
    const growthMiB = (rss[rss.length - 1] - rss[1]) / 2 ** 20;
    // Measured: a few MiB of noise; a leak of the batch or the checkpoint buffers would grow it with every step.
    expect(growthMiB, `RSS from checkpoint 2 to 8: ${rss.map((x) => (x / 2 ** 20).toFixed(0))} MiB`).to.be.below(64);
    r.ema?.dispose();
    expect(tf.memory().numTensors).to.equal(before);
    model.dispose();
    data.dispose();
  });

  describe('loading rejects a damaged or foreign run with an error that says what is wrong', () => {
    it('a truncated weights file', async () => {
      const dir = await smallRun();
      const shard = shardOf(dir);
      fs.truncateSync(shard, fs.statSync(shard).size - 100);
      await expectRejects(() => loadRun(dir), /holds \d+ bytes, the manifest's tensors need \d+: the weights file is truncated/);
    });

    it('a corrupted weights file (one byte flipped, same length)', async () => {
      const dir = await smallRun();
      const shard = shardOf(dir);
      const bytes = fs.readFileSync(shard);
      bytes[200] ^= 0xff;
      fs.writeFileSync(shard, bytes);
      await expectRejects(() => loadRun(dir), /is corrupted: its sha256 is [0-9a-f]{64}, the manifest recorded [0-9a-f]{64}/);
    });

    it('a manifest from a newer format version', async () => {
      const dir = await smallRun();
      editManifest(dir, (m) => {
        m.formatVersion = RUN_FORMAT_VERSION + 1;
        m.libraryVersion = '9.0.0';
      });
      await expectRejects(() => loadRun(dir), /has format version 2, newer than the 1 this library .* reads; it was written by ddpm-workbook 9\.0\.0/);
    });

    it('a config that does not match the weights (hidden 16 -> 32; depth 1 -> 2)', async () => {
      const dir = await smallRun();
      editManifest(dir, (m) => (m.model.config.hidden = 32));
      await expectRejects(() => loadRun(dir), /the mlp config does not match the weights: model\/hidden\.0\.kernel has shape \[34,16\] in the weights file, the config .* needs \[34,32\]/);
      editManifest(dir, (m) => Object.assign(m.model.config, { hidden: 16, depth: 2 }));
      await expectRejects(() => loadRun(dir), /the weights lack model\/hidden\.1\.kernel, which the mlp config needs/);
    });

    it('a tensor with the wrong dtype or an unknown name', async () => {
      const dir = await smallRun();
      editManifest(dir, (m) => (m.weightsManifest[0].weights[0].dtype = 'int32'));
      await expectRejects(() => loadRun(dir), /model\/hidden\.0\.kernel must be float32, got int32/);
      const dir2 = await smallRun();
      editManifest(dir2, (m) => (m.weightsManifest[0].weights[0].name = 'model/extra.kernel'));
      await expectRejects(() => loadRun(dir2), /lack model\/hidden\.0\.kernel|holds model\/extra\.kernel/);
    });

    it('weight paths that leave the run directory (.., absolute, a symlink out)', async () => {
      const dir = await smallRun();
      const shard = path.basename(shardOf(dir));
      fs.copyFileSync(path.join(dir, shard), path.join(tmpRoot, 'outside.bin'));
      for (const p of ['../outside.bin', path.join(tmpRoot, 'outside.bin')]) {
        editManifest(dir, (m) => (m.weightsManifest[0].paths = [p]));
        await expectRejects(() => loadRun(dir), /leaves the run directory; refusing to read it/);
      }
      fs.symlinkSync(path.join(tmpRoot, 'outside.bin'), path.join(dir, 'link.bin'));
      editManifest(dir, (m) => (m.weightsManifest[0].paths = ['link.bin']));
      await expectRejects(() => loadRun(dir), /resolves to .*outside\.bin, outside the run directory; refusing to read it/);
    });

    it('a missing run, a missing manifest, a manifest that is not JSON, a missing shard, a bad field', async () => {
      await expectRejects(() => loadRun(path.join(tmpRoot, 'nope')), /run directory .*nope does not exist/);
      const empty = freshDir();
      fs.mkdirSync(empty);
      await expectRejects(() => loadRun(empty), /holds no run: checkpoint\.json is missing/);
      const dir = await smallRun();
      const text = fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8');
      fs.writeFileSync(path.join(dir, MANIFEST_FILE), text.slice(0, text.length / 2));
      await expectRejects(() => loadRun(dir), /checkpoint\.json is not valid JSON .*the manifest is damaged/);
      const dir2 = await smallRun();
      fs.rmSync(shardOf(dir2));
      await expectRejects(() => loadRun(dir2), /the weights file weights-00000010\.bin named by checkpoint\.json is missing/);
      const dir3 = await smallRun();
      editManifest(dir3, (m) => (m.step = -1));
      await expectRejects(() => loadRun(dir3), /step must be an integer >= 0, got -1/);
      editManifest(dir3, (m) => Object.assign(m, { step: 10, format: 'something-else' }));
      await expectRejects(() => loadRun(dir3), /format must be "ddpm-workbook-run", got "something-else"/);
    });
  });

  describe('saving fails cleanly: a clear error, no partial file, the previous checkpoint intact', () => {
    const state = (model: MlpDenoiser, step: number) => ({
      model, ema: null, optimizer: null, schedule: s, step, seed: 0,
      rngState: { rng: [1, 2, 3, 4, NaN], samplerOrder: Int32Array.from([0]), samplerPos: 1 },
      losses: new Float32Array(step).fill(1), skipped: 0, train: {},
    });

    it('a run directory whose parent is a file, or on a path no one can create (/proc)', async () => {
      const model = new MlpDenoiser(modelConfig);
      const file = path.join(tmpRoot, 'a-file');
      fs.writeFileSync(file, 'x');
      await expectRejects(() => saveCheckpoint(path.join(file, 'run'), state(model, 1)), /could not save the checkpoint of step 1 in .*a-file\/run: a parent of the path is a file, not a directory .*; no earlier checkpoint exists/);
      await expectRejects(() => saveCheckpoint('/proc/ddpm-run', state(model, 1)), /could not save the checkpoint of step 1 in \/proc\/ddpm-run: (a parent directory does not exist|permission denied|operation not permitted)/);
      model.dispose();
    });

    it('a save that fails half way (the shard cannot be renamed into place) leaves the previous checkpoint loadable and no temporary file', async () => {
      const model = new MlpDenoiser(modelConfig);
      const dir = freshDir();
      await saveCheckpoint(dir, state(model, 1));
      const manifestBefore = fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8');
      // A directory where the step-2 shard must go: the temporary file is written, the rename fails.
      fs.mkdirSync(path.join(dir, 'weights-00000002.bin', 'blocker'), { recursive: true });
      model.trainableVariables[0].assign(tf.zerosLike(model.trainableVariables[0]));
      await expectRejects(() => saveCheckpoint(dir, state(model, 2)), /could not save the checkpoint of step 2 in .*; the previous checkpoint \(step 1\) is intact/);
      expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).to.deep.equal([]);
      expect(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')).to.equal(manifestBefore);
      const { manifest, tensors } = await readCheckpoint(dir);
      expect(manifest.step).to.equal(1);
      tf.dispose(Object.values(tensors));
      model.dispose();
    });

    it('a save into a run directory another live process holds is refused naming it; its temporary files are left alone, a dead one\'s are removed', async () => {
      const model = new MlpDenoiser(modelConfig);
      const dir = freshDir();
      await saveCheckpoint(dir, state(model, 1));
      const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
      try {
        const lock = path.join(dir, 'ddpm.lock');
        fs.writeFileSync(lock, JSON.stringify({ pid: holder.pid, host: os.hostname(), command: 'ddpm train', since: '2026-12-01T00:00:00Z' }));
        const before = fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8');
        await expectRejects(() => saveCheckpoint(dir, state(model, 2)), new RegExp(`could not save the checkpoint of step 2 in .*: .* is in use: process ${holder.pid} on ${os.hostname()} .*; the previous checkpoint \\(step 1\\) is intact`));
        expect(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')).to.equal(before);
        expect(fs.readdirSync(dir).sort()).to.deep.equal([MANIFEST_FILE, 'ddpm.lock', 'weights-00000001.bin']);
        fs.rmSync(lock);
        const live = `.weights-00000009.bin.${holder.pid}.tmp`;
        const dead = `.weights-00000008.bin.${spawnSync('true').pid}.tmp`;
        fs.writeFileSync(path.join(dir, live), '');
        fs.writeFileSync(path.join(dir, dead), '');
        await saveCheckpoint(dir, state(model, 2));
        expect(fs.readdirSync(dir).sort(), 'the lock taken for the save is released; only the live process\'s temporary file stays').to.deep.equal([live, MANIFEST_FILE, 'weights-00000002.bin']);
      } finally {
        holder.kill('SIGKILL');
        model.dispose();
      }
    });
  });
});
