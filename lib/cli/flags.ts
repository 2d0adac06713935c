/**
 * The `ddpm` flag grammar as one table: every flag of every command, its value's type and range,
 * and its help line; the parser, the value checks and the --help pages all read it. Grammar:
 * `--name value` or `--name=value` (a value may start with '-' when it is a number: `--lr -1`),
 * booleans take no value, a flag given twice is refused, `-h` is `--help`, and nothing else may
 * stand on the line.
 */

/** A mistake in the command line: printed with the command's usage hint, exit code 2. */
export class UsageError extends Error {}

/** The commands. */
export const COMMANDS = ['train', 'sample', 'eval', 'info'] as const;
export type Command = (typeof COMMANDS)[number];

type Kind =
  | { type: 'boolean' }
  | { type: 'string' }
  | { type: 'choice'; choices: readonly string[] }
  | { type: 'int'; lo: number; hi?: number }
  | { type: 'number'; lo: number; hi: number; openLo?: boolean; openHi?: boolean; range: string };

/** One row of the table: a flag of some commands, with its value's kind and its help line. */
export interface FlagRow {
  name: string;
  commands: readonly Command[];
  kind: Kind;
  /** The value's placeholder in the help (none for booleans). */
  arg?: string;
  help: string;
}

/** The backends --backend accepts (auto: the fastest that works). */
export const BACKENDS = ['auto', 'cpu', 'wasm', 'webgpu', 'tensorflow'] as const;
/** The largest --n of `ddpm sample` for image runs (the PNG grid stays below 3,100 px a side) and for 2-D runs. */
export const MAX_SAMPLE_IMAGES = 10000;
export const MAX_SAMPLE_POINTS = 100000;
const SEED_MAX = 2 ** 31 - 1;
const ALL = COMMANDS;

