/**
 * `npm run bench`: the median Adam-step time of each workload (bench/workloads.ts) on each tfjs
 * backend, PyTorch's time for the same workload in the same run (bench/torch_bench.py, when
 * /usr/bin/python3 can import torch), and their ratio. Writes out/bench.json and prints a markdown
 * table. Options: `npm run bench -- --help` (bench/core.ts BENCH_USAGE).
 *
 * Every (backend, workload) pair runs in its own child process: backends do not share a process
 * (WebGPU's Dawn threads, wasm's heap), a crash or a hard timeout loses one cell only, and a slow
 * cpu U-Net step can be killed. Timings are printed, never asserted: this is not a test.
 *
 * The sides run interleaved, in rounds (bench/core.ts roundSchedule): every tfjs backend, then
 * PyTorch at each thread count of --torch-threads, then again, --rounds times; each cell is the
 * median of its rounds' medians with their range, and PyTorch's the faster thread count's. On a
 * shared machine the load swings 2-3x from minute to minute, and this spreads it over both sides.
 * PyTorch runs without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (set here for old OpenBLAS builds);
 * the report records which were unset.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { backendInfo, useBestBackend, writeFileAtomic } from '../lib';
import {
  BENCH_USAGE,
  BenchBackend,
  BenchOptions,
  BenchSide,
  Measurement,
  WORKLOAD_LABELS,
  WorkloadName,
  combineRounds,
  fastestThreads,
  formatSeconds,
  workerCounts,
  formatTable,
  measureSteps,
  parseBenchOptions,
  roundSchedule,
  torchEnv,
} from './core';
import { buildWorkload, tfjsParamCounts } from './workloads';

const PYTHON = process.env.BENCH_PYTHON || '/usr/bin/python3';
const TORCH_SCRIPT = path.join(__dirname, 'torch_bench.py');

/** What one child process reports. */
interface ChildResult {
  measurement: Measurement;
  backend?: ReturnType<typeof backendInfo>;
}

/** Child mode: switch to `backend`, build `workload`, time it, write the result to `outFile`. */
async function child(args: { backend: BenchBackend; workload: WorkloadName; workers: number; o: BenchOptions; outFile: string }): Promise<void> {
  const { backend, workload, workers, o } = args;
  let result: ChildResult;
  try {
    await useBestBackend({ prefer: backend });
  } catch (e) {
    result = { measurement: { status: 'unavailable', error: firstLine(e) } };
    fs.writeFileSync(args.outFile, JSON.stringify(result));
    return;
  }
  try {
    const w = buildWorkload(workload, { unetBatch: o.unetBatch, workers });
    const reps = workload === 'sample' ? o.sampleReps : o.reps;
    const m = await measureSteps(w.run, { reps, budgetSeconds: o.budgetSeconds });
    if (w.params && (m.status === 'ok' || m.status === 'capped')) m.params = w.params;
    w.dispose();
    result = { measurement: m, backend: backendInfo() };
  } catch (e) {
    // On cpu every kernel exists, so an error there is a real failure; elsewhere it is the backend's limit.
    const error = firstLine(e);
    result = { measurement: backend === 'cpu' ? { status: 'failed', error } : { status: 'unsupported', error }, backend: backendInfo() };
  }
  fs.writeFileSync(args.outFile, JSON.stringify(result));
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0].trim().slice(0, 300);
}

/** Runs one (backend, workload) child, killed after o.timeoutSeconds. */
function runChild(backend: BenchBackend, workload: WorkloadName, workers: number, o: BenchOptions): Promise<ChildResult> {
  const outFile = path.join(os.tmpdir(), `bench-${process.pid}-${backend}-${workload}-${workers}.json`);
  fs.rmSync(outFile, { force: true });
  const args = [
    '-r',
    require.resolve('tsx/cjs'),
    __filename,
    '--child',
    JSON.stringify({ backend, workload, workers, o, outFile }),
  ];
  return new Promise((resolve) => {
    const started = Date.now();
    const p = spawn(process.execPath, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || '/tmp' },
    });
    let log = '';
    const keep = (d: Buffer) => (log = (log + d.toString()).slice(-4000));
    p.stdout.on('data', keep);
    p.stderr.on('data', keep);
    const timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutSeconds * 1000);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      let r: ChildResult | undefined;
      try {
        r = JSON.parse(fs.readFileSync(outFile, 'utf8')) as ChildResult;
      } catch {
        r = undefined;
      }
      fs.rmSync(outFile, { force: true });
      if (r) return resolve(r);
      const seconds = (Date.now() - started) / 1000;
      if (signal === 'SIGKILL' && seconds >= o.timeoutSeconds) return resolve({ measurement: { status: 'timedOut', seconds } });
      const why = `the child process ended (code ${code}, signal ${signal}) after ${seconds.toFixed(0)} s without a result: ${log.trim().split('\n').slice(-3).join(' / ')}`;
      resolve({ measurement: { status: 'failed', error: why } });
    });
  });
}

