/**
 * `node -r tsx/cjs bench/profile.ts [batch]`: the kernels of one UNetDenoiser Adam step on wasm
 * (notebook 07's cpu size: 16 channels, mults [1, 2], no attention, groups 8), by count and by
 * share of kernel time within this one process (tf.profile), which stay meaningful on a loaded
 * machine where wall-clock times do not. `--ab N`: then N steps alternating with and without the
 * fused GroupNorm-SiLU kernels (unregistered for the "without" steps), each step's process CPU
 * time (user + system), and both medians.
 */
import * as tf from '@tensorflow/tfjs';
import {
  GROUP_NORM_SILU,
  GROUP_NORM_SILU_GRAD,
  UNetDenoiser,
  createOptimizer,
  linearSchedule,
  registerGroupNormKernels,
  simpleLossUnchecked,
  useBestBackend,
} from '../lib';
import { median } from './core';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const abAt = args.indexOf('--ab');
  const ab = abAt >= 0 ? Number(args[abAt + 1]) : 0;
  const batch = Number(args.find((a, i) => /^\d+$/.test(a) && args[i - 1] !== '--ab') ?? 32);
  await useBestBackend({ prefer: 'wasm' });
  const model = new UNetDenoiser({ baseChannels: 16, channelMults: [1, 2], attention: false, groups: 8, seed: 0 });
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
  for (let i = 0; i < 2; i++) tf.dispose(step()); // warm-up
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
  console.log(`backend ${tf.getBackend()}, batch ${batch}: ${[...rows.values()].reduce((n, r) => n + r.count, 0)} kernels, ${total.toFixed(0)} ms kernel time`);
  console.log('| kernel | count | share of time |');
  console.log('| --- | ---: | ---: |');
  for (const [name, r] of sorted) console.log(`| ${name} | ${r.count} | ${((100 * r.ms) / total).toFixed(1)} % |`);
  if (ab > 0) {
    const cpuMs = (): number => {
      const t0 = process.cpuUsage();
      tf.dispose(step());
      const d = process.cpuUsage(t0);
      return (d.user + d.system) / 1000;
    };
    const fused: number[] = [];
    const unfused: number[] = [];
    for (let i = 0; i < ab; i++) {
      fused.push(cpuMs());
      tf.unregisterKernel(GROUP_NORM_SILU, 'wasm');
      tf.unregisterKernel(GROUP_NORM_SILU_GRAD, 'wasm');
      unfused.push(cpuMs());
      registerGroupNormKernels();
    }
    const f = median(fused);
    const u = median(unfused);
    console.log(`CPU ms per step, ${ab} alternating pairs: fused ${f.toFixed(0)} [${Math.min(...fused).toFixed(0)}-${Math.max(...fused).toFixed(0)}], unfused ${u.toFixed(0)} [${Math.min(...unfused).toFixed(0)}-${Math.max(...unfused).toFixed(0)}], ratio ${(u / f).toFixed(2)}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
