#!/usr/bin/env node
/**
 * The command-line tool `ddpm` (package.json "bin"): train a denoiser into a run directory, resume
 * it, sample from it (PNG grid for images, CSV/JSON for 2-D points), evaluate it (bits/dim on
 * held-out MNIST digits, energy distance for 2-D sets) and describe it. Exit codes: 0 done, 1 a
 * failure while running (bad checkpoint, full disk, non-finite loss, a run directory in use by
 * another process), 2 a usage error (unknown flag, bad value, a flag given twice), 130 stopped by
 * SIGINT after saving a checkpoint (143 for SIGTERM). The flags are one table: lib/cli/flags.ts.
 */
import { COMMANDS, Command, MAIN_HELP, UsageError, helpPage, parseFlags } from './flags';
import type { CliIO } from './common';
import { cmdTrain } from './train';
import { cmdSample } from './sample';
import { cmdEval } from './eval';
import { cmdInfo } from './info';

export { UsageError } from './flags';
export type { CliIO } from './common';

const RUNNERS: Record<Command, (v: ReturnType<typeof parseFlags>, io: CliIO) => Promise<number>> = {
  train: cmdTrain,
  sample: cmdSample,
  eval: cmdEval,
  info: cmdInfo,
};

/** Runs one command line (without "node ddpm") and resolves to the exit code; never throws. */
export async function main(argv: string[], io: CliIO = { out: process.stdout, err: process.stderr }): Promise<number> {
  const [cmd, ...args] = argv;
  const known = (COMMANDS as readonly string[]).includes(cmd ?? '');
  try {
    if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
      io.out.write(`${MAIN_HELP}\n`);
      return cmd === undefined ? 2 : 0;
    }
    if (!known) throw new UsageError(`unknown command ${JSON.stringify(cmd)}; the commands are ${COMMANDS.join(', ')}`);
    const v = parseFlags(cmd as Command, args);
    if (v.help) {
      io.out.write(`${helpPage(cmd as Command)}\n`);
      return 0;
    }
    return await RUNNERS[cmd as Command](v, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err.write(`ddpm${known ? ` ${cmd}` : ''}: ${e.message}\n(see: ddpm ${known ? `${cmd} ` : ''}--help)\n`);
      return 2;
    }
    io.err.write(`ddpm ${cmd}: error: ${(e as Error).message}\n`);
    if (process.env.DDPM_DEBUG) io.err.write(`${(e as Error).stack}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
