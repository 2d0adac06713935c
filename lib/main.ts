/**
 * The main job (`npm start`): trains an MlpDenoiser on the swiss roll with the text's training
 * algorithm, generates new points with the text's generation algorithm, and writes an HTML report
 * with the samples, the loss curve and the denoising trajectory into out/.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { useBestBackend } from './backend';
import { swissRoll } from './data';
import { energyDistance } from './metrics';
import { MlpDenoiser } from './models';
import { Progress, formatDuration } from './progress';
import { Figure, renderReport, writeFileAtomic } from './report';
import { sampleDDPM } from './sampling';
import { linearSchedule } from './schedule';
import { train } from './train';
import { checkInteger } from './validate';

/** Settings of the swiss-roll demo; each has a default, and `npm start` reads them from DDPM_* variables. */
export interface DemoOptions {
  steps: number;
  batchSize: number;
  T: number;
  samples: number;
  seed: number;
  outDir: string;
  /** Where progress goes; null for silence (tests). */
  log: NodeJS.WriteStream | null;
}

/** What the demo measured; also written to out/summary.json. */
export interface DemoSummary {
  backend: string;
  steps: number;
  trainSeconds: number;
  sampleSeconds: number;
  finalLoss: number;
  /** Energy distance of the samples to held-out data, and two references for scale. */
  energyDistance: { samples: number; noise: number; heldOutVsHeldOut: number };
  report: string;
}

const DEFAULTS: DemoOptions = { steps: 6000, batchSize: 256, T: 1000, samples: 2000, seed: 0, outDir: 'out', log: process.stdout };

const scatter = (xy: Float32Array, name: string, color: string): Record<string, unknown> => ({
  type: 'scattergl',
  mode: 'markers',
  name,
  x: Array.from(xy.filter((_, i) => i % 2 === 0)),
  y: Array.from(xy.filter((_, i) => i % 2 === 1)),
  marker: { size: 3, color, opacity: 0.6 },
});