/** Every flag. Rows of one name for different commands carry that command's meaning. */
export const FLAGS: readonly FlagRow[] = [
  { name: 'data', commands: ['train'], kind: { type: 'choice', choices: ['swissroll', 'moons', 'mixture', 'checkerboard', 'mnist'] }, arg: 'SET', help: 'swissroll, moons, mixture, checkerboard or mnist (required unless --resume)' },
  { name: 'model', commands: ['train'], kind: { type: 'choice', choices: ['mlp', 'unet'] }, arg: 'KIND', help: 'mlp or unet; default mlp for 2-D sets, unet for mnist' },
  { name: 'steps', commands: ['train'], kind: { type: 'int', lo: 1 }, arg: 'N', help: 'total training steps (1e3 means 1000); default 2000 (2-D) or 1000 (mnist)' },
  { name: 'batch', commands: ['train'], kind: { type: 'int', lo: 1 }, arg: 'B', help: 'batch size; default 128 (2-D) or 32 (mnist)' },
  { name: 'lr', commands: ['train'], kind: { type: 'number', lo: 0, hi: 1e6, openLo: true, range: 'in (0, 1e6]' }, arg: 'LR', help: "Adam's learning rate; default 1e-3" },
  { name: 'schedule', commands: ['train'], kind: { type: 'choice', choices: ['linear', 'cosine'] }, arg: 'NAME', help: 'linear (betas 1e-4..0.02 scaled by 1000/T) or cosine; default linear' },
  { name: 'T', commands: ['train'], kind: { type: 'int', lo: 1, hi: 100000 }, arg: 'T', help: 'diffusion steps, refused when the schedule leaves abar_T > 1e-2; default 1000' },
  { name: 'seed', commands: ['train'], kind: { type: 'int', lo: 0, hi: SEED_MAX }, arg: 'S', help: 'seed of the weights, data, batches and noise; default 0' },
  { name: 'out', commands: ['train'], kind: { type: 'string' }, arg: 'RUN_DIR', help: 'the run directory (required); checked before training: a directory, writable, room for two checkpoints' },
  { name: 'resume', commands: ['train'], kind: { type: 'boolean' }, help: 'continue the run in RUN_DIR from its last checkpoint; other flags must equal the run\'s' },
  { name: 'ema', commands: ['train'], kind: { type: 'number', lo: 0, hi: 1, openHi: true, range: 'in [0, 1)' }, arg: 'DECAY', help: 'keep an EMA of the weights, decay min(DECAY, (1+k)/(10+k)) at step k; 0 = none; default 0.999' },
  { name: 'checkpoint-every', commands: ['train'], kind: { type: 'int', lo: 1 }, arg: 'N', help: 'save a checkpoint every N steps (and at the end); default 100' },
  { name: 'skip-nonfinite', commands: ['train'], kind: { type: 'boolean' }, help: 'skip (and count) a batch whose loss or gradient is NaN/Inf instead of stopping' },
  { name: 'grad-clip', commands: ['train'], kind: { type: 'number', lo: 0, hi: Infinity, openLo: true, range: '> 0' }, arg: 'C', help: "clip the gradients' global norm to C; default none" },
  { name: 'loss', commands: ['train'], kind: { type: 'choice', choices: ['simple', 'vlb', 'hybrid', 'minsnr'] }, arg: 'NAME', help: 'simple, vlb, hybrid or minsnr (simple with Min-SNR-5 weights); default simple' },
  { name: 'n-data', commands: ['train'], kind: { type: 'int', lo: 1, hi: 1e7 }, arg: 'N', help: 'training examples: 2-D sets default 10000 (at most 1e7), mnist default all 9,000 train digits (at most 1e5)' },
  { name: 'hidden', commands: ['train'], kind: { type: 'int', lo: 1, hi: 1 << 16 }, arg: 'H', help: 'mlp: hidden width (128)' },
  { name: 'depth', commands: ['train'], kind: { type: 'int', lo: 1, hi: 64 }, arg: 'D', help: 'mlp: hidden layers (3)' },
  { name: 'embed-dim', commands: ['train'], kind: { type: 'int', lo: 2, hi: 4096 }, arg: 'E', help: 'mlp: even time-embedding width (32)' },
  { name: 'channels', commands: ['train'], kind: { type: 'int', lo: 2, hi: 4096 }, arg: 'C', help: 'unet: base channels (32)' },
  { name: 'channel-mults', commands: ['train'], kind: { type: 'string' }, arg: 'M,M', help: 'unet: 1 to 3 channel multipliers per level (1,2,2)' },
  { name: 'res-blocks', commands: ['train'], kind: { type: 'int', lo: 1, hi: 16 }, arg: 'R', help: 'unet: residual blocks per level (1)' },
  { name: 'groups', commands: ['train'], kind: { type: 'int', lo: 1, hi: 4096 }, arg: 'G', help: 'unet: group-norm groups (8)' },
  { name: 'no-attention', commands: ['train'], kind: { type: 'boolean' }, help: 'unet: no self-attention block' },
  { name: 'conditional', commands: ['train'], kind: { type: 'boolean' }, help: "mnist: a class-conditional U-Net (10 digit classes and a null class) trained on MNIST's labels, for classifier-free guidance" },
  { name: 'workers', commands: ['train'], kind: { type: 'int', lo: 1, hi: 64 }, arg: 'N', help: 'threads that share each batch on the wasm or cpu backend (N - 1 worker threads, a model replica each); default 1. A run may change it on --resume; results differ from 1 thread by float32 rounding' },
  { name: 'p-uncond', commands: ['train'], kind: { type: 'number', lo: 0, hi: 1, range: 'in [0, 1]' }, arg: 'P', help: 'with --conditional: the probability a label is dropped to the null class at a step, in [0, 1]; default 0.1' },

  { name: 'run', commands: ['sample', 'eval', 'info'], kind: { type: 'string' }, arg: 'RUN_DIR', help: 'the run directory (required)' },
  { name: 'out', commands: ['sample'], kind: { type: 'string' }, arg: 'FILE', help: '.png (image runs: a grid), .csv or .json (2-D runs) (required); checked before sampling' },
  { name: 'n', commands: ['sample'], kind: { type: 'int', lo: 1, hi: MAX_SAMPLE_POINTS }, arg: 'N', help: `how many samples: 1..${MAX_SAMPLE_IMAGES} images (default 16) or 1..${MAX_SAMPLE_POINTS} 2-D points (default 1000)` },
  { name: 'chunk', commands: ['sample', 'eval'], kind: { type: 'int', lo: 1, hi: MAX_SAMPLE_POINTS }, arg: 'K', help: 'samples per batch; default: the largest power of two that fits in 256 MiB of tensors (the results depend on K)' },
  { name: 'sampler', commands: ['sample', 'eval'], kind: { type: 'choice', choices: ['ddpm', 'ddim'] }, arg: 'NAME', help: 'ddpm (T steps) or ddim; default ddpm (eval: the sampler of the judged digits)' },
  { name: 'steps', commands: ['sample', 'eval'], kind: { type: 'int', lo: 1 }, arg: 'K', help: 'DDIM steps in [1, T]; default 50 (ddim only)' },
  { name: 'eta', commands: ['sample', 'eval'], kind: { type: 'number', lo: 0, hi: 1, range: 'in [0, 1]' }, arg: 'E', help: "DDIM's eta in [0, 1] (0 deterministic, 1 DDPM's variance); default 0 (ddim only)" },
  { name: 'n', commands: ['eval'], kind: { type: 'int', lo: 2, hi: 100000 }, arg: 'N', help: 'held-out digits (default 16) or 2-D samples (default 1000), in [2, 100000]' },
  { name: 'judge', commands: ['eval'], kind: { type: 'int', lo: 0, hi: MAX_SAMPLE_IMAGES }, arg: 'N', help: `mnist runs: digits sampled and scored by the digit judge (confident share, classes, Fréchet distance, beside references), in [0, ${MAX_SAMPLE_IMAGES}]; 0 skips; default 64` },
  { name: 'seed', commands: ['sample', 'eval'], kind: { type: 'int', lo: 0, hi: SEED_MAX }, arg: 'S', help: 'seed of the noise; default 0' },
  { name: 'weights', commands: ['sample', 'eval'], kind: { type: 'choice', choices: ['ema', 'model'] }, arg: 'W', help: 'ema or model; default ema when the run keeps one' },
  { name: 'class', commands: ['sample', 'eval'], kind: { type: 'string' }, arg: 'K', help: 'conditional runs: a class 0..9, a comma list (3,7) or all; --n (sample) or --judge (eval) digits per class, one grid row per class' },
  { name: 'guidance', commands: ['sample', 'eval'], kind: { type: 'number', lo: 0, hi: Infinity, range: '>= 0' }, arg: 'W', help: 'with --class: the guidance weight w >= 0, eps~ = (1 + w) eps(x|c) - w eps(x); default 0 (the conditional model alone)' },
  { name: 'json', commands: ['eval', 'info'], kind: { type: 'boolean' }, help: 'print the result as JSON' },

  { name: 'backend', commands: ALL, kind: { type: 'choice', choices: BACKENDS }, arg: 'NAME', help: 'auto (the fastest that works), cpu, wasm, webgpu or tensorflow; default auto' },
  { name: 'quiet', commands: ALL, kind: { type: 'boolean' }, help: 'no progress bar and no backend line' },
  { name: 'help', commands: ALL, kind: { type: 'boolean' }, help: 'this help' },
];

