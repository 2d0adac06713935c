/**
 * The ddpm command line, run as the user runs it: real child processes (signals, kill -9, a full
 * disk) on a bundle of lib/cli/ddpm.ts made before the tests (so they test the source, not a stale
 * dist/), and in-process main() calls for the usage errors.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import { PNG } from 'pngjs';
import * as tf from '@tensorflow/tfjs';
import {
  ConditionalDenoiser,
  MlpDenoiser,
  TrainableDenoiser,
  UNetDenoiser,
  elboTerms,
  guidedDenoiser,
  imageGrid,
  judgeAccuracy,
  judgeDigits,
  linearSchedule,
  loadMnist,
  loadRun,
  readManifest,
  sampleDDPM,
  shippedJudge,
} from '../lib';
import { MANIFEST_FILE } from '../lib/training/checkpoint';
import { bytesPerSample, chunkSeed, planChunks } from '../lib/cli/common';
import { imageGridPng } from '../lib/data/image';
import { main } from '../lib/cli/ddpm';

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'test-cli', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-cli-test-'));

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function collect(child: ChildProcess): Promise<Result> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

/** Children still running; a test that fails or times out before it stops its child leaves it here for after() to kill. */
const children = new Set<ChildProcess>();

function start(args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

const run = (args: string[], env: Record<string, string> = {}) => collect(start(args, env));

/** Resolves when the child's stream has printed text matching `pattern`. */
function waitFor(child: ChildProcess, stream: 'stdout' | 'stderr', pattern: RegExp): Promise<void> {
  let seen = '';
  return new Promise((resolve, reject) => {
    const s = child[stream]!;
    const on = (d: Buffer) => {
      seen += d;
      if (pattern.test(seen)) {
        s.off('data', on);
        resolve();
      }
    };
    s.on('data', on);
    child.on('close', () => reject(new Error(`the child exited before printing ${pattern}; it printed: ${seen}`)));
  });
}

/** A tiny, fast 2-D run: the flags every child-process training test shares. */
const MLP = ['--data', 'mixture', '--n-data', '200', '--batch', '16', '--T', '50', '--hidden', '16', '--depth', '1', '--backend', 'cpu', '--seed', '7'];

const shardBytes = (dir: string) => fs.readFileSync(path.join(dir, readManifest(dir).weightsManifest[0].paths[0]));

/** In-process main() with captured output. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: { write: (s: string) => ((out += s), true) } as never, err: { write: (s: string) => ((err += s), true) } as never });
  return { code, out, err };
}

describe('the ddpm command line', function () {
  before(() => {
    // esbuild is a devDependency; one bundle of the current source, node_modules left external.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('esbuild').buildSync({ entryPoints: [path.join(ROOT, 'lib', 'cli', 'ddpm.ts')], bundle: true, platform: 'node', packages: 'external', outfile: CLI, logLevel: 'warning' });
    // the training worker thread (--workers), which the bundle looks for beside itself
    require('esbuild').buildSync({ entryPoints: [path.join(ROOT, 'lib', 'training', 'parallel-worker.ts')], bundle: true, platform: 'node', packages: 'external', outfile: path.join(path.dirname(CLI), 'parallel-worker.js'), logLevel: 'warning' });
  });
  after(() => {
    for (const c of children) c.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('has a bin entry with a shebang, and --help for every command (exit 0)', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.bin).to.deep.equal({ ddpm: 'dist/lib/cli/ddpm.js' });
    expect(fs.readFileSync(path.join(ROOT, 'lib', 'cli', 'ddpm.ts'), 'utf8').startsWith('#!/usr/bin/env node\n')).to.equal(true);
    const top = await run(['--help']);
    expect(top.code).to.equal(0);
    expect(top.stdout).to.match(/usage: ddpm <command>[\s\S]*train[\s\S]*sample[\s\S]*eval[\s\S]*info/);
    for (const [cmd, pattern] of [['train', /--resume[\s\S]*--skip-nonfinite[\s\S]*--channels/], ['sample', /--sampler NAME[\s\S]*--eta/], ['eval', /bits\/dim/], ['info', /--json/]] as const) {
      const r = await cli(cmd, '--help');
      expect([r.code, r.err]).to.deep.equal([0, '']);
      expect(r.out).to.match(pattern);
    }
  });

  it('unknown flags and bad values are one clear line each, exit code 2', async () => {
    const out = path.join(tmp, 'usage-run');
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command "frobnicate"; the commands are train, sample, eval, info/],
      [['train', '--data', 'moons', '--out', out, '--stepz', '5'], /Unknown option '--stepz'/],
      [['train', '--data', 'moons', '--out', out, '--steps', 'abc'], /--steps must be an integer >= 1, got "abc"/],
      [['train', '--data', 'moons', '--out', out, '--steps', '1.5'], /--steps must be an integer >= 1, got "1.5"/],
      [['train', '--data', 'moons', '--out', out, '--steps', '0'], /--steps must be an integer >= 1, got "0"/],
      [['train', '--data', 'moons', '--out', out, '--lr=-1'], /--lr must be a number in \(0, 1e6\], got "-1"/],
      [['train', '--data', 'moons', '--out', out, '--lr', '-1'], /--lr must be a number in \(0, 1e6\], got "-1"/],
      [['train', '--data', 'moons', '--out', out, '--lr', 'NaN'], /--lr must be a number in \(0, 1e6\], got "NaN"/],
      [['train', '--data', 'spiral', '--out', out], /--data must be one of swissroll, moons, mixture, checkerboard, mnist, got "spiral"/],
      [['train', '--data', 'moons', '--model', 'unet', '--out', out], /--model unet needs images \(--data mnist\)/],
      [['train', '--data', 'mnist', '--model', 'mlp', '--out', out], /--model mlp needs 2-D data/],
      [['train', '--data', 'moons', '--out', out, '--ema', '1'], /--ema must be a number in \[0, 1\), got "1"/],
      [['train', '--data', 'moons', '--out', out, '--schedule', 'quadratic'], /--schedule must be one of linear, cosine, got "quadratic"/],
      [['train', '--data', 'moons', '--out', out, '--backend', 'tpu'], /--backend must be one of auto, cpu, wasm, webgpu, tensorflow, got "tpu"/],
      [['train', '--data', 'moons', '--out', out, '--T', '0'], /--T must be an integer in \[1, 100000\], got "0"/],
      [['train', '--data', 'mnist', '--out', out, '--channels', '6', '--groups', '4'], /do not make a valid unet: groups must divide every level's channels/],
      [['train', '--data', 'mnist', '--out', out, '--channel-mults', '1,x'], /--channel-mults must be 1 to 3 comma-separated integers >= 1/],
      [['train', '--data', 'mnist', '--out', out, '--hidden', '8'], /--hidden is a mlp option; this run trains --model unet/],
      [['train', '--data', 'moons'], /ddpm train needs --out/],
      [['train', '--out', out], /ddpm train needs --data/],
      [['train', '--out', out, '--resume'], /--resume: .* holds no run \(checkpoint\.json is missing\)/],
      [['train', '--data', 'moons', '--out', out, 'extra'], /unexpected argument "extra"/],
      [['sample', '--out', 'x.png'], /ddpm sample needs --run/],
      [['sample', '--run', out, '--out', 'x.png', '--steps', '10'], /--steps is a DDIM option; add --sampler ddim/],
      [['sample', '--run', out, '--out', 'x.txt'], /--out must end in \.png \(images\), \.csv or \.json \(2-D points\), got "x\.txt"/],
      [['sample', '--run', out, '--out', path.join(tmp, 'x.csv'), '--sampler', 'ddim', '--eta=-1'], /--eta must be a number in \[0, 1\], got "-1"/],
      [['sample', '--run', out, '--out', path.join(tmp, 'x.csv'), '--sampler', 'ddpm2'], /--sampler must be one of ddpm, ddim/],
      [['eval', '--run', out, '--n', '1'], /--n must be an integer in \[2, 100000\], got "1"/],
      [['info'], /ddpm info needs --run/],
      [['info', '--run', out, '--n', '5'], /Unknown option '--n' \(an option of ddpm sample, eval, not of ddpm info\)/],
      [['train', '--data', 'moons', '--out', out, '--conditional'], /--conditional needs --data mnist \(a set with class labels\); moons is 2-D and has no classes/],
      [['train', '--data', 'mnist', '--out', out, '--p-uncond', '0.2'], /--p-uncond needs --conditional/],
      [['train', '--data', 'mnist', '--out', out, '--conditional', '--p-uncond', '1.5'], /--p-uncond must be a number in \[0, 1\], got "1\.5"/],
      [['sample', '--run', out, '--out', path.join(tmp, 'x.png'), '--guidance', '2'], /--guidance needs --class \(guidance steers the samples toward a class\)/],
      [['sample', '--run', out, '--out', path.join(tmp, 'x.png'), '--class', '1', '--guidance', '-1'], /--guidance must be a number >= 0, got "-1"/],
      [['sample', '--run', out, '--out', path.join(tmp, 'x.png'), '--class', '1', '--guidance', 'abc'], /--guidance must be a number >= 0, got "abc"/],
      [['eval', '--run', out, '--class', '3', '--judge', '0'], /--class needs the digit judge: --judge N with N >= 2 digits per class/],
    ];
    for (const [argv, pattern] of cases) {
      const r = await cli(...argv);
      expect(r.code, `${argv.join(' ')}: ${r.err}`).to.equal(2);
      expect(r.err, argv.join(' ')).to.match(pattern);
      expect(r.err, argv.join(' ')).to.match(/\(see: ddpm [a-z ]*--help\)\n$/);
    }
    expect(fs.existsSync(out), 'no usage error creates the run directory').to.equal(false);
    const missing = await cli('info', '--run', path.join(tmp, 'no-such-run'));
    expect([missing.code, missing.err]).to.deep.equal([1, `ddpm info: error: run directory ${path.join(tmp, 'no-such-run')} does not exist\n`]);
  });

  it('SIGINT saves a checkpoint, prints where and exits 130; --resume then equals an uninterrupted run bit for bit; sample, eval and info read the run', async () => {
    const dir = path.join(tmp, 'sigint');
    const child = start(['train', ...MLP, '--steps', '1000000', '--checkpoint-every', '1000000', '--out', dir]);
    const done = collect(child);
    await waitFor(child, 'stdout', /training MlpDenoiser/);
    await new Promise((r) => setTimeout(r, 1500));
    child.kill('SIGINT');
    const r = await done;
    expect(r.code, r.stderr).to.equal(130);
    expect(r.stderr).to.match(/SIGINT: finishing this step and saving a checkpoint/);
    const k = readManifest(dir).step;
    expect(r.stdout).to.include(`interrupted at step ${k} of 1000000: checkpoint saved in ${dir}`);
    expect(r.stdout).to.include(`resume with: ddpm train --out ${dir} --resume`);
    expect(k).to.be.above(0);

    const resumed = await run(['train', '--out', dir, '--resume', '--steps', String(k + 15), '--backend', 'cpu']);
    expect(resumed.code, resumed.stderr).to.equal(0);
    expect(resumed.stdout).to.include(`resuming ${dir} at step ${k} of ${k + 15}`);
    // not a terminal: plain progress lines, no carriage returns
    expect(resumed.stdout).to.match(/^train: 100% 15\/15 · [\d.]+\/s · step \d+ · loss [\d.]+ · ETA/m);
    expect(resumed.stdout).to.not.include('\r');
    const ref = path.join(tmp, 'sigint-ref');
    const whole = await run(['train', ...MLP, '--steps', String(k + 15), '--checkpoint-every', '1000000', '--out', ref, '--quiet']);
    expect(whole.code, whole.stderr).to.equal(0);
    expect(shardBytes(dir).equals(shardBytes(ref)), 'weights, EMA, optimizer state, sampler state and every loss are identical').to.equal(true);
    expect(readManifest(dir).rng).to.deep.equal(readManifest(ref).rng);

    // a hand-edited manifest: a clear error, exit 1, nothing trained
    const edited = path.join(tmp, 'edited');
    fs.cpSync(dir, edited, { recursive: true });
    const m = JSON.parse(fs.readFileSync(path.join(edited, MANIFEST_FILE), 'utf8'));
    m.train.lr = 'fast';
    fs.writeFileSync(path.join(edited, MANIFEST_FILE), JSON.stringify(m));
    const bad = await cli('train', '--out', edited, '--resume', '--steps', String(k + 20), '--backend', 'cpu');
    expect([bad.code, bad.err]).to.deep.equal([1, `ddpm train: error: ${path.join(edited, MANIFEST_FILE)}: train.lr must be a number > 0, got "fast"\n`]);

    const info = await run(['info', '--run', dir]);
    expect(info.code).to.equal(0);
    expect(info.stdout).to.match(new RegExp(`steps done +${k + 15} of ${k + 15}\\n`));
    expect(info.stdout).to.match(/last loss +\d\.\d+/);
    expect(info.stdout).to.match(/backend +cpu/);
    expect(info.stdout).to.match(/model +mlp \{"dataDim":2,"hidden":16,"depth":1/);
    const csv = path.join(tmp, 'points.csv');
    const json = path.join(tmp, 'points.json');
    const s1 = await run(['sample', '--run', dir, '--n', '50', '--out', csv, '--backend', 'cpu']);
    const s2 = await run(['sample', '--run', dir, '--n', '50', '--out', json, '--sampler', 'ddim', '--steps', '10', '--eta', '0.5', '--backend', 'cpu']);
    expect([s1.code, s2.code], s1.stderr + s2.stderr).to.deep.equal([0, 0]);
    const rows = fs.readFileSync(csv, 'utf8').trim().split('\n');
    expect(rows[0]).to.equal('x,y');
    expect(rows.slice(1).map((l) => l.split(',').map(Number)).flat().every(Number.isFinite)).to.equal(true);
    expect(rows).to.have.length(51);
    const parsed = JSON.parse(fs.readFileSync(json, 'utf8'));
    expect([parsed.points.length, parsed.sampler, parsed.steps, parsed.eta]).to.deep.equal([50, 'ddim', 10, 0.5]);
    const ev = await run(['eval', '--run', dir, '--n', '200', '--json', '--backend', 'cpu']);
    expect(ev.code, ev.stderr).to.equal(0);
    expect(ev.stdout, '2-D eval shows progress').to.match(/^eval: 100% 50\/50 · /m);
    const metric = JSON.parse(ev.stdout.trim().split('\n').pop()!);
    expect(metric.metric).to.equal('energyDistance');
    expect([metric.samples, metric.noise, metric.heldOutVsHeldOut].every((x: number) => Number.isFinite(x) && x >= 0)).to.equal(true);
  });

  describe('kill -9 inside a save (test hook DDPM_TEST_SAVE_PAUSE stops the save after its temporary file is written)', () => {
    const ref = path.join(tmp, 'kill-ref');
    before(async () => {
      const r = await run(['train', ...MLP, '--steps', '40', '--checkpoint-every', '10', '--out', ref, '--quiet']);
      expect(r.code, r.stderr).to.equal(0);
    });

    for (const stage of ['weights', 'manifest'] as const) {
      it(`killed after the ${stage} temporary file: the run loads the step-10 checkpoint and resumes to 40 equal to an unkilled run`, async () => {
        const dir = path.join(tmp, `kill-${stage}`);
        const child = start(['train', ...MLP, '--steps', '40', '--checkpoint-every', '10', '--out', dir, '--quiet'], { DDPM_TEST_SAVE_PAUSE: `${stage}@20` });
        const done = collect(child);
        await waitFor(child, 'stderr', /ddpm-test: paused in save of step 20/);
        child.kill('SIGKILL');
        const r = await done;
        expect(r.signal).to.equal('SIGKILL');
        const files = fs.readdirSync(dir);
        expect(files.some((f) => f.endsWith('.tmp')), `a temporary file was left by the kill: ${files}`).to.equal(true);
        const loaded = await loadRun(dir);
        expect(loaded.manifest.step).to.equal(10);
        loaded.dispose();
        const resumed = await run(['train', '--out', dir, '--resume', '--backend', 'cpu', '--quiet']);
        expect(resumed.code, resumed.stderr).to.equal(0);
        expect(shardBytes(dir).equals(shardBytes(ref))).to.equal(true);
        expect(fs.readdirSync(dir).sort(), 'stale temporary files and old shards are gone').to.deep.equal([MANIFEST_FILE, 'weights-00000040.bin']);
      });
    }
  });

  it('a NaN loss (test hook DDPM_TEST_NAN_AT_STEP) stops with the step and the last good checkpoint; --skip-nonfinite skips and counts it', async () => {
    const dir = path.join(tmp, 'nan');
    const r = await run(['train', ...MLP, '--steps', '40', '--checkpoint-every', '10', '--out', dir, '--quiet'], { DDPM_TEST_NAN_AT_STEP: '25' });
    expect(r.code, r.stderr).to.equal(1);
    expect(r.stderr).to.include(`ddpm train: error: train: the loss at step 25 is NaN (not finite); lower lr or set gradClip; the last good checkpoint is step 20 in ${dir} (intact; resume with --resume)`);
    const before = shardBytes(dir);
    const loaded = await loadRun(dir);
    expect(loaded.manifest.step).to.equal(20);
    loaded.dispose();
    const again = await run(['train', '--out', dir, '--resume', '--skip-nonfinite', '--backend', 'cpu', '--quiet'], { DDPM_TEST_NAN_AT_STEP: '25' });
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stdout).to.match(/done: 40 steps .*, 1 non-finite batches skipped/);
    expect(readManifest(dir).skipped).to.equal(1);
    const run40 = await loadRun(dir);
    expect(Number.isNaN(run40.losses[24]) && run40.losses.filter(Number.isNaN).length === 1).to.equal(true);
    expect(before.equals(shardBytes(dir))).to.equal(false);
    run40.dispose();
  });

  it('an unusable --out (a file; a file as parent; under /proc) is refused before any training, exit 2, naming --out; nothing written', async () => {
    const file = path.join(tmp, 'plain-file');
    fs.writeFileSync(file, 'x');
    const cases: [string, RegExp][] = [
      [file, /--out .*plain-file is a file, not a directory/],
      [path.join(file, 'run'), /--out .*plain-file\/run cannot be created: a parent of the path is a file, not a directory/],
      ['/proc/ddpm-test-run', /--out \/proc\/ddpm-test-run cannot be created: a parent directory does not exist/],
    ];
    for (const [out, pattern] of cases) {
      // 300 steps with one checkpoint at the end: the old code learned of the problem only then.
      const r = await run(['train', ...MLP, '--steps', '300', '--checkpoint-every', '300', '--out', out, '--quiet']);
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.match(pattern);
      expect(r.stdout, 'refused before training started').to.not.include('training MlpDenoiser');
      expect(r.stderr, 'refused before a backend started').to.not.match(/^backend:/m);
    }
    expect(fs.readFileSync(file, 'utf8')).to.equal('x');
  });

  // hidden 128, depth 2: each checkpoint is ~340 KB (model, EMA, Adam m and v); a run needs room for two.
  const BIG = ['train', ...MLP.filter((_, i) => i < 8 || i > 11), '--hidden', '128', '--depth', '2'];
  const q = (a: string[]) => a.map((x) => `'${x}'`).join(' ');
  const unshareWorks = () => spawnSync('unshare', ['-Urm', 'true']).status === 0;

  it('too little disk for two checkpoints (a 512 KiB tmpfs in a private mount namespace) is refused before training, naming --out, the free and the needed space', async function () {
    // Reported in docs/reliability.md: without user namespaces this machine cannot give the test a small disk.
    if (!unshareWorks()) this.skip();
    const dir = path.join(tmp, 'small-disk');
    fs.mkdirSync(dir);
    const script = `mount -t tmpfs -o size=512k tmpfs '${dir}' || exit 99
'${process.execPath}' '${CLI}' ${q([...BIG, '--steps', '20', '--checkpoint-every', '10', '--out', path.join(dir, 'run'), '--quiet'])}; echo "train-exit=$?"
ls -a '${dir}'`;
    const r = spawnSync('unshare', ['-Urm', 'sh', '-c', script], { encoding: 'utf8', cwd: ROOT });
    expect(r.status, r.stderr).to.not.equal(99);
    expect(r.stdout).to.include('train-exit=1');
    expect(r.stderr).to.match(/--out .*small-disk\/run: the disk has [\d.]+ KiB free, this run needs about [\d.]+ (KiB|MiB) \(two checkpoints of about [\d.]+ (KiB|MiB)/);
    expect(r.stdout, 'refused before training').to.not.include('training MlpDenoiser');
    expect(r.stdout, 'the run directory it made is removed again').to.match(/train-exit=1\n\.\n\.\.\n$/);
  });

  it('a disk that fills up during training (1 MiB tmpfs, filled after the first save): a clear error, no partial file, the previous checkpoint loads', async function () {
    if (!unshareWorks()) this.skip();
    const dir = path.join(tmp, 'full');
    fs.mkdirSync(dir);
    const runDir = path.join(dir, 'run');
    const script = `mount -t tmpfs -o size=1m tmpfs '${dir}' || exit 99
'${process.execPath}' '${CLI}' ${q([...BIG, '--steps', '5000', '--checkpoint-every', '10', '--out', runDir, '--quiet'])} &
pid=$!
while [ ! -f '${runDir}/checkpoint.json' ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
dd if=/dev/zero of='${dir}/filler' bs=4096 2>/dev/null
wait $pid; echo "train-exit=$?"
ls -a '${runDir}'
'${process.execPath}' '${CLI}' info --run '${runDir}' --backend cpu`;
    const r = spawnSync('unshare', ['-Urm', 'sh', '-c', script], { encoding: 'utf8', cwd: ROOT });
    expect(r.status, r.stderr).to.not.equal(99);
    expect(r.stdout).to.include('train-exit=1');
    const m = /could not save the checkpoint of step (\d+) in .*: the disk is full \(ENOSPC.*\); the previous checkpoint \(step (\d+)\) is intact/.exec(r.stderr);
    expect(m, r.stderr).to.not.equal(null);
    const kept = Number(m![2]);
    expect(Number(m![1])).to.equal(kept + 10);
    expect(r.stdout).to.not.match(/\.tmp/);
    expect(r.stdout, 'the lock is released, the kept checkpoint is whole').to.match(new RegExp(`\\.\\n\\.\\.\\ncheckpoint\\.json\\nweights-${String(kept).padStart(8, '0')}\\.bin\\n`));
    expect(r.stdout).to.match(new RegExp(`steps done +${kept} of 5000`));
    expect(r.stdout).to.match(/check +ok/);
  });

  it('the chunk plan bounds tensor memory: measured bytes per sample times the chunk cover the sampler\'s real peak (tf.profile), MLP and U-Net', async () => {
    // [model, sample shape, samples the budget holds]: a budget of k + 0.5 samples plans chunks of k (a power of two).
    const cases: [TrainableDenoiser, number[], number][] = [
      [new MlpDenoiser({ hidden: 64, depth: 2, seed: 1 }), [2], 64],
      [new UNetDenoiser({ baseChannels: 4, channelMults: [1, 2], groups: 2, attention: false, seed: 1 }), [28, 28, 1], 8],
    ];
    for (const [model, shape, k] of cases) {
      const per = await bytesPerSample(model, shape);
      const plan = planChunks(1000, per, (k + 0.5) * per);
      expect([plan.size, plan.count], 'the largest power of two within the budget').to.deep.equal([k, Math.ceil(1000 / k)]);
      const before = tf.memory().numBytes;
      const info = await tf.profile(async () => {
        const { x0 } = await sampleDDPM(model, linearSchedule(5), [plan.size, ...shape], { seed: 1, clipX0: true });
        x0.dispose();
      });
      expect(info.peakBytes - before, `peak of a ${plan.size}-sample chunk vs the plan's ${plan.bytesPerChunk}`).to.be.at.most(plan.bytesPerChunk);
      model.dispose();
    }
    expect(planChunks(10, 1000, 1e6, 4)).to.deep.equal({ size: 4, count: 3, bytesPerChunk: 4000 });
    expect(chunkSeed(7, 0)).to.equal(7);
    expect(chunkSeed(7, 1)).to.not.equal(chunkSeed(7, 2));
  });

  describe('runs that cannot be broken (issue 12): one writer, failures before the work, the flag grammar', () => {
    const base = path.join(tmp, 'base');
    const ORIG = [...MLP, '--steps', '30', '--checkpoint-every', '10', '--quiet', '--out', base];
    const copyOf = (name: string) => {
      const d = path.join(tmp, name);
      fs.cpSync(base, d, { recursive: true });
      return d;
    };
    before(async () => {
      const r = await run(['train', ...ORIG]);
      expect(r.code, r.stderr).to.equal(0);
    });

    it('a second train or --resume into a run directory in use is refused, naming the holder; the holder is unharmed; a stale lock is taken over', async () => {
      const dir = path.join(tmp, 'two-writers');
      const a = start(['train', ...MLP, '--steps', '1000000', '--checkpoint-every', '1', '--out', dir]);
      const doneA = collect(a);
      await waitFor(a, 'stdout', /training MlpDenoiser/);
      const seed2 = MLP.map((x, i) => (MLP[i - 1] === '--seed' ? '8' : x));
      try {
        const b = await run(['train', ...seed2, '--steps', '100', '--checkpoint-every', '1', '--out', dir, '--quiet']);
        expect(b.code, b.stderr).to.equal(1);
        expect(b.stderr).to.include(`${dir} is in use: process ${a.pid} on ${os.hostname()}`);
        while (!fs.existsSync(path.join(dir, MANIFEST_FILE))) await new Promise((r) => setTimeout(r, 50));
        const c = await run(['train', '--out', dir, '--resume', '--backend', 'cpu', '--quiet']);
        expect(c.code, c.stderr).to.equal(1);
        expect(c.stderr).to.include(`is in use: process ${a.pid}`);
      } finally {
        // SIGTERM, not SIGINT: a shell's background job may start with SIGINT ignored.
        a.kill('SIGTERM');
      }
      const ra = await doneA;
      expect(ra.code, ra.stderr).to.equal(143);
      expect(ra.stderr, 'the holder saw no other writer').to.not.match(/error/);
      const k = readManifest(dir).step;
      expect(fs.existsSync(path.join(dir, 'ddpm.lock')), 'the lock is released on exit').to.equal(false);
      // A lock left by a process that is gone (kill -9) is stale: the next writer takes it over.
      const dead = spawnSync('true').pid;
      fs.writeFileSync(path.join(dir, 'ddpm.lock'), JSON.stringify({ pid: dead, host: os.hostname(), command: 'ddpm train', since: '2026-01-01T00:00:00Z' }));
      const d = await run(['train', '--out', dir, '--resume', '--steps', String(k + 2), '--backend', 'cpu', '--quiet']);
      expect(d.code, d.stderr).to.equal(0);
      expect(readManifest(dir).step).to.equal(k + 2);
      expect(fs.readdirSync(dir).sort()).to.deep.equal([MANIFEST_FILE, `weights-${String(k + 2).padStart(8, '0')}.bin`]);
    });

    it('--eta is checked at parse time against [0, 1] (and --help says so); sample checks --out before sampling', async () => {
      const eta = await cli('sample', '--run', base, '--out', path.join(tmp, 'e.csv'), '--sampler', 'ddim', '--eta', '1.2');
      expect([eta.code, eta.err]).to.deep.equal([2, 'ddpm sample: --eta must be a number in [0, 1], got "1.2"\n(see: ddpm sample --help)\n']);
      expect((await cli('sample', '--help')).out).to.match(/--eta E +DDIM's eta in \[0, 1\]/);
      const proc = await run(['sample', '--run', base, '--out', '/proc/ddpm-samples.csv', '--backend', 'cpu']);
      expect(proc.code, proc.stderr).to.equal(2);
      expect(proc.stderr).to.match(/--out \/proc\/ddpm-samples\.csv: cannot write in \/proc/);
      expect(proc.stdout, 'refused before sampling').to.not.include('sampling');
      fs.mkdirSync(path.join(tmp, 'd.csv'));
      const dirOut = await cli('sample', '--run', base, '--out', path.join(tmp, 'd.csv'));
      expect(dirOut.code).to.equal(2);
      expect(dirOut.err).to.match(/--out .*d\.csv: .*d\.csv is a directory, not a file/);
    });

    it('train --T 100 scales the linear betas by 1000/T (abar_T as a float64 product of the scaled betas, below 1e-2)', async () => {
      const dir = path.join(tmp, 'T100');
      const r = await run(['train', ...MLP.filter((_, i) => i !== 6 && i !== 7), '--T', '100', '--steps', '2', '--out', dir, '--quiet']);
      expect(r.code, r.stderr).to.equal(0);
      const loaded = await loadRun(dir);
      // Independent: betas 1e-3..0.2 (Ho et al.'s 1e-4..0.02 times 10), linearly spaced, product in float64.
      let abar = 1;
      for (let t = 1; t <= 100; t++) abar *= 1 - (1e-3 + ((0.2 - 1e-3) * (t - 1)) / 99);
      expect(loaded.schedule.T).to.equal(100);
      expect(Math.abs(loaded.schedule.alphaBars[100] - abar) / abar, `abar_T ${loaded.schedule.alphaBars[100]} vs ${abar}`).to.be.below(1e-9);
      expect(loaded.schedule.alphaBars[100]).to.be.below(1e-2);
      loaded.dispose();
    });

    it('sample draws in chunks with their own seeds: --chunk 4 for 10 points is 3 batches, the first equal to --n 4; the JSON records the chunk', async () => {
      const a = path.join(tmp, 'chunks-a.json');
      const b = path.join(tmp, 'chunks-b.json');
      const ra = await run(['sample', '--run', base, '--n', '10', '--chunk', '4', '--out', a, '--backend', 'cpu']);
      expect(ra.code, ra.stderr).to.equal(0);
      expect(ra.stdout).to.match(/3 batches of 4 \(about [\d.]+ (B|KiB) of tensors each\)/);
      const rb = await run(['sample', '--run', base, '--n', '4', '--out', b, '--backend', 'cpu', '--quiet']);
      expect(rb.code, rb.stderr).to.equal(0);
      expect(rb.stdout, '--quiet: no progress').to.not.match(/^sample:/m);
      const pa = JSON.parse(fs.readFileSync(a, 'utf8'));
      const pb = JSON.parse(fs.readFileSync(b, 'utf8'));
      expect([pa.points.length, pa.chunk, pb.chunk]).to.deep.equal([10, 4, 4]);
      expect(pa.points.slice(0, 4)).to.deep.equal(pb.points);
      expect(pa.points.slice(4, 8), 'the second chunk has its own noise').to.not.deep.equal(pa.points.slice(0, 4));
    });

    it('a manifest with a bogus schedule fails at load and in info, naming the field', async () => {
      const dir = copyOf('bogus-schedule');
      const m = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8'));
      m.schedule.kind = 'bogus';
      fs.writeFileSync(path.join(dir, MANIFEST_FILE), JSON.stringify(m));
      let error: Error | null = null;
      await loadRun(dir).catch((e) => (error = e));
      expect(error, 'loadRun rejects').to.be.instanceOf(Error);
      expect(error!.message).to.match(/checkpoint\.json: schedule \{"kind":"bogus".*\} is not a schedule this library can rebuild: schedule config kind must be one of linear, cosine, constant, betas, got "bogus"/);
      const info = await run(['info', '--run', dir, '--backend', 'cpu']);
      expect(info.code).to.equal(1);
      expect(info.stderr).to.match(/ddpm info: error: .*checkpoint\.json: schedule .* got "bogus"/);
    });

    it('info checks what sample checks: a truncated shard and a weights path outside the run exit 1 saying what is wrong, reading nothing outside', async () => {
      const cut = copyOf('info-truncated');
      const shard = path.join(cut, readManifest(cut).weightsManifest[0].paths[0]);
      fs.truncateSync(shard, fs.statSync(shard).size - 8);
      const a = await run(['info', '--run', cut, '--backend', 'cpu']);
      expect(a.code).to.equal(1);
      expect(a.stdout).to.match(/check +FAILED: .* the weights file is truncated/);
      expect(a.stderr).to.match(/ddpm info: error: the run in .* is damaged: .*truncated/);
      const out = copyOf('info-escape');
      const m = JSON.parse(fs.readFileSync(path.join(out, MANIFEST_FILE), 'utf8'));
      m.weightsManifest[0].paths[0] = '../../../../etc/passwd';
      fs.writeFileSync(path.join(out, MANIFEST_FILE), JSON.stringify(m));
      const b = await run(['info', '--run', out, '--backend', 'cpu']);
      expect(b.code).to.equal(1);
      expect(b.stdout).to.match(/check +FAILED: .*weight path "\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd" leaves the run directory; refusing to read it/);
      expect(b.stdout, 'no size of the outside file').to.match(/"\.\.\/\.\.\/\.\.\/\.\.\/etc\/passwd" \(not verified, /);
      const ok = await run(['info', '--run', base, '--backend', 'cpu', '--json']);
      expect(ok.code, ok.stderr).to.equal(0);
      expect(JSON.parse(ok.stdout).check).to.deep.equal({ ok: true, problem: null });
    });

    it('the flag grammar: a flag twice is refused; negative numbers follow their flag; --steps 1e3 is an integer; every command takes --backend and --quiet', async () => {
      const x = path.join(tmp, 'grammar');
      const twice = await cli('train', '--data', 'moons', '--out', x, '--steps', '5', '--steps', '6');
      expect([twice.code, twice.err.split('\n')[0]]).to.deep.equal([2, 'ddpm train: --steps is given twice ("5", then "6"); give each option once']);
      const neg = await cli('train', '--data', 'moons', '--out', x, '--seed', '-5');
      expect([neg.code, neg.err.split('\n')[0]]).to.deep.equal([2, 'ddpm train: --seed must be an integer in [0, 2147483647], got "-5"']);
      // 1e3 passes --steps' check: the next problem reported is --batch's
      const sci = await cli('train', '--data', 'moons', '--out', x, '--steps', '1e3', '--batch', '20000');
      expect([sci.code, sci.err.split('\n')[0]]).to.deep.equal([2, 'ddpm train: --batch must be at most the number of training examples (10000), got 20000']);
      const frac = await cli('train', '--data', 'moons', '--out', x, '--steps', '1.5e0');
      expect(frac.err.split('\n')[0]).to.equal('ddpm train: --steps must be an integer >= 1, got "1.5e0"');
      const missing = await cli('train', '--data', 'moons', '--out', '--quiet');
      expect(missing.err.split('\n')[0]).to.equal('ddpm train: --out needs a value, got the option "--quiet" (write --out=--quiet for a value starting with -)');
      const info = await run(['info', '--run', base, '--backend', 'cpu', '--quiet']);
      expect(info.code, info.stderr).to.equal(0);
      expect(info.stderr, '--quiet: no backend line').to.not.match(/^backend:/m);
      const ev = await run(['eval', '--run', base, '--n', '20', '--backend', 'cpu', '--quiet']);
      expect([ev.code, /^eval:/m.test(ev.stdout)], ev.stderr).to.deep.equal([0, false]);
      expect(fs.existsSync(x)).to.equal(false);
    });

    it('--workers N splits each batch over N threads and may change on --resume (the line says so); --workers 0 is refused at parse time', async () => {
      const dir = copyOf('resume-workers');
      const two = await run(['train', '--out', dir, '--resume', '--steps', '33', '--workers', '2', '--backend', 'cpu']);
      expect(two.code, two.stderr).to.equal(0);
      expect(two.stdout).to.match(/backend cpu on 2 threads, run /);
      expect(readManifest(dir).step).to.equal(33);
      const zero = await run(['train', '--out', dir, '--resume', '--steps', '40', '--workers', '0']);
      expect([zero.code, zero.stderr.split('\n')[0]]).to.deep.equal([2, 'ddpm train: --workers must be an integer in [1, 64], got "0"']);
    });

    it('--resume accepts the original command line, refuses only a conflict (naming both values), and exits 2 when there is nothing to train', async () => {
      const dir = copyOf('resume-flags');
      const orig = ORIG.map((a) => (a === base ? dir : a));
      const again = await run(['train', ...orig, '--resume']);
      expect(again.code).to.equal(2);
      expect(again.stderr).to.include(`${dir} has already done 30 of 30 steps: nothing to train; pass --steps N with N > 30`);
      const fewer = await run(['train', '--out', dir, '--resume', '--steps', '20', '--backend', 'cpu']);
      expect(fewer.code).to.equal(2);
      expect(fewer.stderr).to.include('has already done 30 of 20 steps');
      const lr = await run(['train', '--out', dir, '--resume', '--steps', '40', '--lr', '0.01', '--backend', 'cpu']);
      expect(lr.code).to.equal(2);
      expect(lr.stderr).to.match(/--lr "0\.01" conflicts with the run in .*resume-flags, whose lr is 0\.001/);
      const hidden = await run(['train', '--out', dir, '--resume', '--steps', '40', '--hidden', '32', '--backend', 'cpu']);
      expect(hidden.stderr).to.match(/--hidden "32" conflicts with the run in .*, whose hidden is 16/);
      const more = await run(['train', ...orig.map((a) => (a === '30' ? '35' : a)), '--resume']);
      expect(more.code, more.stderr).to.equal(0);
      expect(more.stdout).to.include(`resuming ${dir} at step 30 of 35`);
      expect(readManifest(dir).step).to.equal(35);
    });
  });

  it('U-Net (tiny config) on MNIST: train 1 step, sample a PNG grid, eval bits/dim and the digit judge, info', async function () {
    this.timeout(300_000); // seven CLI runs, each loading tfjs and MNIST
    const dir = path.join(tmp, 'unet');
    const t = await run(['train', '--data', 'mnist', '--n-data', '8', '--batch', '2', '--steps', '1', '--T', '4', '--channels', '4', '--channel-mults', '1,2', '--groups', '2', '--no-attention', '--backend', 'cpu', '--out', dir, '--quiet']);
    expect(t.code, t.stderr).to.equal(0);
    expect(t.stdout).to.match(/training UNetDenoiser \([\d,]+ weights\) on 8 mnist examples/);
    const png = path.join(tmp, 'grid.png');
    const s = await run(['sample', '--run', dir, '--n', '3', '--out', png, '--backend', 'cpu']);
    expect(s.code, s.stderr).to.equal(0);
    const img = PNG.sync.read(fs.readFileSync(png));
    // 3 images -> 2 columns x 2 rows of 28 px with 2 px gaps
    expect([img.width, img.height]).to.deep.equal([2 * 28 + 3 * 2, 2 * 28 + 3 * 2]);
    const inside = Array.from({ length: 28 }, (_, y) => img.data[((2 + y) * img.width + 2 + 14) * 4]);
    expect(new Set(inside).size, 'the first image is not blank').to.be.above(3);
    const e = await run(['eval', '--run', dir, '--n', '2', '--judge', '0', '--backend', 'cpu']);
    expect(e.code, e.stderr).to.equal(0);
    expect(e.stdout, '--judge 0 skips the judge').to.not.match(/digit judge/);
    const bpd = Number(/bits\/dim ([\d.]+) on 2 held-out digits/.exec(e.stdout)?.[1]);
    expect(e.stdout, 'eval shows progress as train does').to.match(/^eval: 100% 4\/4 · /m);
    // The same ELBO in-process (the library's elboTerms on the same digits, weights and seed); the
    // CLI prints 4 decimals, so they agree within 5e-5 (1e-4 allowed).
    const loaded = await loadRun(dir);
    const { images } = loadMnist({ split: 'test', limit: 2 });
    const terms = await elboTerms(loaded.ema!, loaded.schedule, images, { decoder: 'discretized', seed: 0 });
    expect(Math.abs(bpd - terms.bitsPerDim), `cli ${bpd}, in-process ${terms.bitsPerDim}`).to.be.below(1e-4);
    expect(bpd).to.be.above(0);
    // Image samples clip x0_hat to [-1, 1] (notebook 07): the grid equals the in-process sampler's with
    // clipX0, and differs from the unclipped one (so the comparison can fail).
    const grid = async (clipX0: boolean) => {
      const { x0 } = await sampleDDPM(loaded.ema!, loaded.schedule, [3, 28, 28, 1], { seed: 0, clipX0 });
      const png = imageGridPng((await x0.data()) as Float32Array, 3, 28, 1);
      x0.dispose();
      return png;
    };
    const cliPng = fs.readFileSync(png);
    expect(cliPng.equals(await grid(true)), 'the CLI grid equals the clipped sampler').to.equal(true);
    expect(cliPng.equals(await grid(false)), 'clipping changes these samples').to.equal(false);
    // The judge's report of eval: 4 digits sampled like `sample --n 4` (DDPM, clipped), scored beside
    // references of the same size; the JSON carries the same numbers as the library's judgeDigits.
    const j = await run(['eval', '--run', dir, '--n', '2', '--judge', '4', '--json', '--quiet', '--backend', 'cpu']);
    expect(j.code, j.stderr).to.equal(0);
    // --json --quiet: stdout is the JSON and nothing else (a pipe into a JSON reader)
    const judged = JSON.parse(j.stdout).judge;
    expect([judged.samples.n, judged.references.real.n, judged.references.noise.n]).to.deep.equal([4, 4, 4]);
    const { x0: four } = await sampleDDPM(loaded.ema!, loaded.schedule, [4, 28, 28, 1], { seed: chunkSeed(0, 0), clipX0: true });
    const direct = await judgeDigits(four as tf.Tensor4D, { seed: 0 });
    four.dispose();
    expect(judged.samples.confidentShare).to.equal(direct.samples.confidentShare);
    expect(judged.samples.fd).to.be.closeTo(direct.samples.fd, 1e-9 * direct.samples.fd);
    const jt = await run(['eval', '--run', dir, '--n', '2', '--judge', '4', '--backend', 'cpu', '--quiet']);
    expect(jt.stdout).to.match(/ddpm samples +4 /).and.to.match(/ref: held-out digits +4 /).and.to.match(/ref: uniform noise +4 /);
    const one = await run(['eval', '--run', dir, '--judge', '1', '--backend', 'cpu']);
    expect([one.code, one.stderr]).to.deep.equal([2, 'ddpm eval: --judge must be 0 (skip) or an integer in [2, 10000] (a covariance needs 2 samples), got 1\n(see: ddpm eval --help)\n']);
    images.dispose();
    loaded.dispose();
    const tooMany = await run(['sample', '--run', dir, '--n', '20000', '--out', path.join(tmp, 'many.png'), '--backend', 'cpu']);
    expect(tooMany.code, 'an --n above the help\'s range for images').to.equal(2);
    expect(tooMany.stderr).to.match(/--n must be an integer in \[1, 10000\] for an image run, got 20000/);
    const badOut = await run(['sample', '--run', dir, '--out', path.join(tmp, 'x.csv'), '--backend', 'cpu']);
    expect(badOut.code).to.equal(2);
    expect(badOut.stderr).to.match(/this run makes images: --out must end in \.png/);
    const info = await run(['info', '--run', dir, '--json']);
    const m = JSON.parse(info.stdout);
    expect([m.step, m.model.kind, m.model.config.baseChannels, m.backend]).to.deep.equal([1, 'unet', 4, 'cpu']);
  });
  it('class-conditional MNIST (issue 14): train --conditional records the classes; sample --class K --guidance W draws guided rows; eval --class judges each class; info shows the count; bad uses exit 2', async function () {
    this.timeout(400_000); // seven CLI runs, each loading tfjs and MNIST, and in-process sampling beside them
    const dir = path.join(tmp, 'conditional');
    const tiny = ['--n-data', '20', '--batch', '4', '--T', '4', '--channels', '4', '--channel-mults', '1', '--groups', '2', '--no-attention', '--backend', 'cpu', '--quiet'];
    const t = await run(['train', '--data', 'mnist', '--conditional', '--p-uncond', '0.5', '--steps', '2', ...tiny, '--out', dir]);
    expect(t.code, t.stderr).to.equal(0);
    expect(t.stdout).to.match(/on 20 mnist examples, conditional on 10 classes \(null class 10, p-uncond 0\.5\)/);
    const m = readManifest(dir);
    expect([m.model.config.numClasses, m.model.config.nullClass, m.train.conditional, m.train.pUncond]).to.deep.equal([10, 10, true, 0.5]);
    const info = await run(['info', '--run', dir, '--backend', 'cpu', '--quiet']);
    expect(info.stdout).to.match(/^classes +10 \(conditional; null class 10, labels dropped to it with p 0\.5\)$/m);

    // Two classes, two samples each, w = 2: rows by class, each row what the library's guided sampler
    // draws from the same seed; w = 0 draws others (so the comparison can fail).
    const png = path.join(tmp, 'classes.png');
    const s = await run(['sample', '--run', dir, '--class', '3,7', '--n', '2', '--guidance', '2', '--out', png, '--backend', 'cpu', '--quiet']);
    expect(s.code, s.stderr).to.equal(0);
    const img = PNG.sync.read(fs.readFileSync(png));
    expect([img.width, img.height], '2 columns, 2 rows').to.deep.equal([2 * 28 + 3 * 2, 2 * 28 + 3 * 2]);
    const loaded = await loadRun(dir);
    const model = loaded.ema as unknown as ConditionalDenoiser;
    const draw = async (c: number, w: number, n: number) => {
      const { x0 } = await sampleDDPM(guidedDenoiser(model, c, w), loaded.schedule, [n, 28, 28, 1], { seed: 0, clipX0: true });
      const v = (await x0.data()) as Float32Array;
      x0.dispose();
      return v;
    };
    const grid = async (w: number) => {
      const rows = [await draw(3, w, 2), await draw(7, w, 2)];
      const all = new Float32Array(rows[0].length * 2);
      all.set(rows[0]);
      all.set(rows[1], rows[0].length);
      return imageGrid(all, { n: 4, size: 28, channels: 1, cols: 2 });
    };
    expect(fs.readFileSync(png).equals(await grid(2)), 'the CLI grid equals the guided sampler, class by class').to.equal(true);
    expect(fs.readFileSync(png).equals(await grid(0)), 'guidance changes these samples').to.equal(false);
    const every = path.join(tmp, 'all.png');
    const a = await run(['sample', '--run', dir, '--class', 'all', '--n', '1', '--sampler', 'ddim', '--steps', '2', '--out', every, '--backend', 'cpu', '--quiet']);
    expect(a.code, a.stderr).to.equal(0);
    const allImg = PNG.sync.read(fs.readFileSync(every));
    expect([allImg.width, allImg.height], 'one column, ten rows (ddim)').to.deep.equal([28 + 2 * 2, 10 * 28 + 11 * 2]);
    const out = await run(['sample', '--run', dir, '--class', '10', '--out', path.join(tmp, 'c10.png'), '--backend', 'cpu']);
    expect([out.code, out.stderr.split('\n')[0]]).to.deep.equal([2, 'ddpm sample: --class must be an integer in [0, 9], a comma list of them or all, got "10"']);

    // eval --class: the share the judge calls class 3, as judgeAccuracy finds on the same guided samples.
    const e = await run(['eval', '--run', dir, '--class', '3', '--guidance', '1', '--judge', '2', '--n', '2', '--backend', 'cpu', '--quiet']);
    expect(e.code, e.stderr).to.equal(0);
    expect(e.stdout).to.match(/ddpm samples \(w = 1\) +2 /);
    const row = /^ +3 +2 +([\d.]+) % +([\d.]+) %$/m.exec(e.stdout);
    expect(row, e.stdout).to.not.equal(null);
    const direct = await judgeAccuracy(shippedJudge(), await draw(3, 1, 2), [3, 3]);
    expect([Number(row![1]), Number(row![2])]).to.deep.equal([Number((100 * direct.accuracy).toFixed(1)), Number((100 * direct.confidentShare).toFixed(1))]);
    loaded.dispose();

    // Resume keeps the flags: a changed --p-uncond is a conflict.
    const r = await run(['train', '--out', dir, '--resume', '--steps', '3', '--p-uncond', '0.2', '--backend', 'cpu']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/--p-uncond "0\.2" conflicts with the run in .*conditional, whose p-uncond is 0\.5/);
    // The NaN fault seam wraps a conditional model too: the classes still reach it, and the NaN is found at its step.
    const nan = await run(['train', '--out', dir, '--resume', '--steps', '4', '--backend', 'cpu', '--quiet'], { DDPM_TEST_NAN_AT_STEP: '3' });
    expect(nan.code, nan.stderr).to.equal(1);
    expect(nan.stderr).to.match(/the loss at step 3 is NaN .*the last good checkpoint is step 2 /);

    // An unconditional run: --class is refused, and --conditional on resume is a conflict.
    const plain = path.join(tmp, 'unconditional');
    const p = await cli('train', '--data', 'mixture', '--n-data', '50', '--batch', '10', '--T', '10', '--hidden', '8', '--depth', '1', '--steps', '1', '--backend', 'cpu', '--quiet', '--out', plain);
    expect(p.code, p.err).to.equal(0);
    const c = await cli('sample', '--run', plain, '--class', '1', '--out', path.join(tmp, 'p.csv'), '--backend', 'cpu', '--quiet');
    expect([c.code, c.err.split('\n')[0]]).to.deep.equal([2, `ddpm sample: --class: run ${plain} was trained without --conditional (it has no classes); sample it without --class and --guidance`]);
    const ce = await cli('eval', '--run', plain, '--class', '1', '--backend', 'cpu', '--quiet');
    expect(ce.code).to.equal(2);
    expect(ce.err).to.include('was trained without --conditional');
    const rc = await cli('train', '--out', plain, '--resume', '--steps', '2', '--conditional', '--backend', 'cpu', '--quiet');
    expect(rc.code).to.equal(2);
    expect(rc.err).to.match(/--conditional conflicts with the run in .*unconditional, whose conditional is false/);
  });
});
