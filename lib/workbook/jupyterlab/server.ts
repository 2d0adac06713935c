/**
 * The project's own JupyterLab (this folder: JupyterLab 3.6.8's npm packages, built by build.js) and
 * the classic notebook, started as local Jupyter servers with the project's tslab kernel: what
 * `npm run lab` offers and what the browser tests drive.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as path from 'path';
import { ensureKernelSpec, pythonPath } from '../runners/kernel';
import { projectRoot } from '../runners/project';

/** The build's variants: with plotly's mime renderer, or without it (plots fall back to their text/html). */
export type LabVariant = 'plotly' | 'plain';

/** Debian's MathJax 2, which both front ends load instead of a CDN. */
export const MATHJAX_DIR = '/usr/share/javascript/mathjax';

/** This folder, in a checkout (lib/workbook/jupyterlab, also when running from dist/). */
export function labDir(root: string = projectRoot()): string {
  return path.join(root, 'lib', 'workbook', 'jupyterlab');
}

/**
 * The classic notebook's MathJax settings, as its command-line options: CommonHTML output and the
 * project's local/workbook config (static/components/MathJax/config/local/workbook.js, which drops
 * MathJax's pauses between phases), found through an extra static path searched before the notebook's
 * own static files. JupyterLab gets the same from serve.py.
 */
export function classicMathJaxArgs(root: string = projectRoot()): string[] {
  return [`--NotebookApp.extra_static_paths=${JSON.stringify([path.join(labDir(root), 'static')])}`, '--NotebookApp.mathjax_config=TeX-AMS_CHTML-full,Safe,local/workbook'];
}

/** How to get the Python side of the project's JupyterLab on Debian/Ubuntu (printed when it is missing). */
export const LAB_SERVER_INSTALL_HINT = 'sudo apt-get install python3-jupyterlab-server python3-jupyter-server libjs-mathjax';

/** How to install and build the project's JupyterLab (printed when the build is missing). */
export const LAB_BUILD_HINT = 'cd lib/workbook/jupyterlab && npm ci --ignore-scripts && node build.js (or: npm run lab, which offers it)';

/** How to get the classic notebook on Debian/Ubuntu. */
export const CLASSIC_INSTALL_HINT = 'sudo apt-get install jupyter-notebook libjs-mathjax';

const imports = (python: string, modules: string) => spawnSync(python, ['-c', `import ${modules}`], { stdio: 'ignore' }).status === 0;

/** null when Debian's jupyterlab_server, jupyter_server and MathJax are there to serve the build; else what is missing. */
export function labServerMissing(python: string = pythonPath()): string | null {
  if (!imports(python, 'jupyterlab_server, jupyter_server')) return `${python} cannot import jupyterlab_server and jupyter_server (${LAB_SERVER_INSTALL_HINT})`;
  if (!fs.existsSync(path.join(MATHJAX_DIR, 'MathJax.js'))) return `${MATHJAX_DIR}/MathJax.js is absent (sudo apt-get install libjs-mathjax)`;
  return null;
}

/** null when the classic notebook (jupyter-notebook) imports; else what is missing. */
export function classicMissing(python: string = pythonPath()): string | null {
  return imports(python, 'notebook.notebookapp') ? null : `${python} cannot import the classic notebook (${CLASSIC_INSTALL_HINT})`;
}

interface BuildModule {
  build(variants: LabVariant[], options?: { force?: boolean; quiet?: boolean }): Promise<Record<string, string>>;
  isCurrent(variant: LabVariant): boolean;
  outDir(variant: LabVariant): string;
}

const buildModule = (root: string): BuildModule => require(path.join(labDir(root), 'build.js')) as BuildModule;

/** Whether the folder's npm packages are installed as its lock file says (stamped by ensureLabPackages). */
function packagesCurrent(dir: string): boolean {
  try {
    return fs.readFileSync(path.join(dir, 'node_modules', '.ddpm-lock-sha256'), 'utf8').trim() === sha256(path.join(dir, 'package-lock.json'));
  } catch {
    return false;
  }
}

