/** What both runners do around their child process: spawn it, bound its time, keep its stderr, and say why it died. */
import { spawn } from 'child_process';
import { NotebookRun, RunnerName } from './types';

export interface Exit {
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  /** The child's stderr (also echoed when asked). */
  stderr: string;
}

/** Runs command to its end, killing it (killSignal) after timeoutMs; stdout is echoed or dropped. */
export function runChild(
  command: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; timeoutMs: number; killSignal: NodeJS.Signals; echo?: boolean },
): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const p = spawn(command, args, { env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stdout.on('data', (d) => {
      if (options.echo) process.stdout.write(d);
    });
    p.stderr.on('data', (d) => {
      stderr += String(d);
      if (options.echo) process.stderr.write(d);
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      p.kill(options.killSignal);
    }, options.timeoutMs);
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, stderr });
    });
  });
}

/** The run of a notebook whose runner process died before writing its result (timeout, crash, out of memory). */
export function diedRun(runner: RunnerName, notebook: string, executed: string, startedMs: number, exit: Exit, what: string): NotebookRun {
  const why = exit.timedOut ? `timed out (${what})` : `${what} exited with ${exit.signal ?? `code ${exit.code}`}`;
  return {
    runner,
    notebook,
    executed,
    ok: false,
    failure: { cell: 0, codeCell: 0, firstLine: '(unknown: the runner died)', status: exit.timedOut ? 'timeout' : 'crash', message: `${why}\n${exit.stderr.slice(-4000)}` },
    seconds: (Date.now() - startedMs) / 1000,
    startupSeconds: NaN,
    cellSeconds: [],
    checks: [],
  };
}
