/**
 * `ddpm eval`: bits/dim on held-out MNIST digits (the discretised ELBO, T model evaluations per
 * batch) or, for 2-D runs, the energy distance of DDPM samples to fresh data with two references
 * for scale. Both show progress as `train` does (the library's Progress) unless --quiet.
 */
import * as tf from '@tensorflow/tfjs';
import {
  ConditionalDenoiser,
  Denoiser,
  JudgeReport,
  Progress,
  Schedule,
  deriveSeed,
  elboTerms,
  energyDistance,
  formatJudgeReport,
  guidedDenoiser,
  judgeAccuracy,
  judgeDigits,
  loadMnist,
  sampleDDPM,
  shippedJudge,
} from '../index';
import { MAX_SAMPLE_IMAGES, UsageError, Values, checkAllValues, choiceValue, intValue, numValue } from './flags';
import { CHUNK_BUDGET_BYTES, CliIO, DrawOptions, bytesPerSample, chunkSeed, classValues, drawSamples, guidanceValue, heldOutPoints, openRun, planChunks, planDraw } from './common';
import type { RunTrainSettings } from './train';

/** The model, counting its calls into a progress bar (elboTerms makes one call per timestep). */
function counting(model: Denoiser, onCall: () => void): Denoiser {
  return {
    predictEps: (xt, t) => {
      onCall();
      return model.predictEps(xt, t);
    },
  };
}

/** `ddpm eval`: resolves to 0 after printing the metric. */
export async function cmdEval(v: Values, io: CliIO): Promise<number> {
  checkAllValues('eval', v);
  const seed = intValue(v, 'eval', 'seed') ?? 0;
  const nFlag = intValue(v, 'eval', 'n');
  const chunkFlag = intValue(v, 'eval', 'chunk');
  const sampler = choiceValue<'ddpm' | 'ddim'>(v, 'eval', 'sampler') ?? 'ddpm';
  if (sampler === 'ddpm' && (v.steps !== undefined || v.eta !== undefined)) {
    throw new UsageError(`--${v.steps !== undefined ? 'steps' : 'eta'} is a DDIM option; add --sampler ddim (DDPM takes all T steps)`);
  }
  const judgeN = intValue(v, 'eval', 'judge') ?? 64;
  if (judgeN === 1) throw new UsageError('--judge must be 0 (skip) or an integer in [2, ' + MAX_SAMPLE_IMAGES + '] (a covariance needs 2 samples), got 1');
  const eta = numValue(v, 'eval', 'eta') ?? 0;
  const stepsFlag = intValue(v, 'eval', 'steps');
  const w = guidanceValue(v, 'eval');
  if (v.class !== undefined && judgeN === 0) throw new UsageError('--class needs the digit judge: --judge N with N >= 2 digits per class (it is 0)');
  let classes: number[] | null = null;
  const { run, model, which, image } = await openRun(v, 'eval', io, (m, dir) => {
    classes = classValues(v, m, dir);
  });
  try {
    const train = run.manifest.train as unknown as RunTrainSettings;
    const T = run.schedule.T;
    if (stepsFlag !== undefined && stepsFlag > T) throw new UsageError(`--steps must be an integer in [1, ${T}] (the run's T), got ${stepsFlag}`);
    const steps = sampler === 'ddpm' ? T : stepsFlag ?? Math.min(50, T);
    if (!image && (v.judge !== undefined || v.sampler !== undefined)) throw new UsageError(`--${v.judge !== undefined ? 'judge' : 'sampler'} is for image runs; this run makes 2-D points`);
    let result: Record<string, unknown>;
    if (image) {
      const { images } = loadMnist({ split: 'test', limit: nFlag ?? 16 });
      try {
        const n = images.shape[0];
        const plan = planChunks(n, await bytesPerSample(model, images.shape.slice(1)), CHUNK_BUDGET_BYTES, chunkFlag);
        if (!v.json) {
          io.out.write(
            `bits/dim of ${n} held-out digits (the discretised ELBO: ${T} model evaluations${plan.count > 1 ? ` for each of ${plan.count} batches of ${plan.size}` : ''}) with the ${which} weights\n`,
          );
        }
        const bar = v.quiet ? null : new Progress('eval', T * plan.count, io.out as NodeJS.WriteStream);
        let calls = 0;
        const counted = counting(model, () => bar?.update(Math.min(++calls, T * plan.count)));
        let sumBits = 0;
        for (let c = 0; c < plan.count; c++) {
          const size = Math.min(plan.size, n - c * plan.size);
          const x0 = tf.slice(images, c * plan.size, size);
          try {
            const terms = await elboTerms(counted, run.schedule, x0, { decoder: 'discretized', seed: chunkSeed(seed, c) });
            sumBits += terms.bitsPerDim * size;
          } finally {
            x0.dispose();
          }
          calls = (c + 1) * T;
        }
        bar?.update(T * plan.count);
        result = { metric: 'bitsPerDim', bitsPerDim: sumBits / n, n, step: run.manifest.step, weights: which };
      } finally {
        images.dispose();
      }
      if (!v.json) io.out.write(`bits/dim ${(result.bitsPerDim as number).toFixed(4)} on ${result.n} held-out digits (step ${run.manifest.step})\n`);
      const draw: DrawOptions = { sampler, steps, eta, seed, chunk: chunkFlag, clipX0: true };
      const wanted = classes as number[] | null;
      if (wanted) result.classes = await judgeClasses(model as unknown as ConditionalDenoiser, run.schedule, judgeN, wanted, w, draw, v, io);
      else if (judgeN >= 2) result.judge = await judgeSamples(model, run.schedule, judgeN, draw, v, io);
      if (v.json) io.out.write(`${JSON.stringify(result)}\n`);
    } else {
      const n = nFlag ?? 1000;
      const bar = v.quiet ? null : new Progress('eval', T, io.out as NodeJS.WriteStream);
      const { x0 } = await sampleDDPM(model, run.schedule, [n, 2], { seed, onStep: (i) => bar?.update(i.step) });
      const ref = heldOutPoints(train.data, n, seed);
      const ref2 = heldOutPoints(train.data, n, seed + 1);
      const noise = tf.randomNormal([n, 2], 0, 1, 'float32', deriveSeed(seed, 0x5e)) as tf.Tensor2D;
      try {
        const pts = async (x: tf.Tensor) => ({ data: (await x.data()) as Float32Array, dim: 2 });
        const refPts = await pts(ref);
        result = {
          metric: 'energyDistance',
          samples: energyDistance(await pts(x0), refPts),
          noise: energyDistance(await pts(noise), refPts),
          heldOutVsHeldOut: energyDistance(await pts(ref2), refPts),
          n,
          step: run.manifest.step,
          weights: which,
        };
      } finally {
        tf.dispose([x0, ref, ref2, noise]);
      }
      const f = (k: string) => (result[k] as number).toFixed(5);
      io.out.write(
        v.json
          ? `${JSON.stringify(result)}\n`
          : `energy distance to fresh ${train.data} data (${n} points; lower is better): samples ${f('samples')}, ` +
              `reference: N(0, I) noise ${f('noise')}, a second data draw ${f('heldOutVsHeldOut')}\n`,
      );
    }
    return 0;
  } finally {
    run.dispose();
  }
}