const sha256 = (file: string) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** null when build/<variant> is built from the current lock file and sources; else why not (with the command that builds it). */
export function labBuildMissing(variant: LabVariant, root: string = projectRoot()): string | null {
  const dir = labDir(root);
  if (!fs.existsSync(path.join(dir, 'node_modules', '@jupyterlab', 'builder'))) return `JupyterLab's npm packages are not installed in ${dir} (${LAB_BUILD_HINT})`;
  if (!buildModule(root).isCurrent(variant)) return `the JupyterLab build ${variant} is missing or older than its sources (${LAB_BUILD_HINT})`;
  return null;
}

/**
 * Installs the folder's packages when the lock file changed since the last install (npm ci: ~210 MB,
 * a minute or two), then builds the variants that are not current (webpack, ~20 s each on 2 cores).
 * log receives what it is doing.
 */
export async function ensureLabBuild(variants: LabVariant[] = ['plotly', 'plain'], root: string = projectRoot(), log: (line: string) => void = (l) => console.error(l)): Promise<void> {
  const dir = labDir(root);
  if (!packagesCurrent(dir)) {
    log(`Installing JupyterLab 3.6.8's npm packages into ${path.join(dir, 'node_modules')} (npm ci, about 210 MB)...`);
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const r = spawnSync(npm, ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status !== 0) throw new Error(`npm ci in ${dir} failed (exit ${r.status ?? r.signal})`);
    fs.writeFileSync(path.join(dir, 'node_modules', '.ddpm-lock-sha256'), sha256(path.join(dir, 'package-lock.json')) + '\n');
  }
  const done = await buildModule(root).build(variants, { quiet: false });
  for (const [v, what] of Object.entries(done)) log(`JupyterLab ${v}: ${what}`);
}

/**
 * Makes dir a root for a Jupyter server that runs or opens copies of the workbook: notebooks/ holds
 * copies of the project's notebooks/*.ipynb (a run, or an autosave, never writes into the project's),
 * links to the rest of notebooks/ (figures), and links to the project's dist/ and node_modules/, so a
 * notebook's `../dist/lib` and the plots' <base_url>files/node_modules/plotly.js-dist-min resolve as
 * in a checkout. Returns dir.
 */
export function workbookServerRoot(dir: string, root: string = projectRoot()): string {
  fs.mkdirSync(path.join(dir, 'notebooks'), { recursive: true });
  for (const f of fs.readdirSync(path.join(root, 'notebooks'))) {
    const from = path.join(root, 'notebooks', f);
    if (f.endsWith('.ipynb')) fs.copyFileSync(from, path.join(dir, 'notebooks', f));
    else fs.symlinkSync(from, path.join(dir, 'notebooks', f));
  }
  for (const name of ['dist', 'node_modules']) fs.symlinkSync(path.join(root, name), path.join(dir, name));
  return dir;
}

