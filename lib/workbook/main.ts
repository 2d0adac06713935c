/**
 * The main job (`npm start`): executes the whole workbook (notebooks/*.ipynb) headlessly in full
 * mode and writes the executed notebooks, their static HTML pages and an index into out/, printing
 * progress per notebook and every check at the end. (The swiss-roll demo that used to live here is
 * notebook 05's training chapter now.)
 *
 * Environment: DDPM_WORKBOOK_MODE = full (default) | quick; DDPM_WORKBOOK_RUNNER = in-process
 * (default, tslab's executor, no Python) | nbclient (a real Jupyter kernel); DDPM_OUT = the output
 * folder (default out); DDPM_WORKBOOK_ECHO=1 shows each notebook's own output as it runs.
 */
import * as path from 'path';
import { projectRoot, workbookNotebooks } from './runners/project';
import { RunnerName, WorkbookMode } from './runners/types';
import { buildWorkbook } from './site/build';

/** Reads one of a fixed set of values from an environment variable; a bad value is an error naming the variable. */
export function envChoice<T extends string>(name: string, choices: readonly T[], fallback: T, env: NodeJS.ProcessEnv = process.env): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!choices.includes(raw as T)) throw new Error(`${name} must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
  return raw as T;
}

export interface MainSettings {
  mode: WorkbookMode;
  runner: RunnerName;
  outDir: string;
  echo: boolean;
}

/** npm start's settings from the environment (see the file comment). */
export function mainSettings(env: NodeJS.ProcessEnv = process.env): MainSettings {
  return {
    mode: envChoice<WorkbookMode>('DDPM_WORKBOOK_MODE', ['quick', 'full'], 'full', env),
    runner: envChoice<RunnerName>('DDPM_WORKBOOK_RUNNER', ['in-process', 'nbclient'], 'in-process', env),
    outDir: path.resolve(env.DDPM_OUT || 'out'),
    echo: envChoice('DDPM_WORKBOOK_ECHO', ['0', '1'], '0', env) === '1',
  };
}

if (require.main === module) {
  (async () => {
    const s = mainSettings();
    if (workbookNotebooks().length === 0) throw new Error(`no notebooks found in ${path.join(projectRoot(), 'notebooks')}`);
    const result = await buildWorkbook({ ...s, log: process.stdout });
    if (!result.ok) process.exitCode = 1;
  })().catch((e) => {
    console.error(`npm start failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
