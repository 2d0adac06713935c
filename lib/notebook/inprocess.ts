/**
 * Runner (a): tslab's own executor, no Jupyter and no Python. Each notebook runs in a fresh child
 * node process (child.ts), which writes the executed notebook and a result file that this side reads.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { projectRoot } from './project';
import { NotebookRun, WorkbookMode } from './types';

export interface RunOptions {
  /** DDPM_WORKBOOK_MODE for the notebook (its parameters cell reads it). */
  mode: WorkbookMode;
  /** Where the executed notebook goes. */
  executed: string;
  /** Kill the run after this many seconds (default 1800). */
  timeoutSeconds?: number;
  /** Copy the notebook's stdout/stderr to ours as it runs. */
  echo?: boolean;
  /** Extra environment for the notebook. */
  env?: Record<string, string>;
}

const MODES: readonly WorkbookMode[] = ['quick', 'full'];

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
  // From lib/notebook (tests, under tsx) the child is child.ts, loaded through tsx; from dist, child.js.
  const ext = path.extname(__filename);
  const child = path.join(__dirname, `child${ext}`);
  const execArgv = ext === '.ts' ? ['--require', require.resolve('tsx/cjs', { paths: [projectRoot()] })] : [];
  const timeoutSeconds = options.timeoutSeconds ?? 1800;
  let stderr = '';
  try {
    const { code, signal, timedOut } = await new Promise<{ code: number | null; signal: string | null; timedOut: boolean }>((resolve, reject) => {
      const p = spawn(process.execPath, [...execArgv, child, request], {
        env: notebookEnv(options.mode, options.env),
        stdio: ['ignore', options.echo ? 'inherit' : 'pipe', 'pipe'],
      });
      p.stdout?.on('data', () => undefined);
      p.stderr?.on('data', (d) => {
        stderr += String(d);
        if (options.echo) process.stderr.write(d);
      });
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        p.kill('SIGKILL');
      }, timeoutSeconds * 1000);
      p.on('error', reject);
      p.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, timedOut });
      });
    });
    if (code === 0 && fs.existsSync(result)) return JSON.parse(fs.readFileSync(result, 'utf8')) as NotebookRun;
    // The child died (timeout, crash, out of memory) before writing its result.
    const why = timedOut ? `timed out after ${timeoutSeconds} s` : `the runner process exited with ${signal ?? `code ${code}`}`;
    return {
      runner: 'in-process',
      notebook,
      executed: options.executed,
      ok: false,
      failure: { cell: 0, codeCell: 0, firstLine: '(unknown: the process died)', status: timedOut ? 'timeout' : 'crash', message: `${why}\n${stderr.slice(-4000)}` },
      seconds: (Date.now() - started) / 1000,
      startupSeconds: NaN,
      cellSeconds: [],
      checks: [],
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
