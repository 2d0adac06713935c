/**
 * `node -r tsx/cjs bench/profile.ts [batch]`: the kernels of one UNetDenoiser Adam step on wasm
 * (notebook 07's cpu size: 16 channels, mults [1, 2], no attention, groups 8), by count and by
 * share of kernel time within this one process (tf.profile), which stay meaningful on a loaded
 * machine where wall-clock times do not. `--ab N`: then N steps alternating with and without the
 * fused GroupNorm-SiLU kernels (unregistered for the "without" steps), each step's process CPU
 * time (user + system), and both medians. `--route xnnpack` sends Conv2DBackpropFilter down the
 * XNNPACK route instead of the SIMD kernel (lib/runtime/kernels/c/) for the whole run; `--steps N`
 * then times N more steps (wall and process CPU ms, one JSON line) for A/B runs in alternating processes;
 * `--model mnist` profiles the library's default (MNIST) U-Net instead. `--ab-conv N`: N steps
 * alternating between the convolution routes 'direct' (the SIMD kernels without Winograd) and
 * 'auto' (Winograd's F(2x2, 3x3) where it applies), each step's process CPU time, both medians.
 */
import * as tf from '@tensorflow/tfjs';
import {
  ConvRoute,
  GROUP_NORM_SILU,
  GROUP_NORM_SILU_GRAD,
  UNetDenoiser,
  createOptimizer,
  linearSchedule,
  registerGroupNormKernels,
  setConvRoute,
  simpleLossUnchecked,
  useBestBackend,
} from '../lib';
import { median } from './core';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const abAt = args.indexOf('--ab');
  const ab = abAt >= 0 ? Number(args[abAt + 1]) : 0;
  const routeAt = args.indexOf('--route');
  const route = (routeAt >= 0 ? args[routeAt + 1] : 'auto') as ConvRoute;
  const stepsAt = args.indexOf('--steps');
  const steps = stepsAt >= 0 ? Number(args[stepsAt + 1]) : 0;
  const abConvAt = args.indexOf('--ab-conv');
  const abConv = abConvAt >= 0 ? Number(args[abConvAt + 1]) : 0;
  const batch = Number(args.find((a, i) => /^\d+$/.test(a) && !['--ab', '--steps', '--ab-conv'].includes(args[i - 1])) ?? 32);
  await useBestBackend({ prefer: 'wasm' });
  setConvRoute(route);
  // --model mnist: the library's default (MNIST) U-Net, the bench's unet workload, instead of notebook 07's cpu size.
  const mnist = args.includes('--model') && args[args.indexOf('--model') + 1] === 'mnist';
  const model = mnist ? new UNetDenoiser({ seed: 0 }) : new UNetDenoiser({ baseChannels: 16, channelMults: [1, 2], attention: false, groups: 8, seed: 0 });
  const schedule = linearSchedule(100);
  const x0 = tf.randomUniform([batch, 28, 28, 1], -1, 1, 'float32', 1);
  const eps = tf.randomNormal([batch, 28, 28, 1], 0, 1, 'float32', 2);
  const t = tf.tensor1d(Array.from({ length: batch }, (_, i) => 1 + ((i * 37) % 100)), 'int32');
  const opt = createOptimizer(1e-3);
  const step = () =>
    tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => simpleLossUnchecked(model, schedule, x0, t, eps) as tf.Scalar, model.trainableVariables);
      opt.applyGradients(grads);
      return value;
    });
  // warm-up: the JavaScript kernels (Adam, Concat/SplitV rows) are compiled by V8 only after a few calls
  for (let i = 0; i < 6; i++) tf.dispose(step());
  const info = await tf.profile(() => step());
  tf.dispose(info.result as tf.Tensor);
  const rows = new Map<string, { count: number; ms: number }>();
  let total = 0;
  for (const k of info.kernels) {
    // A customGrad op (the fused GroupNorm-SiLU) shows up as an 'unnamed scope' around its own
    // kernel: counting both would count that time twice.
    if (k.name === 'unnamed scope') continue;
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    const r = rows.get(k.name) ?? { count: 0, ms: 0 };
    r.count++;
    r.ms += ms;
    rows.set(k.name, r);
    total += ms;
  }
  const sorted = [...rows.entries()].sort((a, b) => b[1].ms - a[1].ms);
  console.log(`backend ${tf.getBackend()}, batch ${batch}, filter-gradient route ${route}: ${[...rows.values()].reduce((n, r) => n + r.count, 0)} kernels, ${total.toFixed(0)} ms kernel time`);
  console.log('| kernel | count | ms | share of time |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const [name, r] of sorted) console.log(`| ${name} | ${r.count} | ${r.ms.toFixed(1)} | ${((100 * r.ms) / total).toFixed(1)} % |`);
  if (steps > 0) {
    const wall: number[] = [];
    const cpu: number[] = [];
    for (let i = 0; i < steps; i++) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      tf.dispose(step());
      wall.push(performance.now() - t0);
      const d = process.cpuUsage(c0);
      cpu.push((d.user + d.system) / 1000);
    }
    console.log(JSON.stringify({ route, batch, model: mnist ? 'mnist' : 'cpu-size', wallMs: wall.map((v) => +v.toFixed(1)), cpuMs: cpu.map((v) => +v.toFixed(1)), medianWallMs: median(wall), medianCpuMs: median(cpu) }));
  }
  // A/B runs in this process: one step's process CPU ms, and a side's median with its range.
  const stepCpuMs = (): number => {
    const t0 = process.cpuUsage();
    tf.dispose(step());
    const d = process.cpuUsage(t0);
    return (d.user + d.system) / 1000;
  };
  const side = (name: string, ms: number[]) => `${name} ${median(ms).toFixed(0)} [${Math.min(...ms).toFixed(0)}-${Math.max(...ms).toFixed(0)}]`;
  if (abConv > 0) {
    const byRoute: Record<'direct' | 'auto', number[]> = { direct: [], auto: [] };
    for (let i = 0; i < abConv; i++) {
      for (const r of (i % 2 ? ['auto', 'direct'] : ['direct', 'auto']) as ('direct' | 'auto')[]) {
        setConvRoute(r);
        byRoute[r].push(stepCpuMs());
      }
    }
    setConvRoute(route);
    console.log(`CPU ms per step, ${abConv} alternating pairs: ${side('direct', byRoute.direct)}, ${side('auto (Winograd)', byRoute.auto)}, ratio ${(median(byRoute.direct) / median(byRoute.auto)).toFixed(2)}`);
  }
  if (ab > 0) {
    const fused: number[] = [];
    const unfused: number[] = [];
    for (let i = 0; i < ab; i++) {
      fused.push(stepCpuMs());
      tf.unregisterKernel(GROUP_NORM_SILU, 'wasm');
      tf.unregisterKernel(GROUP_NORM_SILU_GRAD, 'wasm');
      unfused.push(stepCpuMs());
      registerGroupNormKernels();
    }
    console.log(`CPU ms per step, ${ab} alternating pairs: ${side('fused', fused)}, ${side('unfused', unfused)}, ratio ${(median(unfused) / median(fused)).toFixed(2)}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
