/**
 * `ddpm sample`: samples of a run as a PNG grid (image runs, x0_hat clipped to [-1, 1] at every
 * step as notebook 07 does) or CSV/JSON points (2-D runs), drawn in chunks whose tensor memory is
 * estimated before the first one starts. A conditional run samples the classes --class names with
 * classifier-free guidance --guidance W, one grid row per class. --out is checked before any sampling.
 */
import * as path from 'path';
import { ConditionalDenoiser, Denoiser, Progress, guidedDenoiser, imageGrid, writeFileAtomic } from '../index';
import { MAX_SAMPLE_IMAGES, UsageError, Values, checkAllValues, choiceValue, intValue, numValue, requireValue } from './flags';
import { CliIO, classValues, drawSamples, guidanceValue, openRun, planDraw } from './common';
import { checkWritableFile, formatBytes } from './rundir';

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
  const w = guidanceValue(v, 'sample');
  let classes: number[] | null = null;
  const { run, model, which, image } = await openRun(v, 'sample', io, (m, dir) => {
    classes = classValues(v, m, dir);
  });
  try {
    if (image && ext !== '.png') throw new UsageError(`this run makes images: --out must end in .png, got ${JSON.stringify(out)}`);
    if (!image && ext === '.png') throw new UsageError(`this run makes 2-D points: --out must end in .csv or .json, got ${JSON.stringify(out)}`);
    if (image && nFlag !== undefined && nFlag > MAX_SAMPLE_IMAGES) throw new UsageError(`--n must be an integer in [1, ${MAX_SAMPLE_IMAGES}] for an image run, got ${nFlag}`);
    const T = run.schedule.T;
    if (stepsFlag !== undefined && stepsFlag > T) throw new UsageError(`--steps must be an integer in [1, ${T}] (the run's T), got ${stepsFlag}`);
    const n = nFlag ?? (image ? 16 : 1000);
    const wanted = classes as number[] | null;
    if (wanted && n * wanted.length > MAX_SAMPLE_IMAGES) {
      throw new UsageError(`--n ${n} per class for ${wanted.length} classes makes ${n * wanted.length} images, more than the ${MAX_SAMPLE_IMAGES} of one grid; lower --n or name fewer classes`);
    }
    const cfg = run.manifest.model.config as { imageSize?: number; channels?: number };
    const one = image ? [cfg.imageSize ?? 28, cfg.imageSize ?? 28, cfg.channels ?? 1] : [2];
    const steps = sampler === 'ddpm' ? T : stepsFlag ?? Math.min(50, T);
    // One denoiser per class; without --class the model itself (a conditional one then samples its null class).
    const denoisers: Denoiser[] = wanted ? wanted.map((c) => guidedDenoiser(model as unknown as ConditionalDenoiser, c, w)) : [model];
    const plan = await planDraw(denoisers[0], n, one, chunkFlag);
    const what = wanted ? ` per class for class${wanted.length > 1 ? 'es' : ''} ${wanted.join(', ')} (guidance w = ${w})` : '';
    io.out.write(
      `sampling ${n}${what} with ${sampler} (${steps} steps) from the ${which} weights of ${run.dir} (step ${run.manifest.step}), ` +
        `${plan.count === 1 ? 'one batch' : `${plan.count} batches of ${plan.size}`} (about ${formatBytes(plan.bytesPerChunk)} of tensors each)\n`,
    );
    const perDenoiser = steps * plan.count;
    const bar = v.quiet ? null : new Progress('sample', perDenoiser * denoisers.length, io.out as NodeJS.WriteStream);
    const dim = one.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n * denoisers.length * dim);
    for (let k = 0; k < denoisers.length; k++) {
      // Every class starts from the same noise (the same seed): rows differ only by their class, and
      // --class 7 draws what row 7 of --class all shows.
      const drawn = await drawSamples(denoisers[k], run.schedule, n, one, plan, { sampler, steps, eta, seed, clipX0: image, onStep: (done) => bar?.update(k * perDenoiser + done) }).catch((e: Error) => {
        throw new Error(`${e.message} (step ${run.manifest.step})`);
      });
      values.set(drawn, k * n * dim);
    }
    const total = n * denoisers.length;
    const write = (data: string | Uint8Array) => {
      try {
        writeFileAtomic(out, data, { mkdir: false });
      } catch (e) {
        throw new Error(`could not write ${out}: ${(e as Error).message}`);
      }
    };
    if (ext === '.png') write(imageGrid(values, { n: total, size: one[0], channels: one[2], ...(wanted ? { cols: n } : {}) }));
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
