/**
 * `npm test`: the type check and the three parts of the suite, side by side.
 *
 * The suite's parts load a 2-core machine differently: the notebooks (the quick build, through
 * both headless runners side by side) about two cores; the front ends (every notebook run with Run
 * All in JupyterLab and in the classic notebook, in Chromium) about 1.6; the library's tests (unit
 * tests, the CLI's child processes one after another) and the type check about one. One after
 * another they left a fifth of the machine idle (80 % busy on average, 2026-12-02,
 * docs/workbook.md#the-tests-time); side by side the machine stays busy.
 *
 * Each part is its own mocha process (the notebooks part shares one quick build across its files);
 * lines come out as they are written, each behind its part's name, and every failure is printed
 * again at the end. Arguments go to every mocha process (`npm test -- --grep posterior`).
 * Exit status: 0 when the type check and every part passed, else 1.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ensureBuilt } from '../lib/workbook/runners/project';

const root = path.resolve(__dirname, '..');

/** The files that share the quick build of the workbook (fixtures/quick-workbook.ts), in one process. */
export const NOTEBOOK_FILES = ['browser', 'lab-out', 'main', 'notebooks'].map((n) => `test/${n}.test.ts`);
/** The files that run every notebook in a front end's UI (each starts its own server and Chromium). */
export const FRONT_END_FILES = ['classic-notebook', 'jupyterlab'].map((n) => `test/${n}.test.ts`);

/** Every test file, in three parts: NOTEBOOK_FILES, FRONT_END_FILES and the library's (the rest). */
export function testParts(dir: string = root): { notebooks: string[]; frontEnds: string[]; library: string[] } {
  const all = fs
    .readdirSync(path.join(dir, 'test'))
    .filter((f) => f.endsWith('.test.ts'))
    .sort()
    .map((f) => `test/${f}`);
  const named = [...NOTEBOOK_FILES, ...FRONT_END_FILES];
  const missing = named.filter((f) => !all.includes(f));
  if (missing.length) throw new Error(`test/run.ts: NOTEBOOK_FILES or FRONT_END_FILES name files that do not exist: ${missing.join(', ')}`);
  return { notebooks: NOTEBOOK_FILES, frontEnds: FRONT_END_FILES, library: all.filter((f) => !named.includes(f)) };
}

/** What one of the jobs did. */
export interface Job {
  name: string;
  /** Exit status; 128 when a signal ended it. */
  code: number;
  seconds: number;
  output: string;
}

/**
 * How long one part may take before it is killed: a hung part (a browser or server left running
 * keeps mocha alive) must fail, never hold CI until its own limit. DDPM_TEST_PART_MINUTES, else 40.
 */
export function partLimitMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.DDPM_TEST_PART_MINUTES;
  if (raw === undefined) return 40 * 60_000;
  const m = Number(raw);
  if (!(m > 0 && m <= 24 * 60)) throw new Error(`DDPM_TEST_PART_MINUTES must be a number of minutes in (0, 1440], got "${raw}"`);
  return m * 60_000;
}

/** After a part's process exits, how long what it started may keep its output open before they are killed. */
export const LINGER_MS = 30_000;

/** The process groups of the running parts, killed when npm test itself is stopped. */
const groups = new Set<number>();

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
}

/**
 * Runs a command with its lines behind `name │ `, in its own process group; resolves when its
 * output closes. It fails (and its whole group is killed) when it outlives `limitMs`, or when
 * something it started still holds its output `lingerMs` (LINGER_MS) after it exited.
 */