/** Samples n digits (memory-bounded chunks, x0_hat clipped) and prints the digit judge's table; resolves to its report. */
async function judgeSamples(model: Denoiser, schedule: Schedule, n: number, o: DrawOptions, v: Values, io: CliIO): Promise<JudgeReport> {
  const one = [28, 28, 1];
  const plan = await planDraw(model, n, one, o.chunk);
  const stepsPerChunk = o.sampler === 'ddpm' ? schedule.T : o.steps;
  if (!v.json) io.out.write(`the digit judge: sampling ${n} digits with ${o.sampler} (${stepsPerChunk} steps)${plan.count > 1 ? ` in ${plan.count} batches of ${plan.size}` : ''}\n`);
  const bar = v.quiet ? null : new Progress('judge', stepsPerChunk * plan.count, io.out as NodeJS.WriteStream);
  const images = await drawSamples(model, schedule, n, one, plan, { ...o, onStep: (done) => bar?.update(done) });
  const report = await judgeDigits(images, { seed: o.seed });
  if (!v.json) io.out.write(`${formatJudgeReport(report, `${o.sampler} samples`)}\n`);
  return report;
}

/** What eval --class reports for one class: the share of its samples the judge calls that class. */
export interface ClassJudgement {
  class: number;
  n: number;
  /** Share of the class's samples whose argmax class is the class asked for. */
  judgedAsClass: number;
  /** Share of them the judge is confident about (max probability >= 0.9), whatever the class. */
  confidentShare: number;
}

/**
 * eval --class: n digits per class, guided (w), each class from the same seed as `sample --class`
 * draws; prints the judge's usual table over all of them and, per class, the share judged as that class.
 */
async function judgeClasses(
  model: ConditionalDenoiser,
  schedule: Schedule,
  n: number,
  classes: number[],
  w: number,
  o: DrawOptions,
  v: Values,
  io: CliIO,
): Promise<{ guidance: number; perClass: ClassJudgement[]; judge: JudgeReport }> {
  const one = [28, 28, 1];
  const dim = 28 * 28;
  const guided = classes.map((c) => guidedDenoiser(model, c, w));
  const plan = await planDraw(guided[0], n, one, o.chunk);
  const stepsPerChunk = o.sampler === 'ddpm' ? schedule.T : o.steps;
  if (!v.json) {
    io.out.write(`the digit judge: sampling ${n} digits per class for class${classes.length > 1 ? 'es' : ''} ${classes.join(', ')} with ${o.sampler} (${stepsPerChunk} steps), guidance w = ${w}\n`);
  }
  const per = stepsPerChunk * plan.count;
  const bar = v.quiet ? null : new Progress('judge', per * classes.length, io.out as NodeJS.WriteStream);
  const all = new Float32Array(n * classes.length * dim);
  const perClass: ClassJudgement[] = [];
  for (let k = 0; k < classes.length; k++) {
    const images = await drawSamples(guided[k], schedule, n, one, plan, { ...o, onStep: (done) => bar?.update(k * per + done) });
    all.set(images, k * n * dim);
    const { accuracy, confidentShare } = await judgeAccuracy(shippedJudge(), images, new Int32Array(n).fill(classes[k]));
    perClass.push({ class: classes[k], n, judgedAsClass: accuracy, confidentShare });
  }
  const report = await judgeDigits(all, { seed: o.seed });
  if (!v.json) {
    io.out.write(`${formatJudgeReport(report, `${o.sampler} samples (w = ${w})`)}\n`);
    io.out.write(`class   n   judged as the class   confident\n`);
    for (const r of perClass) {
      io.out.write(`${String(r.class).padStart(5)}${String(r.n).padStart(4)}${`${(100 * r.judgedAsClass).toFixed(1)} %`.padStart(22)}${`${(100 * r.confidentShare).toFixed(1)} %`.padStart(12)}\n`);
    }
  }
  return { guidance: w, perClass, judge: report };
}
