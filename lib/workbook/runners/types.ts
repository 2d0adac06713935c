/** What a runner reports about one notebook, whichever way it ran it. */
import type { CheckResult } from '../check';
import { Notebook, firstLine, joinSource } from './nbformat';

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

/** The line of a failure's stderr that says what went wrong: the first "...Error: ..." line or TypeScript diagnostic, else the first line. */
export function errorLine(message: string): string {
  const lines = message.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => /^([A-Z]\w*)?(Error|Exception|Rejection)\b.*:/.test(l) || /^\d+:\d+ - /.test(l)) ?? lines[0] ?? '';
}

/**
 * One line naming the notebook, the cell number and the cell's first line, then what went wrong:
 * the whole stderr, or (short) its error line only.
 */
export function describeFailure(run: NotebookRun, short = false): string {
  const f = run.failure;
  if (!f) return `${run.notebook}: ok`;
  const text = short ? errorLine(f.message) : f.message.trim();
  const detail = text ? `\n${text}` : '';
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

/**
 * A failed check that no cell reported: an async check nobody awaited settles after its cell has
 * finished (in a real kernel its output goes to a request nbclient no longer listens to). The
 * registry still has it: blame the code cell whose source holds the check's description (else the
 * last code cell).
 */
export function lateCheckFailure(nb: Notebook, checks: CheckResult[]): CellFailure | undefined {
  const bad = checks.find((c) => !c.ok);
  if (!bad) return undefined;
  const code = nb.cells.map((c, i) => ({ c, i })).filter(({ c }) => c.cell_type === 'code');
  const hit = code.find(({ c }) => joinSource(c.source).includes(bad.description)) ?? code[code.length - 1];
  if (!hit) return undefined;
  return {
    cell: hit.i + 1,
    codeCell: code.indexOf(hit) + 1,
    firstLine: firstLine(hit.c),
    status: 'async-error',
    message: `check "${bad.description}" failed after its cell had finished (an async check nobody awaited? write \`await check(...)\`): ${bad.error ?? ''}`,
  };
}
