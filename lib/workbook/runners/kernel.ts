/**
 * Runner (b): a real Jupyter kernel. nbclient (Debian's python3-nbclient) drives the tslab kernel,
 * registered for this project only (a kernel spec under node_modules/.cache, found through
 * JUPYTER_PATH), one notebook at a time; lib/workbook/runners/run_nbclient.py judges every execute_reply.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkMode, defaultTimeout, notebookEnv, RunOptions } from './inprocess';
import { projectRoot } from './project';
import { diedRun, runChild } from './spawn';
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

/** True when the kernel spec at `spec` exists and starts `binary`. */
function specStarts(spec: string, binary: string): boolean {
  try {
    return JSON.parse(fs.readFileSync(spec, 'utf8')).argv[0] === binary;
  } catch {
    return false;
  }
}

/**
 * Registers the tslab kernel for this project (tslab install --prefix, with this checkout's tslab as
 * the binary) unless it is already there; returns the folder to put on JUPYTER_PATH.
 *
 * `npm test` runs its parts side by side, and more than one may register at once: tslab install
 * writes into a private prefix first, and its kernels/tslab folder is then renamed into place, so
 * nobody sees half a spec, and a process that loses the race takes the winner's.
 */
export function ensureKernelSpec(root: string = projectRoot(), python: string = pythonPath()): string {
  const data = jupyterDataDir(root);
  const binary = path.join(root, 'node_modules', '.bin', 'tslab');
  const target = path.join(data, 'kernels', 'tslab');
  const spec = path.join(target, 'kernel.json');
  if (specStarts(spec, binary)) return data;
  fs.mkdirSync(path.dirname(target), { recursive: true });
  // beside the project's prefix (the same file system, for the rename), outside Jupyter's folders
  const prefix = fs.mkdtempSync(path.resolve(data, '..', '..', '..', 'tslab-install-'));
  try {
    const tslab = path.join(root, 'node_modules', 'tslab', 'bin', 'tslab');
    const r = spawnSync(process.execPath, [tslab, 'install', `--python=${python}`, `--binary=${binary}`, `--prefix=${prefix}`], { encoding: 'utf8' });
    const made = path.join(prefix, 'share', 'jupyter', 'kernels', 'tslab');
    if (r.status !== 0 || !fs.existsSync(path.join(made, 'kernel.json'))) {
      throw new Error(`registering the tslab kernel failed (tslab install --python=${python} --prefix=${prefix}):\n${r.stdout}${r.stderr}`);
    }
    if (fs.existsSync(target) && !specStarts(spec, binary)) fs.rmSync(target, { recursive: true, force: true }); // another checkout's
    try {
      fs.renameSync(made, target);
    } catch (e) {
      // another process put its spec there first: fine when it starts this binary
      if (!specStarts(spec, binary)) throw new Error(`registering the tslab kernel failed: ${(e as Error).message}`);
    }
  } finally {
    fs.rmSync(prefix, { recursive: true, force: true });
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
  const timeoutSeconds = options.timeoutSeconds ?? defaultTimeout(options.mode);
  const script = path.join(root, 'lib', 'workbook', 'runners', 'run_nbclient.py');
  try {
    // the script's own limit is per cell; this one bounds the whole notebook (and a stuck kernel start)
    const exit = await runChild(pythonPath(), [script, path.resolve(notebook), path.resolve(options.executed), result, '--timeout', String(Math.ceil(timeoutSeconds))], {
      env: kernelEnv(options, root),
      timeoutMs: (timeoutSeconds + 150) * 1000,
      killSignal: 'SIGTERM',
      echo: options.echo,
    });
    if ((exit.code === 0 || exit.code === 1) && fs.existsSync(result)) {
      const r = JSON.parse(fs.readFileSync(result, 'utf8')) as NotebookRun & { stdout: string; startupSeconds: number | null; checks?: CheckResult[] };
      const { stdout, ...run } = r;
      // the kernel's own registry when the script could read it, else the printed ✓/✗ lines
      const checks = run.checks ?? checksFromText(stdout);
      const late = run.ok ? lateCheckFailure(readNotebook(notebook), checks) : undefined;
      return { ...run, notebook, startupSeconds: run.startupSeconds ?? NaN, checks, ...(late ? { ok: false, failure: late } : {}) };
    }
    return diedRun('nbclient', notebook, options.executed, started, exit, 'run_nbclient.py');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