/** The parsed flags of one command line: raw strings (true for booleans) by flag name. */
export type Values = Record<string, string | boolean | undefined>;

/** The table's row for `name` in `cmd`, if the command has that flag. */
export function flagRow(cmd: Command, name: string): FlagRow | undefined {
  return FLAGS.find((f) => f.name === name && f.commands.includes(cmd));
}

// A value that starts with '-' is taken as the value only when it is a number (`--lr -1`, `--x -5e-3`).
const NUMBER_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** Parses `args` (after the command) against the table; every mistake is a UsageError naming the flag. */
export function parseFlags(cmd: Command, args: string[]): Values {
  const values: Values = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-h') {
      setOnce(values, 'help', true, '-h');
      continue;
    }
    if (!a.startsWith('--') || a === '--') {
      throw new UsageError(a.startsWith('-') ? `unknown option ${JSON.stringify(a)} (options start with --)` : `unexpected argument ${JSON.stringify(a)} (options start with --)`);
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    const row = flagRow(cmd, name);
    if (!row) {
      const elsewhere = COMMANDS.filter((c) => c !== cmd && flagRow(c, name));
      throw new UsageError(`Unknown option '--${name}'${elsewhere.length ? ` (an option of ddpm ${elsewhere.join(', ')}, not of ddpm ${cmd})` : ''}`);
    }
    if (row.kind.type === 'boolean') {
      if (eq > 0) throw new UsageError(`--${name} takes no value, got ${JSON.stringify(a.slice(eq + 1))}`);
      setOnce(values, name, true);
      continue;
    }
    let value: string;
    if (eq > 0) value = a.slice(eq + 1);
    else {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith('-') && !NUMBER_TEXT.test(next))) {
        throw new UsageError(`--${name} needs a value${next === undefined ? '' : `, got the option ${JSON.stringify(next)} (write --${name}=${next} for a value starting with -)`}`);
      }
      value = next;
      i++;
    }
    setOnce(values, name, value);
  }
  return values;
}

