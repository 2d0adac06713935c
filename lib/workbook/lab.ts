/**
 * `npm run lab`: registers the tslab kernel for this project (a kernel spec under node_modules/.cache,
 * put first on JUPYTER_PATH for the server it starts) and starts a front end, saying which:
 *  1. a JupyterLab installed for the Python (pip install jupyterlab): `python -m jupyterlab`;
 *  2. else, where Debian's/Ubuntu's jupyterlab_server is installed (python3-jupyterlab-server: the
 *     distribution has no JupyterLab package), the project's own JupyterLab 3.6 build
 *     (lib/workbook/jupyterlab), served by lib/workbook/jupyterlab/serve.py; when it is not built
 *     yet it is offered (asked on a terminal; --yes builds without asking), built once with progress;
 *  3. else the classic notebook (jupyter-notebook).
 * The server's root is the project folder: notebooks/ are one click away and plots load plotly.js
 * from <base>/files/node_modules/ (see lib/workbook/plot.ts).
 *   npm run lab                 start it
 *   npm run lab -- --print      say what would run, start (and build) nothing (what the tests check)
 *   npm run lab -- --yes        build the project's JupyterLab without asking when it is needed
 *   npm run lab -- --classic    the classic notebook even when a JupyterLab is there
 *   npm run lab -- --build      install and build the project's JupyterLab (both variants) and exit (.ci/run)
 * Other arguments are passed to Jupyter (e.g. -- --port=8899 --no-browser).
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';
import { JUPYTER_INSTALL_HINT, ensureKernelSpec, pythonPath } from './runners/kernel';
import { projectRoot } from './runners/project';
import { LAB_SERVER_INSTALL_HINT, classicMathJaxArgs, ensureLabBuild, labBuildMissing, labDir, labServerMissing } from './jupyterlab/server';

export interface LabPlan {
  frontEnd: 'JupyterLab' | 'classic notebook';
  /** Where the front end comes from. */
  source: 'installed JupyterLab' | 'project build' | 'classic notebook';
  command: string;
  args: string[];
  env: { JUPYTER_PATH: string };
  /** What it says before starting. */
  message: string;
  /** The project build's variant to build first (npm ci + webpack) before starting; absent when nothing needs building. */
  build?: 'plotly';
}

const imports = (python: string, module: string) => spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0;

/** Debian, Ubuntu and their derivatives (where python3-jupyterlab-server is a package). */
const isDebianLike = () => fs.existsSync('/etc/debian_version');

export interface PlanOptions {
  /** The classic notebook even when a JupyterLab is there. */
  classic?: boolean;
  /** The answer to "build the project's JupyterLab?" when it is not built: true builds, false falls back to the classic notebook. */
  buildConsent?: boolean;
}

/**
 * Registers the kernel and decides what to start; throws with an install hint when no front end exists.
 * When the project's JupyterLab would be used but is not built, buildConsent decides: true plans the
 * build (plan.build), false falls back to the classic notebook, undefined plans it too (the caller asks).
 */
