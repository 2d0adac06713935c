/**
 * The in-process runner's child: executes ONE notebook with tslab's own executor in this process,
 * as tslab's kernel would, and writes the executed notebook and a result file.
 *   node child.js <request.json>
 * request: { notebook, executed, result, echo }. One notebook per process: tslab's executor keeps
 * global state (globalThis.__tslab__, declarations of earlier cells) and its converter reads the
 * folder it is created in, so the parent (inprocess.ts) spawns one child per notebook.
 */
import * as fs from 'fs';
import * as path from 'path';
import { checkResults, clearCheckResults } from '../check';
import { library } from '../library';
import { Cell, DisplayOutput, Output, firstLine, joinSource, readNotebook, writeNotebook } from './nbformat';
import { CellFailure, NotebookRun, lateCheckFailure } from './types';

interface Request {
  notebook: string;
  executed: string;
  result: string;
  /** Also copy the cells' stdout/stderr to this process's (progress while developing). */
  echo?: boolean;
}

type Write = typeof process.stdout.write;
interface DisplayMessage {
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  transient?: { display_id?: string };
}

async function main(): Promise<void> {
  const started = Date.now();
  const request = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')) as Request;
  // resolve every path now: the process changes folder below
  const notebookFile = path.resolve(request.notebook);
  const executedFile = path.resolve(request.executed);
  const resultFile = path.resolve(request.result);
  const nb = readNotebook(notebookFile);
  const realOut = process.stdout.write.bind(process.stdout) as Write;
  const realErr = process.stderr.write.bind(process.stderr) as Write;

  // Outputs of the cell now running; display ids -> every output they drew (update_display_data).
  let outputs: Output[] = [];
  let stderrText = '';
  const displays = new Map<string, DisplayOutput[]>();
  const stream = (name: 'stdout' | 'stderr', real: Write): Write =>
    ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      if (name === 'stderr') stderrText += text;
      const last = outputs[outputs.length - 1];
      if (last && last.output_type === 'stream' && last.name === name) last.text = joinSource(last.text) + text;
      else outputs.push({ output_type: 'stream', name, text });
      if (request.echo) real(chunk);
      const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      cb?.();
      return true;
    }) as Write;

  // tslab's display hook: the same global its kernel sets before each cell (plot() looks it up).
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const jupyter = require('tslab/dist/jupyter') as { lastWriteDisplayData: unknown };
  jupyter.lastWriteDisplayData = (message: DisplayMessage, update: boolean) => {
    const id = message.transient?.display_id;
    if (update) {
      for (const o of (id && displays.get(id)) || []) {
        o.data = message.data;
        o.metadata = message.metadata ?? {};
      }
      return;
    }
    const out: DisplayOutput = { output_type: 'display_data', data: message.data, metadata: message.metadata ?? {} };
    outputs.push(out);
    if (id) displays.set(id, [...(displays.get(id) ?? []), out]);
  };

  // The converter resolves imports from the current folder: chdir first, as the kernel starts there.
  process.chdir(path.dirname(notebookFile));
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { createConverter } = require('tslab/dist/converter') as typeof import('tslab/dist/converter');
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { createExecutor } = require('tslab/dist/executor') as typeof import('tslab/dist/executor');
  const node = createConverter({ isJS: false, isBrowser: false });
  let compileMs = 0;
  const timedNode = new Proxy(node, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop !== 'convert' || typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const t0 = Date.now();
        try {
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        } finally {
          compileMs += Date.now() - t0;
        }
      };
    },
  });
  let browser: ReturnType<typeof createConverter> | null = null;
  const convs = {
    node: timedNode,
    get browser() {
      browser ??= createConverter({ isJS: false, isBrowser: true });
      return browser;
    },
    close: () => {
      node.close();
      browser?.close();
    },
  };
  const executor = createExecutor(process.cwd(), convs, { log: console.log, error: console.error });
  const startupSeconds = (Date.now() - started) / 1000;

  // A rejection nobody awaited (an un-awaited async check) fails the cell that is running.
  let asyncError: string | null = null;
  process.on('unhandledRejection', (reason) => {
    const text = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason);
    asyncError = `UnhandledPromiseRejection: ${text}`;
    process.stderr.write(`${asyncError}\n`);
  });
  process.on('uncaughtException', (err) => {
    asyncError = `UncaughtException: ${err.stack ?? err.message}`;
    process.stderr.write(`${asyncError}\n`);
  });

  clearCheckResults();
  const cellSeconds: number[] = [];
  const compileSeconds: number[] = [];
  let failure: CellFailure | undefined;
  let codeCell = 0;
  for (let i = 0; i < nb.cells.length; i++) {
    const cell: Cell = nb.cells[i];
    if (cell.cell_type !== 'code') continue;
    codeCell++;
    outputs = [];
    stderrText = '';
    cell.outputs = outputs;
    cell.execution_count = codeCell;
    const t0 = Date.now();
    compileMs = 0;
    process.stdout.write = stream('stdout', realOut);
    process.stderr.write = stream('stderr', realErr);
    let ok: boolean;
    try {
      ok = await executor.execute(joinSource(cell.source));
      // let rejections of this cell's stray promises surface before judging it
      await new Promise((r) => setImmediate(r));
    } finally {
      process.stdout.write = realOut;
      process.stderr.write = realErr;
    }
    cellSeconds.push((Date.now() - t0) / 1000);
    compileSeconds.push(compileMs / 1000);
    if (!ok) {
      failure = { cell: i + 1, codeCell, firstLine: firstLine(cell), status: 'error', message: stderrText || '(tslab reported the failure without a message)' };
      break;
    }
    if (asyncError) {
      // a stray rejection surfaced while this cell ran: blame the cell of the failed check it came from, if any
      failure = lateCheckFailure(nb, checkResults()) ?? { cell: i + 1, codeCell, firstLine: firstLine(cell), status: 'async-error', message: asyncError };
      break;
    }
  }
  if (!failure) {
    // async checks nobody awaited may settle after the last cell
    await new Promise((r) => setTimeout(r, 100));
    failure = lateCheckFailure(nb, checkResults());
    if (!failure && asyncError) {
      const last = nb.cells.map((c, i) => ({ c, i })).filter(({ c }) => c.cell_type === 'code').pop();
      if (last) failure = { cell: last.i + 1, codeCell, firstLine: firstLine(last.c), status: 'async-error', message: asyncError };
    }
  }
  executor.close();
  writeNotebook(executedFile, nb);
  const run: NotebookRun = {
    runner: 'in-process',
    notebook: request.notebook,
    executed: request.executed,
    ok: failure === undefined,
    failure,
    seconds: (Date.now() - started) / 1000,
    startupSeconds,
    cellSeconds,
    compileSeconds,
    checks: checkResults(),
  };
  library().writeFileAtomic(resultFile, JSON.stringify(run, null, 1) + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`in-process runner: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(2);
  },
);