/** A running Jupyter server. */
export interface JupyterServer {
  frontEnd: 'JupyterLab' | 'classic notebook';
  /** http://127.0.0.1:<port>/ */
  baseUrl: string;
  token: string;
  /** The URL that opens a notebook (path relative to the server's root) in this front end, token included. */
  notebookUrl(relPath: string): string;
  /** What the server printed so far. */
  output(): string;
  /** Stops the server and its kernels; resolves when the process has exited. */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const get = (url: string) =>
  new Promise<number>((resolve) => {
    const req = http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.setTimeout(5000, () => req.destroy());
  });

export interface StartOptions {
  /** The server's root (notebooks are opened relative to it). Default: the project root. */
  rootDir?: string;
  /** Added to the server's environment, and so the kernels' (e.g. DDPM_WORKBOOK_MODE). */
  env?: Record<string, string>;
  /** JupyterLab's user settings and workspaces (default ~/.jupyter/lab). */
  userDir?: string;
  /** Extra server arguments. */
  args?: string[];
  /** Resolve only when the server answers (default 90 s). */
  startTimeoutMs?: number;
  /** Echo the server's output. */
  echo?: boolean;
  /** JupyterLab only: false opens notebooks without starting a kernel (for reading executed notebooks). Default true. */
  startsKernel?: boolean;
}

/**
 * Starts the project's JupyterLab (build/<variant>, through serve.py) or the classic notebook on a
 * free port of 127.0.0.1 with a random token and the project's tslab kernel first on JUPYTER_PATH;
 * resolves when /api/status answers.
 */
export async function startJupyter(frontEnd: 'JupyterLab' | 'classic notebook', variant: LabVariant = 'plotly', options: StartOptions = {}): Promise<JupyterServer> {
  const root = projectRoot();
  const python = pythonPath();
  const rootDir = path.resolve(options.rootDir ?? root);
  if (!fs.statSync(rootDir, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`startJupyter: rootDir must be a folder, got ${rootDir}`);
  if (frontEnd === 'JupyterLab') {
    const missing = labServerMissing(python) ?? labBuildMissing(variant, root);
    if (missing) throw new Error(`startJupyter: ${missing}`);
  } else {
    const missing = classicMissing(python);
    if (missing) throw new Error(`startJupyter: ${missing}`);
  }
  const data = ensureKernelSpec(root, python);
  const port = await freePort();
  const token = crypto.randomBytes(16).toString('hex');
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0 ? ['--allow-root'] : [];
  const common = [`--port=${port}`, '--ip=127.0.0.1', '--no-browser', ...asRoot, ...(options.args ?? [])];
  const args =
    frontEnd === 'JupyterLab'
      ? [path.join(labDir(root), 'serve.py'), buildModule(root).outDir(variant), `--ServerApp.root_dir=${rootDir}`, `--ServerApp.token=${token}`, '--ServerApp.port_retries=0', ...(options.startsKernel === false ? ['--WorkbookLab.notebook_starts_kernel=False'] : []), ...common]
      : ['-m', 'notebook', ...classicMathJaxArgs(root), `--NotebookApp.notebook_dir=${rootDir}`, `--NotebookApp.token=${token}`, '--NotebookApp.port_retries=0', ...common];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp',
    ...(options.env ?? {}),
    JUPYTER_PATH: [data, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter),
    ...(options.userDir ? { DDPM_LAB_USER_DIR: options.userDir } : {}),
  };
  const child: ChildProcess = spawn(python, args, { env, cwd: rootDir, stdio: ['ignore', 'pipe', 'pipe'] });
  // a test process that dies (or is interrupted) must not leave a server and its kernels behind
  const onExit = () => child.kill('SIGTERM');
  process.once('exit', onExit);
  child.once('close', () => process.removeListener('exit', onExit));
  let out = '';
  const take = (b: Buffer) => {
    out += b.toString();
    if (options.echo) process.stderr.write(b);
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  let exited: number | string | null = null;
  const exit = new Promise<void>((resolve) =>
    child.on('close', (code, sig) => {
      exited = code ?? sig ?? 'unknown';
      resolve();
    }),
  );
  const baseUrl = `http://127.0.0.1:${port}/`;
  const stop = async () => {
    if (exited === null) {
      child.kill('SIGTERM');
      // jupyter asks for confirmation on the first SIGINT only; SIGTERM shuts kernels down, SIGKILL if it hangs
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(timer);
    }
  };
  const deadline = Date.now() + (options.startTimeoutMs ?? 90_000);
  for (;;) {
    if (exited !== null) throw new Error(`${frontEnd} exited (${exited}) before answering:\n${out.slice(-3000)}`);
    if ((await get(`${baseUrl}api/status?token=${token}`)) === 200) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${frontEnd} did not answer on ${baseUrl} within ${(options.startTimeoutMs ?? 90_000) / 1000} s:\n${out.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const encoded = (rel: string) => rel.split('/').map(encodeURIComponent).join('/');
  return {
    frontEnd,
    baseUrl,
    token,
    notebookUrl: (rel) => `${baseUrl}${frontEnd === 'JupyterLab' ? 'lab/tree' : 'notebooks'}/${encoded(rel)}?token=${token}`,
    output: () => out,
    stop,
  };
}
