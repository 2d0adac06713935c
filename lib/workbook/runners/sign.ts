/**
 * Signs executed notebooks the way `jupyter trust` does (nbformat's NotebookNotary: an HMAC with the
 * user's Jupyter secret, recorded in the user's signature database). jupyter_server recomputes a
 * notebook's trust from that signature when it opens it, and an untrusted notebook's HTML outputs
 * lose their scripts: unsigned, the plots' text/html would not draw in the classic notebook, or in
 * JupyterLab without plotly's renderer.
 */
import { spawnSync } from 'child_process';
import { pythonPath } from './kernel';

/** Signs the notebooks (one Python process for all); returns null when signed, else why not (nbformat missing, or its error). */
export function signNotebooks(files: string[], python: string = pythonPath(), env: NodeJS.ProcessEnv = process.env): string | null {
  if (files.length === 0) return null;
  const r = spawnSync(python, ['-m', 'nbformat.sign', ...files], { encoding: 'utf8', env, timeout: 120_000 });
  if (r.error) return `${python} cannot be run (${r.error.message})`;
  if (r.status !== 0) return `${python} -m nbformat.sign failed: ${(r.stderr || r.stdout || '').trim().split('\n').pop()}`;
  return null;
}
