/**
 * The pure parts of `npm run bench`: the median, the step-timing loop with its time cap, the
 * command-line options and the markdown table. No tfjs here, so that test/bench.test.ts checks them
 * with fake clocks and fake steps in milliseconds.
 */

import type { BackendName } from '../lib';

/** The workloads of the bench, in table order. */
export const WORKLOADS = ['mlp', 'conv', 'mlpDenoiser', 'unet', 'sample'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

/** The tfjs backends the bench knows, in table order; each one a name useBestBackend chooses (checked by the compiler). */
export const BENCH_BACKENDS = ['cpu', 'wasm', 'webgpu', 'tensorflow'] as const satisfies readonly BackendName[];
export type BenchBackend = (typeof BENCH_BACKENDS)[number];

/** One line per workload: what is timed, for the table's first column and the JSON. */
export const WORKLOAD_LABELS: Record<WorkloadName, string> = {
  mlp: 'MLP 3→128→128→128→2, batch 256: Adam step',
  conv: 'conv 3×3 1→32→32→1, 28×28, batch 32: Adam step',
  mlpDenoiser: 'MlpDenoiser (default 2-D), batch 256: Adam step',
  unet: 'UNetDenoiser (MNIST default), batch {unetBatch}: Adam step',
  sample: '256 2-D samples, T = 1000, MlpDenoiser (sampleDDPM)',
};

/** The outcome of timing one workload on one backend (or in PyTorch). */
export type Measurement =
  /** `reps` timed steps after warm-up; seconds is their median. */
  | {
      status: 'ok';
      seconds: number;
      reps: number;
      times: number[];
      firstSeconds: number;
      params?: number;
      /** With rounds: each round's median (seconds is their median); the table prints their min–max. */
      roundSeconds?: number[];
      /** PyTorch: the thread count this result ran on (the faster of those tried). */
      threads?: number;
    }
  /** The first step alone took longer than the budget: that one step (warm-up included) is all there is. */
  | { status: 'capped'; seconds: number; reps: 1; budgetSeconds: number; params?: number }
  /** The backend could not run it (a missing kernel, a WebGPU limit...): the error message. */
  | { status: 'unsupported'; error: string }
  /** The backend is not available at all on this machine. */
  | { status: 'unavailable'; error: string }
  /** No step finished within the hard timeout (--timeout): the child was killed; the time is a lower bound. */
  | { status: 'timedOut'; seconds: number }
  /** Something went wrong that is not the backend's limitation (a wrong port, a crash). */
  | { status: 'failed'; error: string };

/** The median of a non-empty list (mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  if (!Array.isArray(xs) || xs.length === 0) throw new Error(`median needs a non-empty array of numbers, got ${JSON.stringify(xs)}`);
  for (const [i, x] of xs.entries()) {
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error(`median: xs[${i}] must be a finite number, got ${x}`);
  }
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** How measureSteps times a workload. */
export interface TimingOptions {
  /** At most this many timed steps after the warm-up (>= 1). */
  reps: number;
  /** Seconds: a first step slower than this is recorded alone, marked 'capped'; it also bounds the timed steps' total. */
  budgetSeconds: number;
  /** At least this many timed steps when the first step is under budget; default 3 (capped at reps). */
  minReps?: number;
}

/**
 * Runs n units of work and resolves to each one's duration in seconds. A workload provides either
 * this directly (the library's train(), which times its own steps) or a single `step`, which
 * stepsRunner turns into one.
 */
export type StepRunner = (n: number) => Promise<number[]>;

/** A StepRunner that times n sequential calls of `step` with the clock `now` (milliseconds). */
export function stepsRunner(step: () => Promise<void>, now: () => number = () => performance.now()): StepRunner {
  return async (n) => {
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const start = now();
      await step();
      times.push((now() - start) / 1000);
    }
    return times;
  };
}

/**
 * Times a workload. Step 1 is the warm-up (kernel compilation, shader pipelines, first
 * allocations); when it takes longer than budgetSeconds it is recorded alone as 'capped'.
 * Otherwise one more untimed warm-up step runs, then n = clamp(floor(budget / secondStep),
 * minReps, reps) timed steps, so that a workload takes about the budget at most; the result is
 * their median.
 */