/** PyTorch's results on `threads` threads, or the reason it failed; OPENBLAS_* unset (torchEnv). */
async function runTorch(o: BenchOptions, threads: number): Promise<{ torch: string; threads: number; python: string; results: Record<string, Measurement> } | { error: string }> {
  const cfg = { workloads: o.workloads, reps: o.reps, sampleReps: o.sampleReps, budgetSeconds: o.budgetSeconds, unetBatch: o.unetBatch, threads };
  const out = await execCapture(PYTHON, [TORCH_SCRIPT, 'bench', JSON.stringify(cfg)], o.timeoutSeconds * o.workloads.length, torchEnv(process.env).env);
  if (out.code !== 0) return { error: `${PYTHON} ${path.basename(TORCH_SCRIPT)} failed (code ${out.code}): ${out.stderr.trim().split('\n').slice(-2).join(' / ')}` };
  return JSON.parse(out.stdout);
}

function execCapture(cmd: string, args: string[], timeoutSeconds: number, env?: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(env ? { env } : {}) });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      process.stderr.write(d);
    });
    p.on('error', (e) => resolve({ code: -1, stdout, stderr: stderr + String(e) }));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutSeconds * 1000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Can PYTHON import torch? The reason when not. */
async function torchImportable(): Promise<string | null> {
  const r = await execCapture(PYTHON, ['-c', 'import torch'], 120);
  return r.code === 0 ? null : `${PYTHON} cannot import torch: ${r.stderr.trim().split('\n').pop() ?? `exit code ${r.code}`}`;
}

function cpuModel(): string {
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) return line.split(':')[1].trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

