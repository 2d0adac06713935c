/** What a runner reports about one notebook, whichever way it ran it. */
import type { CheckResult } from '../check';

/** Which runner executed the notebook. */
export type RunnerName = 'in-process' | 'nbclient';

/** The workbook's two modes; the parameters cell reads DDPM_WORKBOOK_MODE. */
export type WorkbookMode = 'quick' | 'full';

/** The first cell that failed. */
export interface CellFailure {
  /** 1-based position among all cells, as a reader counts them in Jupyter. */
  cell: number;
  /** 1-based position among code cells. */
  codeCell: number;
  firstLine: string;
  /** 'error' (execute() returned false / reply status error), 'abort', 'timeout', 'crash'... */
  status: string;
  /** What the cell wrote to stderr (tslab's only report of a failure), or the runner's own message. */
  message: string;
}

export interface NotebookRun {
  runner: RunnerName;
  notebook: string;
  /** The executed notebook (with outputs) that the runner wrote. */
  executed: string;
  ok: boolean;
  failure?: CellFailure;
  /** Wall time of the whole run, the kernel/executor start, and each code cell (compile + run). */
  seconds: number;
  startupSeconds: number;
  cellSeconds: number[];
  /** In-process: of cellSeconds, the time tslab spent compiling each cell. */
  compileSeconds?: number[];
  checks: CheckResult[];
}

/** One line naming the notebook, the cell number and the cell's first line, then what it printed. */
export function describeFailure(run: NotebookRun): string {
  const f = run.failure;
  if (!f) return `${run.notebook}: ok`;
  const detail = f.message.trim() ? `\n${f.message.trim()}` : '';
  return `${run.notebook}: cell ${f.cell} (code cell ${f.codeCell}) failed [${run.runner}, ${f.status}]: ${f.firstLine}${detail}`;
}

/** "✓ ..." / "✗ ..." lines in a notebook's stdout: how checks are read back from a kernel in another process. */
export function checksFromText(text: string): CheckResult[] {
  const out: CheckResult[] = [];
  for (const line of text.split('\n')) {
    const m = /^([✓✗]) (.+)$/.exec(line);
    if (m) out.push({ description: m[2], ok: m[1] === '✓', seconds: NaN });
  }
  return out;
}
