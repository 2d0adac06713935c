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
interface Job {
  name: string;
  /** Exit status; 128 when a signal ended it. */
  code: number;
  seconds: number;
  output: string;
}

/** Runs a command with its lines behind `name │ `; resolves when it exits. */
function run(name: string, width: number, command: string, args: string[]): Promise<Job> {
  const t0 = Date.now();
  const tag = `${name.padEnd(width)} │ `;
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const pending = { stdout: '', stderr: '' };
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
    child.on('close', (code, signal) => {
      for (const s of ['stdout', 'stderr'] as const) if (pending[s]) process[s].write(tag + pending[s] + '\n');
      resolve({ name, code: code ?? (signal ? 128 : 1), seconds: (Date.now() - t0) / 1000, output });
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
