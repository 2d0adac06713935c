/**
 * `ddpm info`: a run's manifest in words, after the checks `sample` makes (loadRun: the weight
 * path inside the run directory, the shard's size and sha256, every tensor's name, shape and dtype
 * against the model config, finite weights). A damaged run prints what is wrong and exits 1;
 * nothing outside the run directory is read.
 */
import * as fs from 'fs';
import * as path from 'path';
import { loadRun, readManifest } from '../index';
import { Values, checkAllValues, requireValue } from './flags';
import { CliIO, chooseBackend, runClasses } from './common';
import { formatBytes } from './rundir';
import type { RunTrainSettings } from './train';

/** `ddpm info`: resolves to 0 for a healthy run, 1 (after printing what is wrong) for a damaged one. */
export async function cmdInfo(v: Values, io: CliIO): Promise<number> {
  const dir = requireValue(v, 'info', 'run');
  checkAllValues('info', v);
  const m = readManifest(dir);
  await chooseBackend(v, 'info', io);
  let problem: string | null = null;
  try {
    (await loadRun(dir)).dispose();
  } catch (e) {
    problem = (e as Error).message;
  }
  const shard = m.weightsManifest[0].paths[0];
  // Only a verified shard is stat'ed: the path in a damaged manifest may point anywhere.
  const size = problem === null ? formatBytes(fs.statSync(path.join(dir, shard)).size) : 'not verified';
  const check = problem === null ? 'ok: size, sha256, tensor shapes and dtypes, finite weights' : `FAILED: ${problem}`;
  if (v.json) {
    const { weightsManifest, ...rest } = m;
    io.out.write(`${JSON.stringify({ ...rest, weights: weightsManifest[0].paths, tensors: weightsManifest[0].weights.length, check: { ok: problem === null, problem } }, null, 1)}\n`);
  } else {
    const t = m.train as unknown as RunTrainSettings;
    const lines = [
      `run            ${path.resolve(dir)}`,
      `steps done     ${m.step} of ${t.steps ?? '?'}${m.skipped ? ` (${m.skipped} non-finite batches skipped)` : ''}`,
      `last loss      ${m.lastLoss === null ? 'n/a' : m.lastLoss.toFixed(5)} (mean of the last 20 steps)`,
      `backend        ${m.backend}`,
      `model          ${m.model.kind} ${JSON.stringify(m.model.config)}`,
      `schedule       ${JSON.stringify(m.schedule)}`,
      `classes        ${runClasses(m) ? `${runClasses(m)} (conditional; null class ${String(m.model.config.nullClass)}, labels dropped to it with p ${t.pUncond ?? '?'})` : 'none (unconditional)'}`,
      `data           ${t.data}${t.nData ? ` (${t.nData} examples)` : ''}, batch ${t.batch}, lr ${t.lr}, loss ${t.loss}, EMA ${t.emaDecay ?? 'none'}, grad clip ${t.gradClip ?? 'none'}`,
      `seed           ${m.seed}`,
      `checkpoint     every ${t.checkpointEvery} steps; saved ${m.savedAt}; ${JSON.stringify(shard)} (${size}, ${m.weightsManifest[0].weights.length} tensors)`,
      `format         ${m.format} v${m.formatVersion}, written by ddpm-workbook ${m.libraryVersion}`,
      `check          ${check}`,
    ];
    io.out.write(lines.join('\n') + '\n');
  }
  if (problem !== null) {
    io.err.write(`ddpm info: error: the run in ${dir} is damaged: ${problem}\n`);
    return 1;
  }
  return 0;
}
