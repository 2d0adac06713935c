/**
 * Image grids as PNG files (pngjs), shared by the CLI's `ddpm sample` and the GPU check.
 */
import { PNG } from 'pngjs';

/**
 * Images in [-1, 1], NHWC with 1 or 3 channels, as one PNG: a near-square grid (ceil(sqrt n)
 * columns) with 2-pixel white gaps, each pixel drawn as a `scale` x `scale` block.
 */
export function imageGridPng(pixels: Float32Array, n: number, size: number, channels: number, scale = 1): Buffer {
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const gap = 2;
  const cell = size * scale;
  const width = cols * cell + (cols + 1) * gap;
  const height = rows * cell + (rows + 1) * gap;
  const png = new PNG({ width, height });
  png.data.fill(255);
  const level = (x: number) => Math.max(0, Math.min(255, Math.round(((x + 1) / 2) * 255)));
  for (let k = 0; k < n; k++) {
    const x0 = gap + (k % cols) * (cell + gap);
    const y0 = gap + Math.floor(k / cols) * (cell + gap);
    for (let y = 0; y < cell; y++) {
      for (let x = 0; x < cell; x++) {
        const src = ((k * size + Math.floor(y / scale)) * size + Math.floor(x / scale)) * channels;
        const dst = ((y0 + y) * width + x0 + x) * 4;
        for (let c = 0; c < 3; c++) png.data[dst + c] = level(pixels[src + (channels === 1 ? 0 : c)]);
        png.data[dst + 3] = 255;
      }
    }
  }
  return PNG.sync.write(png);
}
