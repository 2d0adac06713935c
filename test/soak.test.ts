/**
 * The kill-loop soak (issue 12): `ddpm train` on a tiny MLP killed with SIGKILL at random moments
 * (inside steps, saves and start-up alike), resumed each time with the original command line plus
 * --resume, ends with a run byte-identical to an uninterrupted one: weights, EMA, Adam state,
 * sampler state and every loss. Half the kills land at a random moment after the process starts,
 * half 0-20 ms after a random step; near the end (20 steps or fewer to go) the run is let finish.
 * The suite runs a short loop (200 steps, 4 kills); `npm run soak`
 * runs the long one (SOAK_STEPS, SOAK_KILLS, SOAK_SEED pick another). The kill moments come from a
 * seeded generator printed with the result, so a failing loop can be replayed.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import { readManifest } from '../lib';
import { MANIFEST_FILE } from '../lib/training/checkpoint';

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'test-soak', 'cli.js');
const STEPS = Number(process.env.SOAK_STEPS ?? 200);
const KILLS = Number(process.env.SOAK_KILLS ?? 4);
const SEED = Number(process.env.SOAK_SEED ?? 12);
const FLAGS = ['--data', 'moons', '--n-data', '256', '--batch', '16', '--T', '50', '--hidden', '16', '--depth', '1', '--backend', 'cpu', '--seed', '3', '--steps', String(STEPS), '--checkpoint-every', '10', '--quiet'];

/** A small seeded generator (xorshift32) for the kill moments. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** Children still running (after() kills them if a failing test left one). */
const children = new Set<ChildProcess>();

function start(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

function finished(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, out })));
}

const shard = (dir: string) => fs.readFileSync(path.join(dir, readManifest(dir).weightsManifest[0].paths[0]));

describe(`kill-loop soak: ${STEPS} steps, ${KILLS} SIGKILLs at random moments, resume each time`, function () {
  this.timeout(Math.max(120_000, KILLS * 20_000));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-soak-'));
  before(() => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('esbuild').buildSync({ entryPoints: [path.join(ROOT, 'lib', 'cli', 'ddpm.ts')], bundle: true, platform: 'node', packages: 'external', outfile: CLI, logLevel: 'warning' });
  });
  after(() => {
    for (const c of children) c.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('ends byte-identical to an uninterrupted run, with no lock or temporary file left', async () => {
    const ref = path.join(tmp, 'ref');
    const whole = await finished(start(['train', ...FLAGS, '--out', ref]));
    expect(whole.code, whole.out).to.equal(0);

    const dir = path.join(tmp, 'killed');
    const next = rng(SEED);
    const log: string[] = [];
    const stepNow = () => {
      try {
        return JSON.parse(fs.readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')).step as number;
      } catch {
        return 0;
      }
    };
    let kills = 0;
    for (let attempt = 0; attempt < 3 * KILLS + 20; attempt++) {
      const resume = fs.existsSync(path.join(dir, MANIFEST_FILE));
      const from = stepNow();
      const child = start(['train', ...FLAGS, '--out', dir, ...(resume ? ['--resume'] : [])]);
      const done = finished(child);
      let exited = false;
      void done.then(() => (exited = true));
      let moment = 'none';
      if (kills < KILLS && STEPS - from > 20) {
        if (attempt % 2 === 0) {
          // A moment from the process start: loading tfjs, taking the lock, the first steps or saves.
          const ms = Math.round(50 + next() * 3950);
          moment = `${ms} ms after start`;
          await new Promise((r) => setTimeout(r, ms));
        } else {
          // A moment inside training: 0-20 ms after the run passed a random step up to 60 beyond where
          // it resumed (and 15 or more before the end), inside a step or a save.
          const target = from + 1 + Math.floor(next() * Math.min(60, STEPS - from - 15));
          while (!exited && stepNow() < target) await new Promise((r) => setTimeout(r, 5));
          const ms = Math.round(next() * 20);
          await new Promise((r) => setTimeout(r, ms));
          moment = `${ms} ms after step ${target}`;
        }
        if (!exited) child.kill('SIGKILL');
      }
      const r = await done;
      if (r.signal === 'SIGKILL') {
        kills++;
        log.push(`kill ${kills} at ${moment}: resumed from step ${stepNow()}`);
        if (stepNow() === STEPS) break; // killed after its last save: the run is complete
        continue;
      }
      expect(r.code, r.out).to.equal(0);
      if (stepNow() === STEPS) break;
    }
    console.log(`      soak (seed ${SEED}): ${log.join('; ')}`);
    expect(kills, 'at least one kill landed (the log says where each did)').to.be.at.least(1);
    expect(readManifest(dir).step).to.equal(STEPS);
    expect(shard(dir).equals(shard(ref)), 'weights, EMA, Adam state, sampler state and losses are byte-identical').to.equal(true);
    expect(readManifest(dir).rng).to.deep.equal(readManifest(ref).rng);
    expect(fs.readdirSync(dir).sort()).to.deep.equal([MANIFEST_FILE, `weights-${String(STEPS).padStart(8, '0')}.bin`]);
  });
});
