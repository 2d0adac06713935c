/** Where things are: the project root, its notebooks, and the build the notebooks import. */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { library } from '../library';

/** The folder holding this package's package.json (works from lib/workbook and dist/lib/workbook): lib/runtime/files.ts's packageRoot. */
export const projectRoot = (from: string = __dirname): string => library().packageRoot(from);

/** The workbook's notebooks in reading order: notebooks/*.ipynb sorted by name (01_..., 02_...). */
export function workbookNotebooks(root: string = projectRoot()): string[] {
  const dir = path.join(root, 'notebooks');
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.ipynb') && !f.startsWith('.') && !f.startsWith('_'))
    .sort()
    .map((f) => path.join(dir, f));
}

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  if (!fs.existsSync(dir)) return newest;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    // lib/workbook/jupyterlab/node_modules (the project's JupyterLab, installed after the build, with
    // .ts sources in some packages) is not the library: tsc skips node_modules, and so does this walk
    if (e.isDirectory()) newest = e.name === 'node_modules' ? newest : Math.max(newest, newestMtime(p, ext));
    else if (e.name.endsWith(ext) && !e.name.endsWith('.d.ts')) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Notebooks import the compiled library (../dist/lib): rebuild it (tsc, as `npm run build`) when a .ts
 * file under lib/ is newer than the last build, so no test runs notebooks against a stale dist/.
 * Returns whether it built.
 */
export function ensureBuilt(root: string = projectRoot()): boolean {
  const marker = path.join(root, 'dist', 'lib', 'index.js');
  const built = fs.existsSync(marker) ? newestMtime(path.join(root, 'dist', 'lib'), '.js') : 0;
  if (built > 0 && newestMtime(path.join(root, 'lib'), '.ts') <= built) return false;
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm run build failed (the notebooks import dist/lib):\n${r.stdout}${r.stderr}`);
  return true;
}
