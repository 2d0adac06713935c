/**
 * FusedAdam (lib/training/optim.ts) against tf.train.adam, the independent reference: the same weights after
 * 20 steps on cpu and on wasm (the one-kernel update of lib/runtime/kernels/adam.ts) and through the
 * tensor-op path other backends take; state saved by getWeights resumes in either optimizer.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { FusedAdam, useBestBackend } from '../lib';
import { ADAM_UPDATE, registerAdamKernels } from '../lib/runtime/kernels';
import { expectClose, expectRejects, useCpu } from './support';

function values(n: number, seed: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = Math.sin((i + 1) * 12.9898 * seed + seed) * 1.5;
  return v;
}

/** A small regression problem: three variables of different shapes and a loss with curvature. */
function problem() {
  const vars: tf.Variable[] = tf.tidy(() => [
    tf.variable(tf.tensor2d(values(5 * 4, 1), [5, 4])),
    tf.variable(tf.tensor1d(values(4, 2))),
    tf.variable(tf.tensor2d(values(4 * 2, 3), [4, 2])),
  ]);
  const x = tf.tensor2d(values(9 * 5, 4), [9, 5]);
  const y = tf.tensor2d(values(9 * 2, 5), [9, 2]);
  const loss = () =>
    tf.tidy(() => tf.losses.meanSquaredError(y, tf.matMul(tf.tanh(tf.add(tf.matMul(x, vars[0] as tf.Tensor2D), vars[1])), vars[2] as tf.Tensor2D)) as tf.Scalar);
  return { vars, loss, dispose: () => tf.dispose([...vars, x, y]) };
}

/** Runs `steps` steps of `optimizer` on a fresh problem; returns the final weights (and disposes everything). */
function train(optimizer: tf.Optimizer, steps: number, start?: Float32Array[]): Float32Array[] {
  const p = problem();
  if (start) tf.tidy(() => p.vars.forEach((v, i) => v.assign(tf.tensor(start[i], v.shape))));
  for (let i = 0; i < steps; i++) {
    tf.tidy(() => {
      const { grads } = tf.variableGrads(p.loss, p.vars);
      optimizer.applyGradients(p.vars.map((v) => ({ name: v.name, tensor: grads[v.name] })));
    });
  }
  const out = p.vars.map((v) => v.dataSync().slice() as Float32Array);
  p.dispose();
  return out;
}

function expectSameWeights(actual: Float32Array[], expected: Float32Array[], atol: number, what: string): void {
  expected.forEach((e, i) => expectClose(actual[i], e, atol, 0, `${what}, variable ${i}`));
}

// 20 steps of lr 0.01 move the weights by up to 0.2; float32 rounding of the two formulas differs
// by ~1e-7 per step, so 2e-6 leaves room for 20 steps and no room for a wrong update.
const ATOL = 2e-6;