function packageVersion(name: string): string | null {
  try {
    return (JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}

const describe = (m: Measurement): string =>
  m.status === 'ok'
    ? `${formatSeconds(m.seconds)} (median of ${m.reps}, first ${formatSeconds(m.firstSeconds)})`
    : m.status === 'capped'
      ? `${formatSeconds(m.seconds)} (1 step, over the ${m.budgetSeconds} s budget: capped)`
      : m.status === 'timedOut'
        ? `killed after ${formatSeconds(m.seconds)} (--timeout) before a step finished`
        : `${m.status}: ${m.error}`;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') {
    await child(JSON.parse(argv[1]));
    process.exit(0); // Dawn keeps the event loop alive after a webgpu run
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(BENCH_USAGE);
    return;
  }
  const o = parseBenchOptions(argv, process.env);
  await tf.setBackend('cpu');
  const date = new Date().toISOString();
  const machine = {
    cpu: cpuModel(),
    cores: os.cpus().length,
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    loadAverage1m: +os.loadavg()[0].toFixed(2),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  };
  const versions = {
    node: process.version,
    tfjs: tf.version.tfjs,
    'tfjs-backend-wasm': packageVersion('@tensorflow/tfjs-backend-wasm'),
    'tfjs-backend-webgpu': packageVersion('@tensorflow/tfjs-backend-webgpu'),
    webgpu: packageVersion('webgpu'),
    'tfjs-node': packageVersion('@tensorflow/tfjs-node'),
    torch: null as string | null,
  };
  console.error(`bench: ${machine.cpu}, ${machine.cores} cores, load ${machine.loadAverage1m}; backends ${o.backends.join(',')}; workloads ${o.workloads.join(',')}`);

  // Rounds: every tfjs backend, then PyTorch at each thread count; nothing runs in parallel.
  let torch: Partial<Record<WorkloadName, Measurement>> | null = null;
  let torchInfo: Record<string, unknown> = {};
  let failures = 0;
  let torchOk = false;
  if (o.torch) {
    const why = await torchImportable();
    if (why) {
      console.error(`bench: PyTorch skipped: ${why}`);
      torchInfo = { skipped: why };
    } else {
      torchOk = true;
    }
  }
  const sides: BenchSide[] = [
    ...o.backends.map((backend) => ({ kind: 'tfjs' as const, backend })),
    ...(torchOk ? o.torchThreads.map((threads) => ({ kind: 'torch' as const, threads })) : []),
  ];
  const tfjsRounds: Record<string, Partial<Record<WorkloadName, Measurement[]>>> = {};
  const torchRounds: Record<number, Partial<Record<WorkloadName, Measurement[]>>> = {};
  const push = (into: Partial<Record<WorkloadName, Measurement[]>>, w: WorkloadName, m: Measurement) => (into[w] ??= []).push(m);
  const backendDetails: Record<string, unknown> = {};
  const unavailable: Record<string, Measurement> = {};
  for (const { round, side } of roundSchedule(o.rounds, sides)) {
    if (side.kind === 'tfjs') {
      const b = side.backend;
      for (const w of o.workloads) {
        for (const k of workerCounts(b, w, o)) {
          const key = `${b}#${k}`;
          tfjsRounds[key] ??= {};
          if (unavailable[b]) {
            push(tfjsRounds[key], w, unavailable[b]);
            continue;
          }
          const r = await runChild(b, w, k, o);
          push(tfjsRounds[key], w, r.measurement);
          if (r.backend) backendDetails[b] = r.backend;
          if (r.measurement.status === 'unavailable') unavailable[b] = r.measurement;
          console.error(`bench: round ${round} ${b} ${w}${k > 1 ? ` (${k} threads)` : ''}: ${describe(r.measurement)}`);
        }
      }
    } else {
      torchRounds[side.threads] ??= {};
      const r = await runTorch(o, side.threads);
      for (const w of o.workloads) {
        const m = 'error' in r ? ({ status: 'failed', error: r.error } as Measurement) : (r.results[w] as Measurement);
        push(torchRounds[side.threads], w, m);
        console.error(`bench: round ${round} PyTorch ${side.threads} thread(s) ${w}: ${describe(m)}`);
      }
      if (!('error' in r)) {
        versions.torch = r.torch;
        torchInfo = { python: r.python };
      }
    }
  }

  const results: Record<string, Partial<Record<WorkloadName, Measurement>>> = {};
  for (const b of o.backends) {
    results[b] = {};
    for (const w of o.workloads) {
      // the faster of the worker counts tried (1 only, for workloads and backends without workers)
      const counts = workerCounts(b, w, o);
      const m = counts.length > 1
        ? fastestThreads(counts.map((k) => ({ threads: k, m: combineRounds(tfjsRounds[`${b}#${k}`]?.[w] ?? []) })))
        : combineRounds(tfjsRounds[`${b}#${counts[0]}`]?.[w] ?? []);
      results[b][w] = m;
      if (m.status === 'failed') failures++;
    }
  }
  if (torchOk) {
    torch = {};
    // The ports must have exactly the TS models' parameter counts, or the comparison is void.
    const tsCounts = tfjsParamCounts({ unetBatch: o.unetBatch });
    for (const w of o.workloads) {
      let m = fastestThreads(o.torchThreads.map((threads) => ({ threads, m: combineRounds(torchRounds[threads][w] ?? []) })));
      const expected = tsCounts[w];
      if (expected !== undefined && (m.status === 'ok' || m.status === 'capped') && m.params !== expected) {
        const error = `parameter count mismatch: the PyTorch port has ${m.params}, the tfjs model ${expected}; fix bench/torch_bench.py`;
        console.error(`bench: PyTorch ${w} FAILED: ${error}`);
        m = { status: 'failed', error };
      }
      if (m.status === 'failed') failures++;
      torch[w] = m;
    }
    const unset = torchEnv(process.env).unset;
    torchInfo = { ...torchInfo, threadsTried: o.torchThreads, unsetEnv: unset, note: `PyTorch ran with ${unset.length ? `${unset.join(', ')} unset` : 'no OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE set (nothing to unset)'}` };
    console.error(`bench: ${torchInfo.note as string}`);
  }

  const table = formatTable({
    workloads: o.workloads,
    backends: o.backends,
    results,
    torch,
    torchLabel: torch ? `PyTorch ${versions.torch ?? ''} (faster of ${o.torchThreads.join(', ')} threads)`.replace('  ', ' ') : undefined,
    unetBatch: o.unetBatch,
    backendLabels: Object.fromEntries(
      Object.entries(backendDetails).flatMap(([b, d]) => {
        const wasm = (d as ReturnType<typeof backendInfo>).wasm;
        return wasm ? [[b, `${b} (${wasm.threadCount} thread${wasm.threadCount === 1 ? '' : 's'}${wasm.simd ? ', SIMD' : ''})`]] : [];
      }),
    ),
  });
  const report = {
    date,
    machine,
    versions,
    options: o,
    workloads: Object.fromEntries(o.workloads.map((w) => [w, WORKLOAD_LABELS[w].replace('{unetBatch}', String(o.unetBatch))])),
    backends: backendDetails,
    torch: torch ? { ...torchInfo, results: torch } : torchInfo,
    results,
    table,
  };
  fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  writeFileAtomic(o.out, JSON.stringify(report, null, 2) + '\n');
  console.log(`\n${date.slice(0, 16).replace('T', ' ')} UTC, ${machine.cpu}, ${machine.cores} cores, Node ${versions.node}, tfjs ${versions.tfjs}${versions.torch ? `, torch ${versions.torch}` : ''}\n`);
  console.log(table);
  console.error(`bench: wrote ${o.out}`);
  if (failures) {
    console.error(`bench: ${failures} workload(s) FAILED (see the table)`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
