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
import { loadRun, readManifest } from '../lib';
import { MANIFEST_FILE } from '../lib/training/checkpoint';
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

function start(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

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
      [['train', '--data', 'moons', '--out', out, '--lr', '-1'], /Option '--lr' argument is ambiguous/],
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
      [['sample', '--run', out, '--out', 'x.csv', '--sampler', 'ddim', '--eta=-1'], /--eta must be a number >= 0, got "-1"/],
      [['sample', '--run', out, '--out', 'x.csv', '--sampler', 'ddpm2'], /--sampler must be one of ddpm, ddim/],
      [['eval', '--run', out, '--n', '1'], /--n must be an integer in \[2, 100000\], got "1"/],
      [['info'], /ddpm info needs --run/],
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

  it('an unwritable run directory (a file as parent; under /proc) is a clear error, exit 1, nothing written', async () => {
    const file = path.join(tmp, 'plain-file');
    fs.writeFileSync(file, 'x');
    const a = await run(['train', ...MLP, '--steps', '5', '--out', path.join(file, 'run'), '--quiet']);
    expect(a.code).to.equal(1);
    expect(a.stderr).to.match(/could not save the checkpoint of step 5 in .*plain-file\/run: a parent of the path is a file, not a directory .*; no earlier checkpoint exists; no checkpoint was saved yet/);
    const b = await run(['train', ...MLP, '--steps', '5', '--out', '/proc/ddpm-test-run', '--quiet']);
    expect(b.code).to.equal(1);
    expect(b.stderr).to.match(/could not save the checkpoint of step 5 in \/proc\/ddpm-test-run: a parent directory does not exist/);
    expect(fs.readFileSync(file, 'utf8')).to.equal('x');
  });

  it('a full disk (a 512 KiB tmpfs in a private mount namespace): a clear error, no partial file, the previous checkpoint loads', async function () {
    const probe = spawnSync('unshare', ['-Urm', 'true']);
    if (probe.status !== 0) {
      // Reported in docs/reliability.md: without user namespaces this machine cannot give the test a small disk.
      this.skip();
    }
    const dir = path.join(tmp, 'full');
    fs.mkdirSync(dir);
    // hidden 128, depth 2: each checkpoint is ~340 KB (model, EMA, Adam m and v); the second needs room for two.
    const args = ['train', ...MLP.filter((_, i) => i < 8 || i > 11), '--hidden', '128', '--depth', '2', '--steps', '20', '--checkpoint-every', '10', '--out', dir, '--quiet'];
    const q = (a: string[]) => a.map((x) => `'${x}'`).join(' ');
    const script = `mount -t tmpfs -o size=512k tmpfs '${dir}' || exit 99
'${process.execPath}' '${CLI}' ${q(args)}; echo "train-exit=$?"
ls -a '${dir}'
'${process.execPath}' '${CLI}' info --run '${dir}'`;
    const r = spawnSync('unshare', ['-Urm', 'sh', '-c', script], { encoding: 'utf8', cwd: ROOT });
    expect(r.status, r.stderr).to.not.equal(99);
    expect(r.stdout).to.include('train-exit=1');
    expect(r.stderr).to.match(/could not save the checkpoint of step 20 in .*: the disk is full \(ENOSPC.*\); the previous checkpoint \(step 10\) is intact/);
    expect(r.stdout).to.not.match(/\.tmp/);
    expect(r.stdout).to.match(/checkpoint\.json\nweights-00000010\.bin\n/);
    expect(r.stdout).to.match(/steps done +10 of 20/);
  });

  it('U-Net (tiny config) on MNIST: train 1 step, sample a PNG grid, eval bits/dim, info', async () => {
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
    const e = await run(['eval', '--run', dir, '--n', '2', '--backend', 'cpu']);
    expect(e.code, e.stderr).to.equal(0);
    const bpd = Number(/bits\/dim ([\d.]+) on 2 held-out digits/.exec(e.stdout)?.[1]);
    expect(bpd).to.be.above(0).and.below(100);
    const badOut = await run(['sample', '--run', dir, '--out', path.join(tmp, 'x.csv'), '--backend', 'cpu']);
    expect(badOut.code).to.equal(2);
    expect(badOut.stderr).to.match(/this run makes images: --out must end in \.png/);
    const info = await run(['info', '--run', dir, '--json']);
    const m = JSON.parse(info.stdout);
    expect([m.step, m.model.kind, m.model.config.baseChannels, m.backend]).to.deep.equal([1, 'unet', 4, 'cpu']);
  });
});
