/**
 * Runner (a): tslab's own executor, no Jupyter and no Python. Each notebook runs in a fresh child
 * node process (child.ts), which writes the executed notebook and a result file that this side reads.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { projectRoot } from './project';
import { diedRun, runChild } from './spawn';
import { NotebookRun, WorkbookMode } from './types';

export interface RunOptions {
  /** DDPM_WORKBOOK_MODE for the notebook (its parameters cell reads it). */
  mode: WorkbookMode;
  /** Where the executed notebook goes. */
  executed: string;
  /** Give up on the notebook after this many seconds (default: defaultTimeout(mode)). */
  timeoutSeconds?: number;
  /** Copy the notebook's stdout/stderr to ours as it runs. */
  echo?: boolean;
  /** Extra environment for the notebook. */
  env?: Record<string, string>;
}

const MODES: readonly WorkbookMode[] = ['quick', 'full'];

/**
 * Per-notebook time limit: DDPM_NOTEBOOK_TIMEOUT (seconds) if set, else 15 minutes in quick mode (a
 * hung notebook fails the tests instead of hanging them) and 6 hours in full mode (07 trains MNIST).
 */
export function defaultTimeout(mode: WorkbookMode, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.DDPM_NOTEBOOK_TIMEOUT;
  if (raw !== undefined && raw !== '') {
    const v = Number(raw);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`DDPM_NOTEBOOK_TIMEOUT must be a number of seconds > 0, got ${JSON.stringify(raw)}`);
    return v;
  }
  return mode === 'quick' ? 15 * 60 : 6 * 3600;
}

export function checkMode(mode: unknown, name = 'mode'): asserts mode is WorkbookMode {
  if (!MODES.includes(mode as WorkbookMode)) throw new Error(`${name} must be one of ${MODES.join(', ')}, got ${JSON.stringify(mode)}`);
}

/** The environment a notebook runs with: ours, the mode, and a runtime dir for Dawn (webgpu). */
export function notebookEnv(mode: WorkbookMode, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', ...extra, DDPM_WORKBOOK_MODE: mode };
}

/** Runs one notebook in a child process with tslab's executor; resolves with what happened (never rejects for a failing cell). */
export async function runInProcess(notebook: string, options: RunOptions): Promise<NotebookRun> {
  checkMode(options.mode, 'options.mode');
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-nb-'));
  const request = path.join(tmp, 'request.json');
  const result = path.join(tmp, 'result.json');
  fs.writeFileSync(request, JSON.stringify({ notebook: path.resolve(notebook), executed: path.resolve(options.executed), result, echo: options.echo ?? false }));
  // From lib/workbook (tests, under tsx) the child is child.ts, loaded through tsx; from dist, child.js.
  const ext = path.extname(__filename);
  const child = path.join(__dirname, `child${ext}`);
  const execArgv = ext === '.ts' ? ['--require', require.resolve('tsx/cjs', { paths: [projectRoot()] })] : [];
  const timeoutSeconds = options.timeoutSeconds ?? defaultTimeout(options.mode);
  try {
    const exit = await runChild(process.execPath, [...execArgv, child, request], {
      env: notebookEnv(options.mode, options.env),
      timeoutMs: timeoutSeconds * 1000,
      killSignal: 'SIGKILL',
      echo: options.echo,
    });
    if (exit.code === 0 && fs.existsSync(result)) return JSON.parse(fs.readFileSync(result, 'utf8')) as NotebookRun;
    return diedRun('in-process', notebook, options.executed, started, exit, `the runner process (limit ${timeoutSeconds} s)`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