/** Runs the demo end to end and returns what it measured. */
export async function runSwissRollDemo(options: Partial<DemoOptions> = {}): Promise<DemoSummary> {
  const o: DemoOptions = { ...DEFAULTS, ...options };
  checkInteger('steps', o.steps, 1);
  checkInteger('samples', o.samples, 2);
  const say = (line: string) => o.log?.write(`${line}\n`);
  const backend = await useBestBackend({ verbose: o.log !== null });
  const schedule = linearSchedule(o.T);
  const data = swissRoll(10000, { seed: o.seed + 1 });
  const heldOut = swissRoll(o.samples, { seed: o.seed + 2 });
  const heldOut2 = swissRoll(o.samples, { seed: o.seed + 3 });
  const model = new MlpDenoiser({ seed: o.seed });
  say(`training an MlpDenoiser (${model.trainableVariables.reduce((n, v) => n + v.size, 0)} weights) on 10,000 swiss-roll points, T = ${o.T}, ${o.steps} steps of batch ${o.batchSize}`);
  const bar = o.log ? new Progress('train', o.steps, o.log) : null;
  const result = await train({
    model,
    schedule,
    data,
    steps: o.steps,
    batchSize: o.batchSize,
    lr: 2e-3,
    emaDecay: 0.99,
    seed: o.seed,
    onProgress: (p) => bar?.update(p.step, `loss ${p.loss.toFixed(4)}`),
  });
  const sampler = result.ema ?? model;
  const sampleBar = o.log ? new Progress('sample', o.T, o.log) : null;
  const sampleStart = Date.now();
  // Most of the structure appears in the last tenth of the steps: look there more often.
  const at = [1, 0.3, 0.15, 0.075, 0.025, 0].map((f) => Math.round(f * o.T));
  const { x0, trajectory } = await sampleDDPM(sampler, schedule, [o.samples, 2], {
    seed: o.seed + 4,
    trajectoryAt: at,
    onStep: (i) => {
      if (i.step % 10 === 0 || i.step === i.steps) sampleBar?.update(i.step);
    },
  });
  const sampleSeconds = (Date.now() - sampleStart) / 1000;
  const noise = tf.randomNormal([o.samples, 2], 0, 1, 'float32', o.seed + 5);
  // Read once, asynchronously (every backend allows that), and measure on the copies.
  const samples = (await x0.data()) as Float32Array;
  const dataPoints = (await heldOut.data()) as Float32Array;
  const points = async (x: tf.Tensor) => ({ data: (await x.data()) as Float32Array, dim: 2 });
  const heldOutPoints = { data: dataPoints, dim: 2 };
  const summary: DemoSummary = {
    backend: backend.name,
    steps: o.steps,
    trainSeconds: result.seconds,
    sampleSeconds,
    finalLoss: result.losses.slice(-100).reduce((a, b) => a + b, 0) / Math.min(100, result.losses.length),
    energyDistance: {
      samples: energyDistance({ data: samples, dim: 2 }, heldOutPoints),
      noise: energyDistance(await points(noise), heldOutPoints),
      heldOutVsHeldOut: energyDistance(await points(heldOut2), heldOutPoints),
    },
    report: path.resolve(o.outDir, 'index.html'),
  };
  tf.dispose([x0, noise, data, heldOut, heldOut2]);
  model.dispose();
  result.ema?.dispose();

  const window = Math.max(1, Math.round(o.steps / 100));
  const smooth = Array.from(result.losses, (_, i) => {
    const from = Math.max(0, i - window + 1);
    let s = 0;
    for (let k = from; k <= i; k++) s += result.losses[k];
    return s / (i - from + 1);
  });
  const steps = Array.from(result.losses, (_, i) => i + 1);
  const figures: { heading: string; html: string; figure: Figure }[] = [
    {
      heading: 'Samples vs data',
      html: `<p>${o.samples} points generated by the text's algorithm (x_T ~ N(0, I), then T = ${o.T} denoising steps with sigma_q(t)) beside ${o.samples} held-out swiss-roll points.</p>
<table><tr><th>energy distance to held-out data</th><th></th></tr>
<tr><td>generated samples</td><td>${summary.energyDistance.samples.toFixed(4)}</td></tr>
<tr><td>another held-out draw (the floor)</td><td>${summary.energyDistance.heldOutVsHeldOut.toFixed(4)}</td></tr>
<tr><td>pure noise N(0, I) (the ceiling)</td><td>${summary.energyDistance.noise.toFixed(4)}</td></tr></table>`,
      figure: {
        data: [
          { ...scatter(dataPoints, 'held-out data', '#1f77b4'), xaxis: 'x', yaxis: 'y' },
          { ...scatter(samples, 'generated', '#d62728'), xaxis: 'x2', yaxis: 'y2' },
        ],
        layout: {
          grid: { rows: 1, columns: 2, pattern: 'independent' },
          xaxis: { range: [-2.2, 2.2], title: { text: 'held-out data' } },
          yaxis: { range: [-2.2, 2.2], scaleanchor: 'x' },
          xaxis2: { range: [-2.2, 2.2], title: { text: 'generated by DDPM' } },
          yaxis2: { range: [-2.2, 2.2], scaleanchor: 'x2' },
          showlegend: false,
          title: { text: 'Swiss roll: data and DDPM samples' },
        },
      },
    },
    {
      heading: 'Training loss',
      html: `<p>The simple loss ||eps - eps_theta(x_t, t)||^2 / D per step, ${o.steps} steps of batch ${o.batchSize} on the ${backend.name} backend in ${formatDuration(result.seconds)}.</p>`,
      figure: {
        data: [
          { type: 'scattergl', mode: 'lines', name: 'per step', x: steps, y: Array.from(result.losses), line: { color: '#bbb', width: 1 } },
          { type: 'scattergl', mode: 'lines', name: `mean of ${window}`, x: steps, y: smooth, line: { color: '#1f77b4', width: 2 } },
        ],
        layout: { title: { text: 'Simple loss' }, xaxis: { title: { text: 'step' } }, yaxis: { title: { text: 'loss' }, type: 'log' } },
      },
    },
    {
      heading: 'Denoising trajectory',
      html: '<p>The same samples at several timesteps of the reverse process, from noise (left) to data (right); most of the structure forms in the last tenth of the steps.</p>',
      figure: {
        data: trajectory.map((p, i) => ({
          ...scatter(p.x, `t = ${p.t}`, '#d62728'),
          xaxis: `x${i + 1}`,
          yaxis: `y${i + 1}`,
          showlegend: false,
        })),
        layout: {
          grid: { rows: 1, columns: trajectory.length, pattern: 'independent' },
          height: 300,
          annotations: trajectory.map((p, i) => ({ text: `t = ${p.t}`, showarrow: false, xref: `x${i + 1} domain`, yref: `y${i + 1} domain`, x: 0.5, y: 1.12 })),
          ...Object.fromEntries(
            trajectory.flatMap((_, i) => [
              [`xaxis${i + 1}`, { range: [-3, 3], showticklabels: false }],
              [`yaxis${i + 1}`, { range: [-3, 3], showticklabels: false, scaleanchor: `x${i + 1}` }],
            ]),
          ),
        },
      },
    },
  ];
  writeFileAtomic(summary.report, renderReport('DDPM on the swiss roll', figures));
  writeFileAtomic(path.resolve(o.outDir, 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  say(`energy distance to held-out data: samples ${summary.energyDistance.samples.toFixed(4)} (held-out floor ${summary.energyDistance.heldOutVsHeldOut.toFixed(4)}, noise ${summary.energyDistance.noise.toFixed(4)})`);
  say(`wrote ${summary.report}`);
  return summary;
}

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be an integer >= 1, got ${JSON.stringify(raw)}`);
  return v;
}

if (require.main === module) {
  (async () => runSwissRollDemo({ steps: envInt('DDPM_STEPS', DEFAULTS.steps), samples: envInt('DDPM_SAMPLES', DEFAULTS.samples) }))().catch(
    (e) => {
      console.error(`npm start failed: ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    },
  );
}