export async function measureSteps(run: StepRunner, o: TimingOptions): Promise<Measurement> {
  checkPositiveInteger('reps', o.reps);
  if (!(typeof o.budgetSeconds === 'number' && o.budgetSeconds > 0 && Number.isFinite(o.budgetSeconds))) {
    throw new Error(`budgetSeconds must be a finite number > 0, got ${o.budgetSeconds}`);
  }
  const minReps = Math.min(o.minReps ?? 3, o.reps);
  checkPositiveInteger('minReps', minReps);
  const one = async (): Promise<number> => {
    const t = await run(1);
    if (t.length !== 1 || !Number.isFinite(t[0])) throw new Error(`the step runner must return 1 duration, got ${JSON.stringify(t)}`);
    return t[0];
  };
  const first = await one();
  if (first > o.budgetSeconds) return { status: 'capped', seconds: first, reps: 1, budgetSeconds: o.budgetSeconds };
  const second = await one();
  const n = repsWithinBudget(second, o.reps, minReps, o.budgetSeconds);
  const times = await run(n);
  if (times.length !== n) throw new Error(`the step runner must return ${n} durations, got ${times.length}`);
  return { status: 'ok', seconds: median(times), reps: n, times, firstSeconds: first };
}

/** clamp(floor(budget / stepSeconds), minReps, reps): how many timed steps fit in the budget. */
export function repsWithinBudget(stepSeconds: number, reps: number, minReps: number, budgetSeconds: number): number {
  const fit = stepSeconds > 0 ? Math.floor(budgetSeconds / stepSeconds) : reps;
  return Math.max(minReps, Math.min(reps, fit));
}

function checkPositiveInteger(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be an integer >= 1, got ${v}`);
}

/** A duration for the table: µs, ms or s with three significant digits. */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) throw new Error(`formatSeconds: s must be a finite number >= 0, got ${s}`);
  const sig = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  if (s < 1e-3) return `${sig(s * 1e6)} µs`;
  if (s < 1) return `${sig(s * 1e3)} ms`;
  return `${sig(s)} s`;
}

/** The ratio tfjs / PyTorch for the table: "9.1×". */
export function formatRatio(r: number): string {
  return r >= 100 ? `${r.toFixed(0)}×` : r >= 10 ? `${r.toFixed(1)}×` : `${r.toFixed(2)}×`;
}

/** Everything the table needs: one row per workload, one column per backend, PyTorch last. */
export interface BenchTableInput {
  workloads: WorkloadName[];
  backends: string[];
  /** results[backend][workload]; a missing entry prints as "not run". */
  results: Record<string, Partial<Record<WorkloadName, Measurement>>>;
  /** PyTorch's results per workload, or null when torch was not run; `torchLabel` heads its column. */
  torch: Partial<Record<WorkloadName, Measurement>> | null;
  torchLabel?: string;
  /** Column heads per backend ("wasm (1 thread)"); the backend's name where absent. */
  backendLabels?: Record<string, string>;
  /** Replaces {unetBatch} in the labels. */
  unetBatch: number;
}

/**
 * The markdown table: each cell is the median time, "(r× PyTorch)" when PyTorch has a median for
 * that row (not for a capped PyTorch cell), "capped" for a single over-budget step (its time is a lower bound), and footnote numbers for
 * unsupported/failed cells whose messages are listed under the table.
 */
export function formatTable(t: BenchTableInput): string {
  const notes: string[] = [];
  const note = (text: string): string => {
    let k = notes.indexOf(text);
    if (k < 0) k = notes.push(text) - 1;
    return `[${k + 1}]`;
  };
  const torchCol = t.torch !== null;
  const header = ['workload', ...t.backends.map((b) => t.backendLabels?.[b] ?? b), ...(torchCol ? [t.torchLabel ?? 'PyTorch'] : [])];
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`];
  for (const w of t.workloads) {
    const ref = t.torch?.[w];
    // A capped PyTorch cell is one warm-up step, not a step time: no ratio against it.
    const refSeconds = ref && ref.status === 'ok' ? ref.seconds : undefined;
    const cell = (m: Measurement | undefined, isTorch: boolean): string => {
      if (!m) return 'not run';
      switch (m.status) {
        case 'ok':
        case 'capped': {
          const spread = m.status === 'ok' && m.roundSeconds && m.roundSeconds.length > 1 ? ` [${formatSpread(m.roundSeconds)}]` : '';
          const threads = m.status === 'ok' && m.threads !== undefined ? `, ${m.threads} thr` : '';
          const time = `${formatSeconds(m.seconds)}${spread}${threads}${m.status === 'capped' ? ' (1 step, capped)' : ''}`;
          if (isTorch || refSeconds === undefined) return time;
          return `${time} (${formatRatio(m.seconds / refSeconds)})`;
        }
        case 'timedOut':
          return `> ${formatSeconds(m.seconds)} (killed)`;
        case 'unsupported':
          return `unsupported ${note(m.error)}`;
        case 'unavailable':
          return `unavailable ${note(m.error)}`;
        case 'failed':
          return `**failed** ${note(m.error)}`;
      }
    };
    const row = [WORKLOAD_LABELS[w].replace('{unetBatch}', String(t.unetBatch))];
    for (const b of t.backends) row.push(cell(t.results[b]?.[w], false));
    if (torchCol) row.push(cell(ref, true));
    lines.push(`| ${row.map(escapeCell).join(' | ')} |`);
  }
  const footer = notes.map((n, i) => `[${i + 1}] ${n}`);
  const legend = [
    ...(torchCol ? ["(r×) = this time / PyTorch's in the same run."] : []),
    '[a–b]: the lowest and highest of the rounds\' medians (the time shown is their median); "n thr": the PyTorch thread count that was faster.',
    '"capped": the first step alone exceeded the time budget; its time includes warm-up. "killed": no step finished within the timeout.',
  ];
  return [...lines, '', ...legend, ...footer].join('\n').trimEnd() + '\n';
}

