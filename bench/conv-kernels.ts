/**
 * `node -r tsx/cjs bench/conv-kernels.ts [--rounds N] [--batch B]`: the project's wasm SIMD
 * convolution kernels (lib/runtime/kernels/c/conv2d.c) called straight on a memory of their own,
 * without tfjs: for each 3x3 stride-1 'same' shape of notebook 07's U-Net, the forward pass, the
 * input gradient and the filter gradient, by the direct kernels and by Winograd's, in interleaved
 * rounds (the order alternates), each call's process CPU time; prints each median, its GFLOP/s
 * (2 per multiply-add of the direct definition) and the ratio. Process CPU time rather than wall
 * time, so that another process on the machine changes the figures less.
 */
import { simdModuleBytes, winogradFilterScratchFloats, winogradScratchFloats } from '../lib';
import { median } from './core';

type Fn = (...a: number[]) => number;

function main(): void {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : dflt);
  const rounds = opt('--rounds', 12);
  const B = opt('--batch', 64);
  const memory = new WebAssembly.Memory({ initial: 8192 }); // 512 MiB
  const m = new WebAssembly.Instance(new WebAssembly.Module(simdModuleBytes()), { env: { memory } }).exports as Record<string, Fn>;
  const f32 = new Float32Array(memory.buffer);
  for (let i = 0; i < 40e6; i++) f32[i] = Math.sin(i * 0.37);
  // byte offsets: x, w (and dw), y (and dy), dx, scratch
  const X = 0;
  const W = 4 * 10e6;
  const Y = 4 * 11e6;
  const DX = 4 * 21e6;
  const S = 4 * 31e6;
  // [H, W, inC, outC]: the U-Net's 3x3 stride-1 convolutions at notebook 07's cpu size
  const shapes = [[28, 28, 16, 16], [28, 28, 32, 16], [28, 28, 48, 16], [14, 14, 16, 32], [14, 14, 32, 32], [14, 14, 48, 32], [14, 14, 64, 32]];
  const kernels: Record<string, (h: number, w: number, ci: number, co: number) => number> = {
    'forward direct': (h, w, ci, co) => m.conv2d_forward(X, W, Y, B, h, w, ci, h, w, co, 3, 3, 1, 1, 1, 1),
    'forward Winograd': (h, w, ci, co) => m.conv2d_winograd(X, W, S, Y, B, h, w, ci, co, 0),
    'input gradient direct': (h, w, ci, co) => m.conv2d_backprop_input(Y, W, S, DX, B, h, w, ci, h, w, co, 3, 3, 1, 1, 1, 1),
    'input gradient Winograd': (h, w, ci, co) => m.conv2d_winograd(Y, W, S, DX, B, h, w, co, ci, 1),
    'filter gradient direct': (h, w, ci, co) => m.conv2d_backprop_filter(X, Y, W, B, h, w, ci, h, w, co, 3, 3, 1, 1, 1, 1),
    'filter gradient Winograd': (h, w, ci, co) => m.conv2d_winograd_filter(X, Y, S, W, B, h, w, ci, co),
  };
  const maxScratch = Math.max(...shapes.map(([, , ci, co]) => Math.max(winogradScratchFloats(ci, co), winogradScratchFloats(co, ci), winogradFilterScratchFloats(ci, co))));
  if (S + 4 * maxScratch > memory.buffer.byteLength) throw new Error('conv-kernels: the memory is too small for the scratch');
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const times: Record<string, number[]> = {};
  const names = Object.keys(kernels);
  for (let r = 0; r < rounds; r++) {
    for (const s of shapes) {
      const order = r % 2 ? [...names].reverse() : names;
      for (const k of order) {
        const c0 = cpuMs();
        for (let i = 0; i < 3; i++) if (kernels[k](s[0], s[1], s[2], s[3]) !== 0) throw new Error(`${k} declined [${s}]`);
        (times[`${k} ${s}`] ??= []).push((cpuMs() - c0) / 3);
      }
    }
  }
  console.log(`wasm SIMD convolution kernels, batch ${B}, ${rounds} interleaved rounds, median process CPU ms per call (GFLOP/s of the direct definition)`);
  console.log('| shape (H, W, inC -> outC) | pass | direct | Winograd | speed-up |');
  console.log('| --- | --- | ---: | ---: | ---: |');
  for (const s of shapes) {
    const gflop = (2 * B * s[0] * s[1] * s[2] * s[3] * 9) / 1e9;
    for (const pass of ['forward', 'input gradient', 'filter gradient']) {
      const d = median(times[`${pass} direct ${s}`]);
      const w = median(times[`${pass} Winograd ${s}`]);
      console.log(`| ${s[0]}x${s[1]}, ${s[2]} -> ${s[3]} | ${pass} | ${d.toFixed(2)} (${((gflop / d) * 1e3).toFixed(0)}) | ${w.toFixed(2)} (${((gflop / w) * 1e3).toFixed(0)}) | ${(d / w).toFixed(2)}x |`);
    }
  }
}

main();
