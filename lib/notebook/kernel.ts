/**
 * Runner (b): a real Jupyter kernel. nbclient (Debian's python3-nbclient) drives the tslab kernel,
 * registered for this project only (a kernel spec under node_modules/.cache, found through
 * JUPYTER_PATH), one notebook at a time; scripts/run_nbclient.py judges every execute_reply.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkMode, notebookEnv, RunOptions } from './inprocess';
import { projectRoot } from './project';
import { CheckResult } from '../check';
import { readNotebook } from './nbformat';
import { NotebookRun, checksFromText, lateCheckFailure } from './types';

/** The Python that has Jupyter: DDPM_PYTHON, else Debian's /usr/bin/python3, else python3 on PATH. */
export function pythonPath(): string {
  if (process.env.DDPM_PYTHON) return process.env.DDPM_PYTHON;
  return fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
}

/** How to get what the kernel runner needs (printed when it skips). */
export const JUPYTER_INSTALL_HINT =
  'install Jupyter for Debian\'s Python: sudo apt-get install jupyter-nbconvert python3-nbclient python3-ipykernel ' +
  '(or pip install nbclient nbconvert, and set DDPM_PYTHON to that python)';

/** null when nbclient, nbformat and jupyter_client import in pythonPath(); else why not. */
export function jupyterMissing(python: string = pythonPath()): string | null {
  const r = spawnSync(python, ['-c', 'import nbclient, nbformat, jupyter_client, zmq'], { encoding: 'utf8' });
  if (r.error) return `${python} cannot be run (${r.error.message})`;
  if (r.status !== 0) return `${python} lacks nbclient/nbformat/jupyter_client: ${(r.stderr || '').trim().split('\n').pop()}`;
  return null;
}

/** The project's Jupyter data folder (kernels/tslab inside), for JUPYTER_PATH. */
export function jupyterDataDir(root: string = projectRoot()): string {
  return path.join(root, 'node_modules', '.cache', 'ddpm-workbook', 'jupyter', 'share', 'jupyter');
}

/**
 * Registers the tslab kernel for this project (tslab install --prefix, with this checkout's tslab as
 * the binary) unless it is already there; returns the folder to put on JUPYTER_PATH.
 */
export function ensureKernelSpec(root: string = projectRoot(), python: string = pythonPath()): string {
  const data = jupyterDataDir(root);
  const prefix = path.resolve(data, '..', '..');
  const binary = path.join(root, 'node_modules', '.bin', 'tslab');
  const spec = path.join(data, 'kernels', 'tslab', 'kernel.json');
  try {
    if (JSON.parse(fs.readFileSync(spec, 'utf8')).argv[0] === binary) return data;
  } catch {
    // not registered yet
  }
  const tslab = path.join(root, 'node_modules', 'tslab', 'bin', 'tslab');
  const r = spawnSync(process.execPath, [tslab, 'install', `--python=${python}`, `--binary=${binary}`, `--prefix=${prefix}`], { encoding: 'utf8' });
  if (r.status !== 0 || !fs.existsSync(spec)) {
    throw new Error(`registering the tslab kernel failed (tslab install --python=${python} --prefix=${prefix}):\n${r.stdout}${r.stderr}`);
  }
  return data;
}

/** The environment of the kernel runner: the notebook's, plus the project's kernel spec first on JUPYTER_PATH. */
export function kernelEnv(options: Pick<RunOptions, 'mode' | 'env'>, root: string = projectRoot()): NodeJS.ProcessEnv {
  const data = ensureKernelSpec(root);
  const env = notebookEnv(options.mode, options.env);
  env.JUPYTER_PATH = [data, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter);
  return env;
}

/** Runs one notebook through nbclient and the tslab kernel; resolves with what happened (never rejects for a failing cell). */
export async function runWithKernel(notebook: string, options: RunOptions): Promise<NotebookRun> {
  checkMode(options.mode, 'options.mode');
  const root = projectRoot();
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-nbclient-'));
  const result = path.join(tmp, 'result.json');
  const timeoutSeconds = options.timeoutSeconds ?? 1800;
  const script = path.join(root, 'scripts', 'run_nbclient.py');
  let stderr = '';
  try {
    const env = kernelEnv(options, root);
    const { code, timedOut } = await new Promise<{ code: number | null; timedOut: boolean }>((resolve, reject) => {
      const p = spawn(pythonPath(), [script, path.resolve(notebook), path.resolve(options.executed), result, '--timeout', String(timeoutSeconds)], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      p.stdout.on('data', (d) => {
        if (options.echo) process.stdout.write(d);
      });
      p.stderr.on('data', (d) => {
        stderr += String(d);
        if (options.echo) process.stderr.write(d);
      });
      let timedOut = false;
      // the script's own timeout is per cell; this one bounds the whole notebook (and a stuck kernel start)
      const timer = setTimeout(() => {
        timedOut = true;
        p.kill('SIGTERM');
      }, (timeoutSeconds + 150) * 1000);
      p.on('error', reject);
      p.on('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c, timedOut });
      });
    });
    if ((code === 0 || code === 1) && fs.existsSync(result)) {
      const r = JSON.parse(fs.readFileSync(result, 'utf8')) as NotebookRun & { stdout: string; startupSeconds: number | null; checks?: CheckResult[] };
      const { stdout, ...run } = r;
      // the kernel's own registry when the script could read it, else the printed ✓/✗ lines
      const checks = run.checks ?? checksFromText(stdout);
      const late = run.ok ? lateCheckFailure(readNotebook(notebook), checks) : undefined;
      return { ...run, notebook, startupSeconds: run.startupSeconds ?? NaN, checks, ...(late ? { ok: false, failure: late } : {}) };
    }
    return {
      runner: 'nbclient',
      notebook,
      executed: options.executed,
      ok: false,
      failure: {
        cell: 0,
        codeCell: 0,
        firstLine: '(unknown: the runner died)',
        status: timedOut ? 'timeout' : 'runner',
        message: `${timedOut ? 'timed out' : `run_nbclient.py exited with ${code}`}\n${stderr.slice(-4000)}`,
      },
      seconds: (Date.now() - started) / 1000,
      startupSeconds: NaN,
      cellSeconds: [],
      checks: [],
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