function escapeCell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The bench's options, from flags (--name value or --name=value) over BENCH_* environment variables. */
export interface BenchOptions {
  backends: BenchBackend[];
  workloads: WorkloadName[];
  reps: number;
  sampleReps: number;
  budgetSeconds: number;
  /** A workload's child process is killed after this many seconds (recorded as failed). */
  timeoutSeconds: number;
  unetBatch: number;
  torch: boolean;
  /** Rounds of (every tfjs side, then PyTorch at each thread count), >= 1. */
  rounds: number;
  /** PyTorch runs at each of these thread counts; each workload reports the faster. */
  torchThreads: number[];
  /**
   * The train()-based workloads (mlpDenoiser, unet) on wasm and cpu run at each of these thread
   * counts (train's workers: worker threads that share each batch); each reports the faster.
   */
  tfjsWorkers: number[];
  out: string;
}

export const BENCH_DEFAULTS: BenchOptions = {
  backends: [...BENCH_BACKENDS],
  workloads: [...WORKLOADS],
  reps: 20,
  sampleReps: 3,
  budgetSeconds: 20,
  timeoutSeconds: 900,
  unetBatch: 32,
  torch: true,
  rounds: 3,
  torchThreads: [1, 2],
  tfjsWorkers: [1, 2],
  out: 'out/bench.json',
};

/** Workloads that go through the library's train(), which can share each batch over worker threads. */
export const WORKER_WORKLOADS: readonly WorkloadName[] = ['mlpDenoiser', 'unet'];
/** Backends on which train() takes workers > 1. */
export const WORKER_BACKENDS: readonly BenchBackend[] = ['wasm', 'cpu'];

/** The worker counts the bench tries for (backend, workload): o.tfjsWorkers where train() can use them, else [1]. */
export function workerCounts(backend: BenchBackend, workload: WorkloadName, o: Pick<BenchOptions, 'tfjsWorkers'>): number[] {
  return WORKER_BACKENDS.includes(backend) && WORKER_WORKLOADS.includes(workload) ? o.tfjsWorkers : [1];
}

export const BENCH_USAGE = `npm run bench -- [options]   (each option also as an environment variable)
  --backends cpu,wasm,webgpu,tensorflow   BENCH_BACKENDS   (default: all four; missing ones are marked unavailable)
  --workloads ${WORKLOADS.join(',')}   BENCH_WORKLOADS
  --reps N          BENCH_REPS        timed steps per workload at most (default ${BENCH_DEFAULTS.reps})
  --sample-reps N   BENCH_SAMPLE_REPS timed sampling runs (default ${BENCH_DEFAULTS.sampleReps})
  --budget S        BENCH_BUDGET_S    a first step slower than S seconds is recorded alone, as capped (default ${BENCH_DEFAULTS.budgetSeconds})
  --timeout S       BENCH_TIMEOUT_S   kill a workload after S seconds (default ${BENCH_DEFAULTS.timeoutSeconds})
  --unet-batch N    BENCH_UNET_BATCH  (default ${BENCH_DEFAULTS.unetBatch})
  --no-torch        BENCH_TORCH=0     skip PyTorch
  --rounds N        BENCH_ROUNDS      rounds of tfjs then PyTorch, interleaved (default ${BENCH_DEFAULTS.rounds})
  --torch-threads L BENCH_TORCH_THREADS  PyTorch thread counts to try, the faster is reported (default ${BENCH_DEFAULTS.torchThreads.join(',')})
  --tfjs-workers L  BENCH_TFJS_WORKERS   train()'s worker threads to try on wasm and cpu for mlpDenoiser and unet, the faster is reported (default ${BENCH_DEFAULTS.tfjsWorkers.join(',')})
  --out FILE        BENCH_OUT         (default ${BENCH_DEFAULTS.out})`;