export function planLab(extra: string[] = [], python: string = pythonPath(), root: string = projectRoot(), options: PlanOptions = {}): LabPlan {
  const data = ensureKernelSpec(root, python);
  const env = { JUPYTER_PATH: [data, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter) };
  // Jupyter refuses to run as root without --allow-root (containers, CI): say it, and pass it.
  const root0 = typeof process.getuid === 'function' && process.getuid() === 0 && !extra.includes('--allow-root');
  const common = [`--notebook-dir=${root}`, ...(root0 ? ['--allow-root'] : []), ...extra];
  const kernelNote = `the tslab kernel registered for this project (${data}). Open notebooks/.`;
  let why = '';
  if (!options.classic && imports(python, 'jupyterlab')) {
    return { frontEnd: 'JupyterLab', source: 'installed JupyterLab', command: python, args: ['-m', 'jupyterlab', ...common], env, message: `Starting JupyterLab (installed for ${python}) with ${kernelNote}` };
  }
  if (!options.classic) {
    const server = labServerMissing(python);
    if (server === null) {
      const unbuilt = labBuildMissing('plotly', root);
      if (unbuilt === null || options.buildConsent !== false) {
        const build = path.join(labDir(root), 'build', 'plotly');
        return {
          frontEnd: 'JupyterLab',
          source: 'project build',
          command: python,
          args: [path.join(labDir(root), 'serve.py'), build, ...common],
          env,
          ...(unbuilt === null ? {} : { build: 'plotly' as const }),
          message:
            `Starting JupyterLab 3.6.8, the project's own build (${build}; no JupyterLab is installed for ${python}), ` +
            `served by Debian's jupyterlab_server, with MathJax from libjs-mathjax and ${kernelNote}` +
            (unbuilt === null ? '' : ` It is built first, once: npm ci in ${labDir(root)} (about 210 MB) and webpack (under a minute on 2 cores).`),
        };
      }
      why = ` (the project's JupyterLab is not built and was not wanted; to build it: npm run lab -- --yes)`;
    } else if (isDebianLike()) {
      why = ` (for the project's own JupyterLab build: ${LAB_SERVER_INSTALL_HINT}, then npm run lab again; or pip install jupyterlab)`;
    } else {
      why = ' (for JupyterLab: pip install jupyterlab, then npm run lab again)';
    }
  }
  if (imports(python, 'notebook')) {
    return {
      frontEnd: 'classic notebook',
      source: 'classic notebook',
      command: python,
      args: ['-m', 'notebook', ...classicMathJaxArgs(root), ...common],
      env,
      message: `${options.classic ? 'As asked (--classic), starting' : `JupyterLab is not installed for ${python}; starting`} the classic notebook (jupyter notebook) with ${kernelNote}${why}`,
    };
  }
  throw new Error(`neither JupyterLab nor the classic notebook is installed for ${python}: ${JUPYTER_INSTALL_HINT.replace('python3-ipykernel', 'python3-ipykernel jupyter-notebook')}${why}`);
}

/** Asks a yes/no question on the terminal (default yes). */
function ask(question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  return new Promise((resolve) =>
    rl.question(`${question} [Y/n] `, (a) => {
      rl.close();
      resolve(!/^\s*n/i.test(a));
    }),
  );
}

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--build')) {
    await ensureLabBuild(['plotly', 'plain'], projectRoot(), (l) => console.log(l));
    return;
  }
  const flags = new Set(['--print', '--yes', '--classic']);
  const print = argv.includes('--print');
  const extra = argv.filter((a) => !flags.has(a));
  const classic = argv.includes('--classic');
  let plan = planLab(extra, pythonPath(), projectRoot(), { classic, buildConsent: argv.includes('--yes') ? true : undefined });
  if (plan.build && !print && !argv.includes('--yes')) {
    const consent = process.stdin.isTTY
      ? await ask(`No JupyterLab is installed, but the project can build its own (JupyterLab 3.6.8 from npm, served by Debian's jupyterlab_server): npm ci in ${labDir()} (about 210 MB) and webpack, once. Build it now?`)
      : false;
    if (!consent) {
      if (!process.stdin.isTTY) console.log('Not a terminal, so not building the project\'s JupyterLab without --yes.');
      plan = planLab(extra, pythonPath(), projectRoot(), { classic, buildConsent: false });
    }
  }
  console.log(plan.message);
  console.log(`  JUPYTER_PATH=${plan.env.JUPYTER_PATH} ${plan.command} ${plan.args.join(' ')}`);
  if (print) return;
  if (plan.build) await ensureLabBuild([plan.build], projectRoot(), (l) => console.log(l));
  const p = spawn(plan.command, plan.args, { stdio: 'inherit', env: { ...process.env, ...plan.env }, cwd: projectRoot() });
  p.on('close', (code) => process.exit(code ?? 1));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => p.kill(sig));
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`npm run lab: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
