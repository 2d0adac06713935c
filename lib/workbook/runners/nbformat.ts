/**
 * The slice of nbformat 4 the runners and the HTML renderer use: reading, writing (atomically),
 * cell sources, and the "no outputs committed" rule.
 */
import * as fs from 'fs';
import { library } from '../library';

export type MultilineString = string | string[];

export interface StreamOutput {
  output_type: 'stream';
  name: 'stdout' | 'stderr';
  text: MultilineString;
}
export interface DisplayOutput {
  output_type: 'display_data' | 'execute_result';
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  execution_count?: number | null;
}
export interface ErrorOutput {
  output_type: 'error';
  ename: string;
  evalue: string;
  traceback: string[];
}
export type Output = StreamOutput | DisplayOutput | ErrorOutput;

export interface Cell {
  id?: string;
  cell_type: 'code' | 'markdown' | 'raw';
  metadata: Record<string, unknown> & { tags?: string[] };
  source: MultilineString;
  outputs?: Output[];
  execution_count?: number | null;
  attachments?: Record<string, unknown>;
}

export interface Notebook {
  nbformat: number;
  nbformat_minor: number;
  metadata: Record<string, unknown> & {
    kernelspec?: { name?: string; display_name?: string; language?: string };
    language_info?: { name?: string };
  };
  cells: Cell[];
}

/** A multiline string as one string. */
export const joinSource = (s: MultilineString | undefined): string => (Array.isArray(s) ? s.join('') : (s ?? ''));

/** The first non-blank line of a cell's source, trimmed (what failure messages quote). */
export function firstLine(cell: Cell): string {
  const line = joinSource(cell.source)
    .split('\n')
    .find((l) => l.trim() !== '');
  return (line ?? '').trim();
}

/** Reads and minimally validates a notebook file; errors name the file. */
export function readNotebook(file: string): Notebook {
  let nb: Notebook;
  try {
    nb = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not a readable notebook (${e instanceof Error ? e.message : String(e)})`);
  }
  if (nb === null || typeof nb !== 'object' || nb.nbformat !== 4 || !Array.isArray(nb.cells)) {
    throw new Error(`${file}: expected an nbformat 4 notebook with a cells array, got nbformat ${JSON.stringify((nb as Partial<Notebook>)?.nbformat)}`);
  }
  return nb;
}

/** Writes a notebook as Jupyter does (1-space indent, trailing newline), atomically. */
export function writeNotebook(file: string, nb: Notebook): void {
  library().writeFileAtomic(file, JSON.stringify(nb, null, 1) + '\n');
}

/** Why a committed notebook is not clean (outputs or execution counts present), one line per cell; empty when clean. */
export function committedProblems(nb: Notebook): string[] {
  const problems: string[] = [];
  nb.cells.forEach((cell, i) => {
    if (cell.cell_type !== 'code') return;
    if (cell.outputs && cell.outputs.length > 0) problems.push(`cell ${i + 1} (${firstLine(cell)}) has ${cell.outputs.length} output(s)`);
    if (cell.execution_count !== null && cell.execution_count !== undefined) {
      problems.push(`cell ${i + 1} (${firstLine(cell)}) has execution_count ${cell.execution_count}, expected null`);
    }
  });
  return problems;
}

/** A label for cell index i (0-based) of nb: "cell 5 (code cell 3)". */
export function cellLabel(nb: Notebook, index: number): string {
  const code = nb.cells.slice(0, index + 1).filter((c) => c.cell_type === 'code').length;
  return `cell ${index + 1} (code cell ${code})`;
}
