/**
 * The pure parts of `npm run bench` (median, the capped timing loop, the options, the table) with
 * fake clocks, and the PyTorch port of the models (bench/torch_bench.py): the same parameters in
 * the same order and shapes as the TypeScript models, and, given the same weights, the same eps as
 * the tfjs cpu backend. No timing decides anything here.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { MlpDenoiser, UNetDenoiser } from '../lib';
import {
  BENCH_DEFAULTS,
  Measurement,
  combineRounds,
  fastestThreads,
  workerCounts,
  formatSpread,
  formatTable,
  measureSteps,
  median,
  parseBenchOptions,
  repsWithinBudget,
  roundSchedule,
  stepsRunner,
  torchEnv,
} from '../bench/core';
import { expectClose, expectRejects } from './support';

describe('bench: pure parts', () => {
  it('median is the middle order statistic (mean of the two middle ones for even counts)', () => {
    expect(median([3, 1, 2])).to.equal(2);
    expect(median([4, 1, 3, 2])).to.equal(2.5);
    expect(median([7])).to.equal(7);
    // Against the definition: at least half the values are <= m and at least half are >= m.
    let seed = 1;
    const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 100;
    for (let trial = 0; trial < 50; trial++) {
      const xs = Array.from({ length: 1 + (trial % 9) }, rand);
      const m = median(xs);
      expect(xs.filter((x) => x <= m).length * 2).to.be.at.least(xs.length);
      expect(xs.filter((x) => x >= m).length * 2).to.be.at.least(xs.length);
    }
    expect(() => median([])).to.throw(/non-empty array/);
    expect(() => median([1, NaN])).to.throw(/xs\[1\] must be a finite number, got NaN/);
  });

  /** A step whose k-th call takes durations[k] ms of a fake clock. */
  function fakeSteps(durations: number[]): { run: ReturnType<typeof stepsRunner>; calls: () => number } {
    let clock = 0;
    let k = 0;
    const step = async () => {
      clock += durations[Math.min(k++, durations.length - 1)];
    };
    return { run: stepsRunner(step, () => clock), calls: () => k };
  }

  it('measureSteps: a first step over the budget is recorded alone, marked capped', async () => {
    const f = fakeSteps([25_000, 1]);
    const m = await measureSteps(f.run, { reps: 10, budgetSeconds: 20 });
    expect(m).to.deep.equal({ status: 'capped', seconds: 25, reps: 1, budgetSeconds: 20 });
    expect(f.calls()).to.equal(1);
  });

  it('measureSteps: two warm-up steps are not timed; the median is over the timed steps', async () => {
    // warm-ups 500 and 400 ms, then timed 10, 30, 20, 40, 50 (reps 5, budget plenty)
    const f = fakeSteps([500, 400, 10, 30, 20, 40, 50]);
    const m = await measureSteps(f.run, { reps: 5, budgetSeconds: 100 });
    expect(m.status).to.equal('ok');
    const ok = m as Extract<Measurement, { status: 'ok' }>;
    expect(ok.reps).to.equal(5);
    expectClose(ok.times, [0.01, 0.03, 0.02, 0.04, 0.05], 1e-12, 0, 'timed steps');
    expectClose(ok.seconds, 0.03, 1e-12, 0, 'median');
    expectClose(ok.firstSeconds, 0.5, 1e-12, 0, 'first step');
    expect(f.calls()).to.equal(7);
  });

  it('measureSteps: slow steps under the budget get fewer timed reps, never fewer than minReps', async () => {
    // 6 s steps, budget 20 s: floor(20 / 6) = 3 timed steps; 9 s steps: 2 fit but minReps = 3.
    const six = fakeSteps([6000]);
    expect(((await measureSteps(six.run, { reps: 20, budgetSeconds: 20 })) as { reps: number }).reps).to.equal(3);
    expect(six.calls()).to.equal(5);
    const two = fakeSteps([2000]);
    expect(((await measureSteps(two.run, { reps: 20, budgetSeconds: 20 })) as { reps: number }).reps).to.equal(10);
    expect(repsWithinBudget(9, 20, 3, 20)).to.equal(3);
    expect(repsWithinBudget(0.001, 20, 3, 20)).to.equal(20);
    expect(repsWithinBudget(9, 2, 2, 20)).to.equal(2);
    await expectRejects(() => measureSteps(six.run, { reps: 0, budgetSeconds: 1 }), /reps must be an integer >= 1, got 0/);
    await expectRejects(() => measureSteps(six.run, { reps: 1, budgetSeconds: -1 }), /budgetSeconds must be a finite number > 0, got -1/);
    await expectRejects(() => measureSteps(async () => [1, 2], { reps: 1, budgetSeconds: 5 }), /must return 1 duration, got \[1,2\]/);
  });

  it('parseBenchOptions: flags over BENCH_* variables, and bad values named', () => {
    expect(parseBenchOptions([], {})).to.deep.equal(BENCH_DEFAULTS);
    const o = parseBenchOptions(['--backends', 'webgpu,cpu', '--reps=7', '--no-torch'], { BENCH_REPS: '3', BENCH_BUDGET_S: '2.5', BENCH_WORKLOADS: 'unet' });
    expect(o.backends).to.deep.equal(['cpu', 'webgpu']); // table order
    expect(o.reps).to.equal(7);
    expect(o.budgetSeconds).to.equal(2.5);
    expect(o.workloads).to.deep.equal(['unet']);
    expect(o.torch).to.equal(false);
    expect(() => parseBenchOptions(['--backends', 'cuda'], {})).to.throw(/--backends: "cuda" is not one of cpu, wasm, webgpu, tensorflow/);
    expect(() => parseBenchOptions(['--reps', '1.5'], {})).to.throw(/--reps must be an integer > 0, got "1.5"/);
    expect(() => parseBenchOptions(['--fast'], {})).to.throw(/unknown option "--fast"/);
    expect(() => parseBenchOptions([], { BENCH_TORCH: 'maybe' })).to.throw(/BENCH_TORCH must be 0, 1, true or false, got "maybe"/);
    const r = parseBenchOptions(['--rounds', '5'], { BENCH_TORCH_THREADS: '2,1,2' });
    expect(r.rounds).to.equal(5);
    expect(r.torchThreads).to.deep.equal([2, 1]);
    expect(() => parseBenchOptions(['--rounds', '0'], {})).to.throw(/--rounds must be an integer > 0, got "0"/);
    expect(() => parseBenchOptions(['--torch-threads', '1,x'], {})).to.throw(/--torch-threads must be a comma-separated list of integers >= 1, got "1,x"/);
    expect(parseBenchOptions([], {}).tfjsWorkers).to.deep.equal([1, 2]);
    expect(parseBenchOptions(['--tfjs-workers', '4,1'], {}).tfjsWorkers).to.deep.equal([4, 1]);
    expect(parseBenchOptions([], { BENCH_TFJS_WORKERS: '1' }).tfjsWorkers).to.deep.equal([1]);
    expect(() => parseBenchOptions(['--tfjs-workers', '0'], {})).to.throw(/--tfjs-workers must be a comma-separated list of integers >= 1 and <= 64, got "0"/);
  });

  it('workerCounts: train()-based workloads on wasm and cpu try every worker count, the rest one thread', () => {
    const o = { tfjsWorkers: [1, 2] };
    expect(workerCounts('wasm', 'unet', o)).to.deep.equal([1, 2]);
    expect(workerCounts('cpu', 'mlpDenoiser', o)).to.deep.equal([1, 2]);
    expect(workerCounts('wasm', 'mlp', o)).to.deep.equal([1]);
    expect(workerCounts('wasm', 'sample', o)).to.deep.equal([1]);
    expect(workerCounts('webgpu', 'unet', o)).to.deep.equal([1]);
  });

  it('roundSchedule interleaves the sides: round 1 every side, round 2 every side, ... (tfjs, PyTorch, tfjs, PyTorch)', () => {
    const sides = [{ kind: 'tfjs', backend: 'wasm' }, { kind: 'torch', threads: 1 }, { kind: 'torch', threads: 2 }] as const;
    const order = roundSchedule(3, sides).map(({ round, side }) => `${round}:${side.kind === 'tfjs' ? side.backend : `torch${side.threads}`}`);
    expect(order).to.deep.equal(['1:wasm', '1:torch1', '1:torch2', '2:wasm', '2:torch1', '2:torch2', '3:wasm', '3:torch1', '3:torch2']);
    expect(() => roundSchedule(0, sides)).to.throw(/rounds must be an integer >= 1, got 0/);
    expect(() => roundSchedule(2, [])).to.throw(/at least one side/);
  });

  const okRound = (times: number[], extra: Partial<Measurement> = {}): Measurement =>
    ({ status: 'ok', seconds: median(times), reps: times.length, times, firstSeconds: 9, ...extra }) as Measurement;

  it('combineRounds: the median of the rounds\' medians, each round\'s median kept for the spread, steps pooled', () => {
    // Round medians 2, 5 and 3 (a loaded minute in round 2): the result is 3, not the pooled median.
    const m = combineRounds([okRound([1, 2, 3], { params: 7 }), okRound([5, 5, 6]), okRound([3, 3, 4])]);
    expect(m).to.deep.equal({ status: 'ok', seconds: 3, reps: 9, times: [1, 2, 3, 5, 5, 6, 3, 3, 4], firstSeconds: 9, roundSeconds: [2, 5, 3], params: 7 });
    // A round that did not time steps stands for the whole: the first failure, else capped.
    const failed: Measurement = { status: 'failed', error: 'boom' };
    expect(combineRounds([okRound([1]), failed, { status: 'unsupported', error: 'x' }])).to.equal(failed);
    const capped = combineRounds([okRound([30]), { status: 'capped', seconds: 25, reps: 1, budgetSeconds: 20 }, okRound([40])]);
    expect(capped).to.deep.equal({ status: 'capped', seconds: 30, reps: 1, budgetSeconds: 20 });
    expect(() => combineRounds([])).to.throw(/at least one round/);
  });

  it('fastestThreads: the thread count with the lower combined median wins, and is recorded', () => {
    const one = combineRounds([okRound([0.4]), okRound([0.5]), okRound([0.45])]);
    const two = combineRounds([okRound([0.3]), okRound([0.6]), okRound([0.35])]);
    const best = fastestThreads([{ threads: 1, m: one }, { threads: 2, m: two }]);
    expect(best.status).to.equal('ok');
    expect((best as { threads: number }).threads).to.equal(2);
    expect((best as { seconds: number }).seconds).to.equal(0.35);
    // A failed thread count never wins; with no ok one the first outcome stands.
    const failed: Measurement = { status: 'failed', error: 'x' };
    expect((fastestThreads([{ threads: 1, m: failed }, { threads: 2, m: one }]) as { threads: number }).threads).to.equal(2);
    expect(fastestThreads([{ threads: 1, m: failed }, { threads: 2, m: { status: 'unsupported', error: 'y' } }])).to.equal(failed);
  });

  it('torchEnv unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for PyTorch only and says which were set', () => {
    const env = { PATH: '/usr/bin', OPENBLAS_CORETYPE: 'Haswell', OPENBLAS_L2_SIZE: '524288', OPENBLAS_NUM_THREADS: '2', EMPTY: undefined };
    const r = torchEnv(env);
    expect(r.env).to.deep.equal({ PATH: '/usr/bin', OPENBLAS_NUM_THREADS: '2' });
    expect(r.unset).to.deep.equal(['OPENBLAS_CORETYPE=Haswell', 'OPENBLAS_L2_SIZE=524288']);
    expect(env.OPENBLAS_CORETYPE, 'the caller\'s environment is untouched').to.equal('Haswell');
    expect(torchEnv({ PATH: '/bin' }).unset).to.deep.equal([]);
  });

  it('formatTable: a cell over rounds shows the range of the round medians, PyTorch its thread count, backends their label', () => {
    const wasm = combineRounds([okRound([2.1]), okRound([2.9]), okRound([2.5])]);
    const torch = fastestThreads([{ threads: 2, m: combineRounds([okRound([0.4]), okRound([0.5]), okRound([0.45])]) }]);
    const table = formatTable({
      workloads: ['unet'],
      backends: ['wasm'],
      backendLabels: { wasm: 'wasm (1 thread, SIMD)' },
      results: { wasm: { unet: wasm } },
      torch: { unet: torch },
      torchLabel: 'PyTorch',
      unetBatch: 32,
    });
    const lines = table.split('\n');
    expect(lines[0]).to.equal('| workload | wasm (1 thread, SIMD) | PyTorch |');
    // 2.5 / 0.45 = 5.56
    expect(lines[2]).to.equal('| UNetDenoiser (MNIST default), batch 32: Adam step | 2.50 s [2.10–2.90 s] (5.56×) | 450 ms [400–500 ms], 2 thr |');
    expect(formatSpread([0.0004, 0.0012])).to.equal('0.40–1.20 ms');
  });

  it('formatTable: times with the ratio to PyTorch, capped cells marked, errors as numbered notes', () => {
    const ok = (seconds: number): Measurement => ({ status: 'ok', seconds, reps: 5, times: [seconds], firstSeconds: seconds });
    const table = formatTable({
      workloads: ['mlp', 'unet'],
      backends: ['cpu', 'wasm', 'webgpu'],
      results: {
        cpu: { mlp: ok(0.084), unet: { status: 'capped', seconds: 270, reps: 1, budgetSeconds: 20 } },
        wasm: { mlp: ok(0.028), unet: { status: 'unsupported', error: "Kernel 'Conv2DBackpropFilter' not registered | wasm" } },
        webgpu: { mlp: { status: 'timedOut', seconds: 900 }, unet: { status: 'failed', error: 'crashed' } },
      },
      torch: { mlp: ok(0.0031), unet: ok(0.5) },
      torchLabel: 'PyTorch 1.13',
      unetBatch: 32,
    });
    const lines = table.split('\n');
    expect(lines[0]).to.equal('| workload | cpu | wasm | webgpu | PyTorch 1.13 |');
    expect(lines[1]).to.equal('| --- | ---: | ---: | ---: | ---: |');
    // 0.084 / 0.0031 = 27.1, 0.028 / 0.0031 = 9.03, 270 / 0.5 = 540
    expect(lines[2]).to.equal('| MLP 3→128→128→128→2, batch 256: Adam step | 84.0 ms (27.1×) | 28.0 ms (9.03×) | > 900 s (killed) | 3.10 ms |');
    expect(lines[3]).to.equal(
      '| UNetDenoiser (MNIST default), batch 32: Adam step | 270 s (1 step, capped) (540×) | unsupported [1] | **failed** [2] | 500 ms |',
    );
    expect(table).to.include("[1] Kernel 'Conv2DBackpropFilter' not registered | wasm");
    expect(table).to.include('[2] crashed');
    const cappedRef = formatTable({
      workloads: ['sample'],
      backends: ['wasm'],
      results: { wasm: { sample: ok(4.67) } },
      torch: { sample: { status: 'capped', seconds: 75, reps: 1, budgetSeconds: 20 } },
      unetBatch: 32,
    });
    expect(cappedRef.split('\n')[2]).to.equal('| 256 2-D samples, T = 1000, MlpDenoiser (sampleDDPM) | 4.67 s | 75.0 s (1 step, capped) |');
    const noTorch = formatTable({ workloads: ['sample'], backends: ['cpu'], results: {}, torch: null, unetBatch: 32 });
    expect(noTorch.split('\n')[2]).to.equal('| 256 2-D samples, T = 1000, MlpDenoiser (sampleDDPM) | not run |');
  });
});