export function run(name: string, width: number, command: string, args: string[], { limitMs = partLimitMs(), lingerMs = LINGER_MS } = {}): Promise<Job> {
  const t0 = Date.now();
  const tag = `${name.padEnd(width)} │ `;
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, env: process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    if (child.pid !== undefined) groups.add(child.pid);
    let output = '';
    let verdict: string | null = null; // why the part failed although its exit status may say otherwise
    const pending = { stdout: '', stderr: '' };
    const say = (line: string) => {
      output += `${line}\n`;
      process.stderr.write(tag + line + '\n');
    };
    const take = (stream: 'stdout' | 'stderr') => (chunk: string) => {
      const text = pending[stream] + chunk;
      output += chunk;
      const lines = text.split('\n');
      pending[stream] = lines.pop()!;
      if (lines.length) process[stream].write(lines.map((l) => tag + l).join('\n') + '\n');
    };
    // decoded as UTF-8 by the streams themselves: a chunk can end inside a character (mocha's ✔)
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', take('stdout'));
    child.stderr.on('data', take('stderr'));
    child.on('error', (e) => {
      output += `\n${e.message}\n`;
    });
    const stop = (why: string) => {
      verdict = why;
      say(why);
      killGroup(child.pid, 'SIGTERM');
      setTimeout(() => {
        killGroup(child.pid, 'SIGKILL');
        child.stdout.destroy();
        child.stderr.destroy();
      }, 5_000).unref();
    };
    const limit = setTimeout(() => stop(`killed: still running after ${limitMs / 1000} s (DDPM_TEST_PART_MINUTES)`), limitMs);
    let linger: NodeJS.Timeout | undefined;
    /** The exit status: 'exit' comes before 'close', which may be long after (a process it started holds the output). */
    let exitCode: number | null = null;
    child.on('exit', (code, signal) => {
      exitCode = code ?? (signal ? 128 : 1);
      linger = setTimeout(() => stop(`killed: processes it started still held its output ${lingerMs / 1000} s after it exited`), lingerMs);
    });
    child.on('close', () => {
      clearTimeout(limit);
      clearTimeout(linger);
      if (child.pid !== undefined) groups.delete(child.pid);
      for (const s of ['stdout', 'stderr'] as const) if (pending[s]) process[s].write(tag + pending[s] + '\n');
      const status = exitCode ?? 1; // no 'exit' at all: the spawn itself failed ('error')
      resolve({ name, code: verdict ? (status === 0 ? 1 : status) : status, seconds: (Date.now() - t0) / 1000, output });
    });
  });
}

/** mocha's closing counts ("478 passing", "1 pending", "2 failing") in a part's output. */
export function mochaCounts(output: string): { passing: number; pending: number; failing: number } {
  const n = (word: string) => Number(new RegExp(`^\\s*(\\d+) ${word}\\b`, 'm').exec(output)?.[1] ?? 0);
  return { passing: n('passing'), pending: n('pending'), failing: n('failing') };
}

/** Whole seconds as "M min S s" (rounded first: 659.6 s is 11 min 0 s, never 10 min 60 s). */
const minutes = (s: number) => {
  const r = Math.round(s);
  return `${Math.floor(r / 60)} min ${r % 60} s`;
};

async function main(): Promise<void> {
  const extra = process.argv.slice(2);
  // the parts run in their own process groups: stopping npm test stops them too
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const g of groups) killGroup(g, 'SIGTERM');
      process.exit(130);
    });
  }
  const parts = testParts();
  // the notebooks import dist/lib: build it once here when lib/ is newer, not in two parts at once
  if (ensureBuilt(root)) console.log('dist/ was older than lib/: rebuilt it (npm run build)');
  const mocha = path.join(root, 'node_modules', 'mocha', 'bin', 'mocha.js');
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const t0 = Date.now();
  const width = 'front ends'.length;
  const jobs = await Promise.all([
    run('typecheck', width, process.execPath, [tsc, '--noEmit', '-p', 'tsconfig.json']),
    run('library', width, process.execPath, [mocha, ...extra, ...parts.library]),
    run('notebooks', width, process.execPath, [mocha, ...extra, ...parts.notebooks]),
    run('front ends', width, process.execPath, [mocha, ...extra, ...parts.frontEnds]),
  ]);
  const failed = jobs.filter((j) => j.code !== 0);
  for (const j of failed) {
    // mocha's failure report (from "N failing" on), or the type checker's whole output, again in one piece
    const at = j.output.search(/^\s*\d+ failing\b/m);
    console.log(`\n── ${j.name} failed (exit ${j.code}) ──\n${at >= 0 ? j.output.slice(at) : j.output.slice(-20_000)}`);
  }
  const counts = jobs.slice(1).map((j) => mochaCounts(j.output));
  const sum = (k: 'passing' | 'pending' | 'failing') => counts.reduce((s, c) => s + c[k], 0);
  console.log(
    `\n${sum('passing')} passing, ${sum('pending')} pending, ${sum('failing')} failing; type check ${jobs[0].code === 0 ? 'clean' : 'FAILED'}` +
      ` (${jobs.map((j) => `${j.name} ${minutes(j.seconds)}`).join(', ')}; in all ${minutes((Date.now() - t0) / 1000)})`,
  );
  process.exitCode = failed.length ? 1 : 0;
}

if (require.main === module) main();