describe('FusedAdam (lib/training/optim.ts)', function () {
  this.timeout(30000);

  afterEach(useCpu);

  for (const backend of ['cpu', 'wasm'] as const) {
    it(`matches tf.train.adam over 20 steps on ${backend} (one-kernel update), leaving no tensor behind`, async () => {
      if (backend === 'wasm') await useBestBackend({ prefer: 'wasm' });
      const reference = tf.train.adam(0.01);
      const expected = train(reference, 20);
      reference.dispose();
      const before = tf.memory().numTensors;
      const fused = new FusedAdam(0.01);
      expect(tf.getKernel(ADAM_UPDATE, backend), `the Adam kernel on ${backend} once a FusedAdam exists`).to.not.equal(undefined);
      const actual = train(fused, 20);
      fused.dispose();
      expect(tf.memory().numTensors, 'tensors left behind').to.equal(before);
      expectSameWeights(actual, expected, ATOL, `FusedAdam vs tf.train.adam on ${backend}`);
    });
  }

  it('matches tf.train.adam through the tensor-op path that backends without the kernel take', async () => {
    const reference = tf.train.adam(0.01, 0.8, 0.99, 1e-6);
    const expected = train(reference, 20);
    reference.dispose();
    // FusedAdam registers its kernels when constructed: take the cpu one away after that
    const fused = new FusedAdam(0.01, 0.8, 0.99, 1e-6);
    tf.unregisterKernel(ADAM_UPDATE, 'cpu');
    try {
      expect(tf.getKernel(ADAM_UPDATE, 'cpu'), 'no Adam kernel on cpu during this test').to.equal(undefined);
      const before = tf.memory().numTensors;
      const actual = train(fused, 20);
      fused.dispose();
      expect(tf.memory().numTensors, 'tensors left behind').to.equal(before);
      expectSameWeights(actual, expected, ATOL, 'FusedAdam (tensor ops) vs tf.train.adam');
    } finally {
      registerAdamKernels();
    }
  });

  it("resumes from getWeights, its own or tf.train.adam's, exactly where the saved optimizer would have gone", async () => {
    const straight = tf.train.adam(0.01);
    const expected = train(straight, 20);
    straight.dispose();

    // 10 steps with tf.train.adam, its state into a FusedAdam, 10 more steps.
    const first = tf.train.adam(0.01);
    const p = problem();
    for (let i = 0; i < 10; i++) first.minimize(p.loss, false, p.vars);
    const halfway = p.vars.map((v) => v.dataSync().slice() as Float32Array);
    const saved = await first.getWeights();
    expect(saved.map((w) => w.name.replace(/^.*\//, ''))).to.deep.equal(['iter', 'm', 'm', 'm', 'v', 'v', 'v']);
    const resumed = new FusedAdam(0.01);
    await resumed.setWeights(saved);
    tf.dispose(saved[0].tensor);
    first.dispose();
    p.dispose();
    expect(resumed.iterations).to.equal(10);
    const fromAdam = train(resumed, 10, halfway);

    // And FusedAdam's own state, through a second FusedAdam and through tf.train.adam.
    const own = await resumed.getWeights();
    expect(own.length).to.equal(7);
    expect(own[0].tensor.dataSync()[0]).to.equal(20);
    resumed.dispose();

    expectSameWeights(fromAdam, expected, ATOL, 'tf.train.adam state resumed in FusedAdam');

    const a = new FusedAdam(0.01);
    const b = tf.train.adam(0.01);
    const p2 = problem();
    for (let i = 0; i < 10; i++) a.minimize(p2.loss, false, p2.vars);
    const mid = p2.vars.map((v) => v.dataSync().slice() as Float32Array);
    const state = await a.getWeights();
    const c = new FusedAdam(0.01);
    await c.setWeights(state);
    await b.setWeights(state.map((w) => ({ name: w.name, tensor: w.tensor.clone() })));
    a.dispose();
    p2.dispose();
    expectSameWeights(train(c, 10, mid), expected, ATOL, 'FusedAdam state resumed in FusedAdam');
    expectSameWeights(train(b, 10, mid), expected, ATOL, 'FusedAdam state resumed in tf.train.adam');
    c.dispose();
    b.dispose();
  });

  it('rejects bad hyperparameters, a missing gradient and a changed set of variables, naming them', async () => {
    expect(() => new FusedAdam(0)).to.throw(/learningRate must be .*got 0/);
    expect(() => new FusedAdam(0.01, 1)).to.throw(/beta1 must be .*got 1/);
    expect(() => new FusedAdam(0.01, 0.9, -0.1)).to.throw(/beta2 must be .*got -0.1/);
    const p = problem();
    const opt = new FusedAdam(0.01);
    const { grads } = tf.variableGrads(p.loss, p.vars);
    expect(() => opt.applyGradients([{ name: p.vars[0].name, tensor: grads[p.vars[0].name] }, { name: p.vars[1].name, tensor: null as never }])).to.throw(
      new RegExp(`got none for '${p.vars[1].name}'`),
    );
    opt.applyGradients(p.vars.map((v) => ({ name: v.name, tensor: grads[v.name] })));
    expect(() => opt.applyGradients([{ name: p.vars[0].name, tensor: grads[p.vars[0].name] }])).to.throw(/same, in the same order, every step/);
    await expectRejects(() => opt.setWeights([{ name: 'iter', tensor: tf.scalar(1, 'int32') }, { name: 'x/m', tensor: tf.zeros([2]) }]), /as many m as v/);
    tf.dispose(grads);
    opt.dispose();
    p.dispose();
  });
});

describe('FusedAdam registers its own kernels', function () {
  this.timeout(60000);

  it('importing lib/training/optim registers no kernel; constructing a FusedAdam registers the one-kernel step for cpu', () => {
    // A fresh process: in this one, earlier tests have registered everything already.
    const script = `
      const tf = require('@tensorflow/tfjs');
      const before = tf.getKernelsForBackend('cpu').length;
      const { FusedAdam } = require('./lib/training/optim');
      const afterImport = tf.getKernelsForBackend('cpu').length;
      new FusedAdam(1e-3).dispose();
      console.log(JSON.stringify({ before, afterImport, adam: Boolean(tf.getKernel('${ADAM_UPDATE}', 'cpu')) }));`;
    const out = require('child_process').execFileSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
      cwd: require('path').resolve(__dirname, '..'),
      encoding: 'utf8',
      timeout: 60000,
    });
    const seen = JSON.parse(out.trim().split('\n').pop()!);
    expect(seen.afterImport, 'cpu kernels after the import').to.equal(seen.before);
    expect(seen.adam, 'the Adam kernel for cpu after new FusedAdam()').to.equal(true);
  });
});