function setOnce(values: Values, name: string, value: string | boolean, shown = `--${name}`): void {
  if (values[name] !== undefined) {
    const before = values[name] === true ? '' : ` (${JSON.stringify(values[name])}, then ${JSON.stringify(value)})`;
    throw new UsageError(`${shown === '-h' ? '-h/--help' : shown} is given twice${before}; give each option once`);
  }
  values[name] = value;
}

// ---- the values: every bad one is a UsageError naming the flag, the value and the range ----

function rowOf(cmd: Command, name: string): FlagRow {
  const row = flagRow(cmd, name);
  if (!row) throw new Error(`internal: ddpm ${cmd} has no flag --${name} in the table`);
  return row;
}

/** Parses a decimal or exponent number text (not hex, not empty, not Infinity). */
function numberText(s: string): number {
  return NUMBER_TEXT.test(s.trim()) ? Number(s.trim()) : NaN;
}

/** The integer value of --name (the table's range), or undefined when not given. `1e3` is 1000. */
export function intValue(v: Values, cmd: Command, name: string, hiOverride?: number): number | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  const k = rowOf(cmd, name).kind;
  if (k.type !== 'int') throw new Error(`internal: --${name} is not an integer flag`);
  const hi = hiOverride ?? k.hi ?? Number.MAX_SAFE_INTEGER;
  const n = numberText(String(raw));
  if (!Number.isSafeInteger(n) || n < k.lo || n > hi) {
    const range = hi === Number.MAX_SAFE_INTEGER ? `>= ${k.lo}` : `in [${k.lo}, ${hi}]`;
    throw new UsageError(`--${name} must be an integer ${range}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** The number value of --name (the table's range), or undefined when not given. */
export function numValue(v: Values, cmd: Command, name: string): number | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  const k = rowOf(cmd, name).kind;
  if (k.type !== 'number') throw new Error(`internal: --${name} is not a number flag`);
  const n = numberText(String(raw));
  const ok = Number.isFinite(n) && (k.openLo ? n > k.lo : n >= k.lo) && (k.openHi ? n < k.hi : n <= k.hi);
  if (!ok) throw new UsageError(`--${name} must be a number ${k.range}, got ${JSON.stringify(raw)}`);
  return n;
}

/** The choice value of --name, or undefined when not given. */
export function choiceValue<T extends string>(v: Values, cmd: Command, name: string): T | undefined {
  const raw = v[name];
  if (raw === undefined) return undefined;
  const k = rowOf(cmd, name).kind;
  if (k.type !== 'choice') throw new Error(`internal: --${name} is not a choice flag`);
  if (!k.choices.includes(raw as string)) throw new UsageError(`--${name} must be one of ${k.choices.join(', ')}, got ${JSON.stringify(raw)}`);
  return raw as T;
}

/** The string value of a required flag. */
export function requireValue(v: Values, cmd: Command, name: string): string {
  const raw = v[name];
  if (typeof raw !== 'string' || raw === '') throw new UsageError(`ddpm ${cmd} needs --${name}`);
  return raw;
}

/** Checks every given flag's value against the table before any work (the command reads them again later). */
export function checkAllValues(cmd: Command, v: Values): void {
  for (const [name, raw] of Object.entries(v)) {
    if (raw === undefined) continue;
    const k = rowOf(cmd, name).kind;
    if (k.type === 'int') intValue(v, cmd, name);
    else if (k.type === 'number') numValue(v, cmd, name);
    else if (k.type === 'choice') choiceValue(v, cmd, name);
    else if (k.type === 'string' && raw === '') throw new UsageError(`--${name} needs a value, got ""`);
  }
}

// ---- help ----

const USAGE: Record<Command, string> = {
  train: `usage: ddpm train --data SET --out RUN_DIR [options]
       ddpm train --out RUN_DIR --resume [--steps N] [--checkpoint-every N] [--skip-nonfinite] [the run's own flags]`,
  sample: `usage: ddpm sample --run RUN_DIR --out FILE [options]
       ddpm sample --run RUN_DIR --out FILE.png --class K|K,K|all [--guidance W]   (a --conditional run)`,
  eval: `usage: ddpm eval --run RUN_DIR [options]

  mnist runs: bits/dim (the discretised ELBO, T model evaluations) on held-out digits, then --judge
  digits sampled (--sampler) and scored by the digit judge beside its references; a conditional run
  with --class K [--guidance W] samples --judge digits per class and prints the share judged as K;
  2-D runs: energy distance of DDPM samples to fresh data, with two references for scale.`,
  info: `usage: ddpm info --run RUN_DIR [--json]

  Prints the run's model and schedule config, training settings, steps done, last loss, backend,
  format and library version, and checks the weights file as sample does (size, sha256, tensor
  shapes, finite weights): exit 1 and what is wrong for a damaged run. --json prints the manifest
  (without the tensor list) and the check.`,
};

const FOOTER: Partial<Record<Command, string>> = {
  train: `A progress bar shows steps/s, loss and ETA (plain lines when stdout is not a terminal). Ctrl-C
saves a checkpoint, prints where, and exits with 130; --resume continues bit for bit. One process
writes a run directory at a time (its lock file ddpm.lock names the holder).`,
  sample: 'Samples are drawn in batches of --chunk; image runs clip the predicted x0 to [-1, 1] at every step.',
};

/** The --help page of a command, made from the table. */
export function helpPage(cmd: Command): string {
  const rows = FLAGS.filter((f) => f.commands.includes(cmd));
  const left = (f: FlagRow) => `${f.name === 'help' ? '-h, ' : ''}--${f.name}${f.arg ? ` ${f.arg}` : ''}`;
  const width = Math.max(...rows.map((f) => left(f).length)) + 2;
  const lines = rows.map((f) => `  ${left(f).padEnd(width)}${f.help}`);
  return [USAGE[cmd], '', ...lines, ...(FOOTER[cmd] ? ['', FOOTER[cmd]] : [])].join('\n');
}

/** The top-level --help page. */
export const MAIN_HELP = `ddpm: train, sample, evaluate and inspect denoising diffusion models (ddpm-workbook)

usage: ddpm <command> [options]      (ddpm <command> --help for its options)

commands:
  train    train a model into a run directory, or resume one (--resume)
  sample   draw samples from a run: a PNG grid of images, or CSV/JSON of 2-D points
  eval     bits/dim on held-out MNIST digits, or the energy distance of 2-D samples
  info     a run's config, steps done, last loss and backend; checks its weights file

Every command takes --backend NAME, --quiet and -h/--help. A number may follow its flag even when
negative (--x -5); integers may be written 1e3; a flag may be given once.

exit codes: 0 done, 1 failed while running, 2 bad command line, 130 interrupted (checkpoint saved)`;