const PYTHON = process.env.BENCH_PYTHON || '/usr/bin/python3';
const TORCH_SCRIPT = path.join(__dirname, '..', 'bench', 'torch_bench.py');

/** The port's parameters per model; null with the reason when Python cannot import torch. */
function portParams(): { params: Record<string, { names: string[]; shapes: number[][]; params: number }> } | { skip: string } {
  const r = spawnSync(PYTHON, [TORCH_SCRIPT, 'params', '{"threads": 1}'], { encoding: 'utf8', timeout: 60000 });
  if (r.error) return { skip: `${PYTHON} did not run (${r.error.message})` };
  const stderr = (r.stderr || '').trim();
  if (r.status !== 0 && /No module named '?torch/.test(stderr)) return { skip: `${PYTHON} cannot import torch (${stderr.split('\n').pop()})` };
  if (r.status !== 0) throw new Error(`bench/torch_bench.py params failed (exit ${r.status}): ${stderr}`);
  return { params: JSON.parse(r.stdout) };
}

describe('bench: the PyTorch port of the models (bench/torch_bench.py)', function () {
  // Two Python processes that import torch (2 to 5 s each on 2 busy cores).
  this.timeout(60000);

  let port: Record<string, { names: string[]; shapes: number[][]; params: number }> = {};

  before(function () {
    const r = portParams();
    if ('skip' in r) {
      console.log(`      skipped: ${r.skip}; the bench then runs without PyTorch`);
      this.skip();
    } else {
      port = r.params;
    }
  });

  it('creates the same parameters, in the same order and shapes, as the TypeScript models (bench configs)', () => {
    for (const [key, model] of [
      ['mlpDenoiser', new MlpDenoiser({ seed: 0 })],
      ['unet', new UNetDenoiser({ seed: 0 })],
    ] as const) {
      expect(port[key].names, `${key} parameter names`).to.deep.equal(model.variableNames);
      expect(port[key].shapes, `${key} parameter shapes`).to.deep.equal(model.trainableVariables.map((v) => v.shape));
      expect(port[key].params, `${key} parameter count`).to.equal(model.trainableVariables.reduce((n, v) => n + v.size, 0));
      model.dispose();
    }
  });

  /** The eps of TS models on cpu and of the port given the same weights and inputs, in one Python call. */
  type Case = { kind: 'mlp' | 'unet'; model: MlpDenoiser | UNetDenoiser; shape: number[]; t: number[] };
  let cases: (Case & { eps: Float32Array; port: { eps: number[]; params: number } })[] = [];

  before(function () {
    const wanted: Case[] = [
      { kind: 'mlp', model: new MlpDenoiser({ seed: 3 }), shape: [16, 2], t: Array.from({ length: 16 }, (_, i) => 1 + 61 * i) },
      {
        kind: 'unet',
        model: new UNetDenoiser({ imageSize: 8, baseChannels: 8, groups: 4, channelMults: [1, 2, 2], attention: true, zeroInitOutput: false, seed: 5 }),
        shape: [2, 8, 8, 1],
        t: [3, 900],
      },
    ];
    const requests = wanted.map((c) => {
      const xt = tf.randomNormal(c.shape, 0, 1, 'float32', 11);
      const eps = tf.tidy(() => c.model.predictEps(xt, tf.tensor1d(c.t, 'int32')));
      const request = {
        model: c.kind,
        config: c.model.config,
        weights: c.model.trainableVariables.map((v) => Array.from(v.dataSync())),
        xt: Array.from(xt.dataSync()),
        shape: c.shape,
        t: c.t,
      };
      cases.push({ ...c, eps: eps.dataSync() as Float32Array, port: { eps: [], params: 0 } });
      tf.dispose([xt, eps]);
      return request;
    });
    const out = JSON.parse(
      execFileSync(PYTHON, [TORCH_SCRIPT, 'forward', '{"threads": 1}'], { input: JSON.stringify(requests), encoding: 'utf8', maxBuffer: 64 << 20 }),
    );
    cases.forEach((c, i) => (c.port = out[i]));
  });

  after(() => {
    cases.forEach((c) => c.model.dispose());
    cases = [];
  });

  function check(kind: 'mlp' | 'unet'): void {
    const c = cases.find((x) => x.kind === kind)!;
    expect(c.port.params).to.equal(c.model.trainableVariables.reduce((n, v) => n + v.size, 0));
    // float32 in both, different summation orders (tfjs cpu vs PyTorch's oneDNN): ~1e-6 relative
    // per reduction over a few dozen layers; 1e-4 + 1e-4 |eps| leaves room and still catches any
    // wrong layer, padding, ordering or layout (those change eps by O(1): a stride-2 conv padded
    // on the wrong side moved eps[0] from 0.03 to 0.63 when tried).
    expectClose(c.port.eps, c.eps, 1e-4, 1e-4, `${kind} eps, PyTorch port vs tfjs`);
  }

  it('MlpDenoiser: given the same weights, the port computes the same eps as tfjs', () => check('mlp'));

  it('UNetDenoiser (stride-2 "same" padding, attention, skips, no zero init): the same eps as tfjs', () => check('unet'));
});
