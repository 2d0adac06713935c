/**
 * `npm run notebooks -- [files...] [--full] [--runner=in-process|nbclient] [--echo] [--out=DIR]`:
 * executes some (default: all) notebooks, in quick mode unless --full, and writes them with their
 * HTML pages into DIR (default out/quick, or out/ with --full), naming any failing cell. The
 * notebook authors' loop while writing a chapter; `npm start` is the same for the whole workbook in full mode.
 */
import * as path from 'path';
import { RunnerName } from './runners/types';
import { buildWorkbook } from './site/build';

export interface CliOptions {
  notebooks: string[] | undefined;
  mode: 'quick' | 'full';
  runner: RunnerName;
  echo: boolean;
  outDir: string;
}

export function parseArgs(argv: string[]): CliOptions {
  const files: string[] = [];
  let mode: 'quick' | 'full' = 'quick';
  let runner: RunnerName = 'in-process';
  let echo = false;
  let outDir: string | null = null;
  for (const a of argv) {
    if (a === '--full') mode = 'full';
    else if (a === '--quick') mode = 'quick';
    else if (a === '--echo') echo = true;
    else if (a.startsWith('--runner=')) {
      const r = a.slice('--runner='.length);
      if (r !== 'in-process' && r !== 'nbclient') throw new Error(`--runner must be in-process or nbclient, got ${JSON.stringify(r)}`);
      runner = r;
    } else if (a.startsWith('--out=')) outDir = a.slice('--out='.length);
    else if (a.startsWith('--')) throw new Error(`unknown option ${a} (valid: --full, --quick, --runner=in-process|nbclient, --echo, --out=DIR)`);
    else if (!a.endsWith('.ipynb')) throw new Error(`expected a .ipynb file, got ${JSON.stringify(a)}`);
    else files.push(path.resolve(a));
  }
  return { notebooks: files.length ? files : undefined, mode, runner, echo, outDir: path.resolve(outDir ?? (mode === 'full' ? 'out' : path.join('out', 'quick'))) };
}

if (require.main === module) {
  (async () => {
    const o = parseArgs(process.argv.slice(2));
    const result = await buildWorkbook({ ...o, log: process.stdout });
    if (!result.ok) process.exitCode = 1;
  })().catch((e) => {
    console.error(`npm run notebooks: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
