/**
 * `ddpm sample`: samples of a run as a PNG grid (image runs, x0_hat clipped to [-1, 1] at every
 * step as notebook 07 does) or CSV/JSON points (2-D runs), drawn in chunks whose tensor memory is
 * estimated before the first one starts. --out is checked before any sampling.
 */
import * as path from 'path';
import { imageGridPng } from '../data/image';
import { Progress } from '../runtime/progress';
import { checkWritableFile, formatBytes, writeFileAtomic } from '../runtime/files';
import { MAX_SAMPLE_IMAGES, UsageError, Values, checkAllValues, choiceValue, intValue, numValue, requireValue } from './flags';
import { CliIO, drawSamples, openRun, planDraw } from './common';

/** `ddpm sample`: resolves to 0 after writing --out. */
export async function cmdSample(v: Values, io: CliIO): Promise<number> {
  const out = requireValue(v, 'sample', 'out');
  checkAllValues('sample', v);
  const sampler = choiceValue<'ddpm' | 'ddim'>(v, 'sample', 'sampler') ?? 'ddpm';
  if (sampler === 'ddpm' && (v.steps !== undefined || v.eta !== undefined)) {
    throw new UsageError(`--${v.steps !== undefined ? 'steps' : 'eta'} is a DDIM option; add --sampler ddim (DDPM takes all T steps)`);
  }
  const ext = path.extname(out).toLowerCase();
  if (!['.png', '.csv', '.json'].includes(ext)) throw new UsageError(`--out must end in .png (images), .csv or .json (2-D points), got ${JSON.stringify(out)}`);
  try {
    checkWritableFile(out);
  } catch (e) {
    throw new UsageError(`--out ${out}: ${(e as Error).message}`);
  }
  const seed = intValue(v, 'sample', 'seed') ?? 0;
  const nFlag = intValue(v, 'sample', 'n');
  const chunkFlag = intValue(v, 'sample', 'chunk');
  const eta = numValue(v, 'sample', 'eta') ?? 0;
  const stepsFlag = intValue(v, 'sample', 'steps');
  const { run, model, which, image } = await openRun(v, 'sample', io);
  try {
    if (image && ext !== '.png') throw new UsageError(`this run makes images: --out must end in .png, got ${JSON.stringify(out)}`);
    if (!image && ext === '.png') throw new UsageError(`this run makes 2-D points: --out must end in .csv or .json, got ${JSON.stringify(out)}`);
    if (image && nFlag !== undefined && nFlag > MAX_SAMPLE_IMAGES) throw new UsageError(`--n must be an integer in [1, ${MAX_SAMPLE_IMAGES}] for an image run, got ${nFlag}`);
    const T = run.schedule.T;
    if (stepsFlag !== undefined && stepsFlag > T) throw new UsageError(`--steps must be an integer in [1, ${T}] (the run's T), got ${stepsFlag}`);
    const n = nFlag ?? (image ? 16 : 1000);
    const cfg = run.manifest.model.config as { imageSize?: number; channels?: number };
    const one = image ? [cfg.imageSize ?? 28, cfg.imageSize ?? 28, cfg.channels ?? 1] : [2];
    const steps = sampler === 'ddpm' ? T : stepsFlag ?? Math.min(50, T);
    const plan = await planDraw(model, n, one, chunkFlag);
    io.out.write(
      `sampling ${n} with ${sampler} (${steps} steps) from the ${which} weights of ${run.dir} (step ${run.manifest.step}), ` +
        `${plan.count === 1 ? 'one batch' : `${plan.count} batches of ${plan.size}`} (about ${formatBytes(plan.bytesPerChunk)} of tensors each)\n`,
    );
    const bar = v.quiet ? null : new Progress('sample', steps * plan.count, io.out as NodeJS.WriteStream);
    const values = await drawSamples(model, run.schedule, n, one, plan, { sampler, steps, eta, seed, clipX0: image, onStep: (done) => bar?.update(done) }).catch((e: Error) => {
      throw new Error(`${e.message} (step ${run.manifest.step})`);
    });
    const write = (data: string | Uint8Array) => {
      try {
        writeFileAtomic(out, data, { mkdir: false });
      } catch (e) {
        throw new Error(`could not write ${out}: ${(e as Error).message}`);
      }
    };
    if (ext === '.png') write(imageGridPng(values, n, one[0], one[2]));
    else if (ext === '.csv') {
      const lines = ['x,y'];
      for (let i = 0; i < n; i++) lines.push(`${values[2 * i]},${values[2 * i + 1]}`);
      write(lines.join('\n') + '\n');
    } else {
      const points = Array.from({ length: n }, (_, i) => [values[2 * i], values[2 * i + 1]]);
      write(JSON.stringify({ run: path.resolve(run.dir), step: run.manifest.step, sampler, steps, eta, seed, chunk: plan.size, weights: which, points }) + '\n');
    }
    io.out.write(`wrote ${path.resolve(out)}\n`);
    return 0;
  } finally {
    run.dispose();
  }
}
