/**
 * `npm run lab`: registers the tslab kernel for this project (a kernel spec under node_modules/.cache,
 * put first on JUPYTER_PATH for the server it starts) and starts JupyterLab if it is installed, else
 * the classic notebook, saying which. The server's root is the project folder: notebooks/ are one
 * click away and plots load plotly.js from <base>/files/node_modules/ (see lib/workbook/plot.ts).
 *   npm run lab               start it
 *   npm run lab -- --print    say what would run, start nothing (what the tests check)
 * Extra arguments are passed to Jupyter (e.g. -- --port=8899 --no-browser).
 */
import { spawn, spawnSync } from 'child_process';
import * as path from 'path';
import { JUPYTER_INSTALL_HINT, ensureKernelSpec, pythonPath } from './runners/kernel';
import { projectRoot } from './runners/project';

export interface LabPlan {
  frontEnd: 'JupyterLab' | 'classic notebook';
  command: string;
  args: string[];
  env: { JUPYTER_PATH: string };
  /** What it says before starting. */
  message: string;
}

const imports = (python: string, module: string) => spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0;

/** Registers the kernel and decides what to start; throws with an install hint when neither front end exists. */
export function planLab(extra: string[] = [], python: string = pythonPath(), root: string = projectRoot()): LabPlan {
  const data = ensureKernelSpec(root, python);
  const env = { JUPYTER_PATH: [data, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter) };
  // Jupyter refuses to run as root without --allow-root (containers, CI): say it, and pass it.
  const root0 = typeof process.getuid === 'function' && process.getuid() === 0 && !extra.includes('--allow-root');
  const common = [`--notebook-dir=${root}`, ...(root0 ? ['--allow-root'] : []), ...extra];
  if (imports(python, 'jupyterlab')) {
    return {
      frontEnd: 'JupyterLab',
      command: python,
      args: ['-m', 'jupyterlab', ...common],
      env,
      message: `Starting JupyterLab with the tslab kernel registered for this project (${data}). Open notebooks/.`,
    };
  }
  if (imports(python, 'notebook')) {
    return {
      frontEnd: 'classic notebook',
      command: python,
      args: ['-m', 'notebook', ...common],
      env,
      message:
        `JupyterLab is not installed for ${python}; starting the classic notebook (jupyter notebook) with the tslab kernel ` +
        `registered for this project (${data}). Open notebooks/. (For JupyterLab: pip install jupyterlab, then npm run lab again.)`,
    };
  }
  throw new Error(`neither JupyterLab nor the classic notebook is installed for ${python}: ${JUPYTER_INSTALL_HINT.replace('python3-ipykernel', 'python3-ipykernel jupyter-notebook')}`);
}

if (require.main === module) {
  try {
    const argv = process.argv.slice(2);
    const print = argv.includes('--print');
    const plan = planLab(argv.filter((a) => a !== '--print'));
    console.log(plan.message);
    console.log(`  JUPYTER_PATH=${plan.env.JUPYTER_PATH} ${plan.command} ${plan.args.join(' ')}`);
    if (!print) {
      const p = spawn(plan.command, plan.args, { stdio: 'inherit', env: { ...process.env, ...plan.env }, cwd: projectRoot() });
      p.on('close', (code) => process.exit(code ?? 1));
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => p.kill(sig));
    }
  } catch (e) {
    console.error(`npm run lab: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