/** Parses argv (without node and the script) over env; throws an Error naming the bad option. */
export function parseBenchOptions(argv: string[], env: Record<string, string | undefined> = {}): BenchOptions {
  const raw: Record<string, string> = {};
  const envNames: Record<string, string> = {
    backends: 'BENCH_BACKENDS',
    workloads: 'BENCH_WORKLOADS',
    reps: 'BENCH_REPS',
    'sample-reps': 'BENCH_SAMPLE_REPS',
    budget: 'BENCH_BUDGET_S',
    timeout: 'BENCH_TIMEOUT_S',
    'unet-batch': 'BENCH_UNET_BATCH',
    torch: 'BENCH_TORCH',
    rounds: 'BENCH_ROUNDS',
    'torch-threads': 'BENCH_TORCH_THREADS',
    'tfjs-workers': 'BENCH_TFJS_WORKERS',
    out: 'BENCH_OUT',
  };
  for (const [k, e] of Object.entries(envNames)) if (env[e] !== undefined && env[e] !== '') raw[k] = env[e] as string;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--no-torch') {
      raw.torch = '0';
      continue;
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m || !(m[1] in envNames)) throw new Error(`unknown option ${JSON.stringify(a)}\n${BENCH_USAGE}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`option --${m[1]} needs a value\n${BENCH_USAGE}`);
    raw[m[1]] = value;
  }
  const list = <T extends string>(name: string, valid: readonly T[], dflt: T[]): T[] => {
    if (raw[name] === undefined) return dflt;
    const items = raw[name].split(',').map((s) => s.trim()).filter(Boolean);
    for (const it of items) {
      if (!(valid as readonly string[]).includes(it)) throw new Error(`--${name}: ${JSON.stringify(it)} is not one of ${valid.join(', ')}`);
    }
    if (items.length === 0) throw new Error(`--${name} must name at least one of ${valid.join(', ')}`);
    return valid.filter((v) => items.includes(v));
  };
  const num = (name: string, dflt: number, integer: boolean): number => {
    if (raw[name] === undefined) return dflt;
    const v = Number(raw[name]);
    if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} > 0, got ${JSON.stringify(raw[name])}`);
    }
    return v;
  };
  const threadList = (v: string | undefined, name = 'torch-threads', dflt = BENCH_DEFAULTS.torchThreads, max = Infinity): number[] => {
    if (v === undefined) return [...dflt];
    const items = v.split(',').map((x) => x.trim()).filter(Boolean);
    const nums = items.map(Number);
    if (items.length === 0 || nums.some((n) => !Number.isInteger(n) || n < 1 || n > max)) {
      throw new Error(`--${name} must be a comma-separated list of integers >= 1${max < Infinity ? ` and <= ${max}` : ''}, got ${JSON.stringify(v)}`);
    }
    return [...new Set(nums)];
  };
  const torchRaw = raw.torch;
  if (torchRaw !== undefined && !['0', '1', 'true', 'false'].includes(torchRaw)) {
    throw new Error(`BENCH_TORCH must be 0, 1, true or false, got ${JSON.stringify(torchRaw)}`);
  }
  return {
    backends: list('backends', BENCH_BACKENDS, [...BENCH_DEFAULTS.backends]),
    workloads: list('workloads', WORKLOADS, [...BENCH_DEFAULTS.workloads]),
    reps: num('reps', BENCH_DEFAULTS.reps, true),
    sampleReps: num('sample-reps', BENCH_DEFAULTS.sampleReps, true),
    budgetSeconds: num('budget', BENCH_DEFAULTS.budgetSeconds, false),
    timeoutSeconds: num('timeout', BENCH_DEFAULTS.timeoutSeconds, false),
    unetBatch: num('unet-batch', BENCH_DEFAULTS.unetBatch, true),
    torch: torchRaw === undefined ? true : torchRaw === '1' || torchRaw === 'true',
    rounds: num('rounds', BENCH_DEFAULTS.rounds, true),
    torchThreads: threadList(raw['torch-threads']),
    tfjsWorkers: threadList(raw['tfjs-workers'], 'tfjs-workers', BENCH_DEFAULTS.tfjsWorkers, 64),
    out: raw.out ?? BENCH_DEFAULTS.out,
  };
}

/** "0.91–1.52 s": the range of the rounds' medians, in the unit of the larger end. */
export function formatSpread(xs: readonly number[]): string {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  const unit = hi < 1e-3 ? 1e6 : hi < 1 ? 1e3 : 1;
  const name = unit === 1e6 ? 'µs' : unit === 1e3 ? 'ms' : 's';
  const sig = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  return `${sig(lo * unit)}–${sig(hi * unit)} ${name}`;
}

/** One side of the bench, as the rounds run it: the tfjs backends and PyTorch at each thread count. */
export type BenchSide = { kind: 'tfjs'; backend: BenchBackend } | { kind: 'torch'; threads: number };

/**
 * The order the bench runs its sides: round 1 all sides, round 2 all sides, ... (tfjs, PyTorch,
 * tfjs, PyTorch, ...), so that a minute of extra load on the machine hits both sides alike
 * instead of one side's whole measurement.
 */
export function roundSchedule(rounds: number, sides: readonly BenchSide[]): { round: number; side: BenchSide }[] {
  checkPositiveInteger('rounds', rounds);
  if (sides.length === 0) throw new Error('roundSchedule needs at least one side');
  const out: { round: number; side: BenchSide }[] = [];
  for (let round = 1; round <= rounds; round++) for (const side of sides) out.push({ round, side });
  return out;
}

/**
 * One measurement from the rounds of one (side, workload): when every round is 'ok', the median
 * of the rounds' medians, with each round's median kept (roundSeconds) for the spread, the steps
 * pooled and the first round's first step. When any round did not time steps, its outcome stands
 * for the whole: a failure/unsupported/unavailable/timeout (the first such), else 'capped' with
 * the median of the capped first steps.
 */
export function combineRounds(ms: readonly Measurement[]): Measurement {
  if (ms.length === 0) throw new Error('combineRounds needs at least one round');
  const bad = ms.find((m) => m.status !== 'ok' && m.status !== 'capped');
  if (bad) return bad;
  if (ms.some((m) => m.status === 'capped')) {
    const capped = ms.filter((m): m is Extract<Measurement, { status: 'capped' }> => m.status === 'capped');
    return { ...capped[0], seconds: median(ms.map((m) => (m as { seconds: number }).seconds)) };
  }
  const ok = ms as Extract<Measurement, { status: 'ok' }>[];
  const roundSeconds = ok.map((m) => m.seconds);
  const out: Measurement = {
    status: 'ok',
    seconds: median(roundSeconds),
    reps: ok.reduce((n, m) => n + m.reps, 0),
    times: ok.flatMap((m) => m.times),
    firstSeconds: ok[0].firstSeconds,
    roundSeconds,
  };
  if (ok[0].params !== undefined) out.params = ok[0].params;
  return out;
}

/**
 * PyTorch's result for one workload: of the thread counts tried, the one with the lowest combined
 * median (only 'ok' results compete; with none, the first thread count's outcome), tagged with
 * its thread count.
 */
export function fastestThreads(byThreads: readonly { threads: number; m: Measurement }[]): Measurement {
  if (byThreads.length === 0) throw new Error('fastestThreads needs at least one thread count');
  const ok = byThreads.filter((b) => b.m.status === 'ok');
  if (ok.length === 0) return byThreads[0].m;
  const best = ok.reduce((a, b) => ((b.m as { seconds: number }).seconds < (a.m as { seconds: number }).seconds ? b : a));
  return { ...(best.m as Extract<Measurement, { status: 'ok' }>), threads: best.threads };
}

/** The variables the machine sets for old OpenBLAS builds, unset for the PyTorch process only. */
export const TORCH_UNSET_ENV = ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'] as const;

/** PyTorch's environment: `env` without TORCH_UNSET_ENV, and which of them were set (for the report). */
export function torchEnv(env: Record<string, string | undefined>): { env: Record<string, string>; unset: string[] } {
  const out: Record<string, string> = {};
  const unset: string[] = [];
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) continue;
    if ((TORCH_UNSET_ENV as readonly string[]).includes(k)) unset.push(`${k}=${v}`);
    else out[k] = v;
  }
  return { env: out, unset };
}
