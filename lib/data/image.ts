/**
 * Image grids as PNG (pngjs), shared by the CLI's `ddpm sample`, the GPU check and the notebooks'
 * image figures (lib/workbook/figures.ts).
 */
import { PNG } from 'pngjs';

/** How imageGrid lays the images out and draws them. */
export interface ImageGridOptions {
  /** Images drawn: the first n of pixels. */
  n: number;
  /** Side of each (square) image in pixels, e.g. 28 for MNIST. */
  size: number;
  /** Channels per pixel in `pixels`: 1 (grey) or 3 (RGB). Default 1. */
  channels?: number;
  /** Images per row; default ceil(sqrt n), a near-square grid. */
  cols?: number;
  /** Each pixel is drawn as a scale x scale block; default 1. */
  scale?: number;
  /** Draw -1 as white and +1 as black (dark ink on paper) instead of -1 black, +1 white. Default false. */
  invert?: boolean;
}

/**
 * Images in [-1, 1] (values outside are clipped), NHWC with 1 or 3 channels, as one PNG: a grid of
 * `cols` per row with 2-pixel white gaps around and between them. A value v becomes the 8-bit level
 * round((v + 1) / 2 * 255) (255 minus that when inverted).
 */
export function imageGrid(pixels: ArrayLike<number>, options: ImageGridOptions): Buffer {
  const { n, size } = options;
  const channels = options.channels ?? 1;
  const scale = options.scale ?? 1;
  const positive = (name: string, v: unknown) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`imageGrid: ${name} must be an integer >= 1, got ${JSON.stringify(v)}`);
  };
  positive('n', n);
  positive('size', size);
  positive('scale', scale);
  if (channels !== 1 && channels !== 3) throw new Error(`imageGrid: channels must be 1 or 3, got ${JSON.stringify(channels)}`);
  const cols = options.cols ?? Math.ceil(Math.sqrt(n));
  positive('cols', cols);
  const need = n * size * size * channels;
  if (pixels.length < need) {
    throw new Error(`imageGrid: pixels holds ${pixels.length} values, fewer than n * size * size * channels = ${n} * ${size} * ${size} * ${channels} = ${need}`);
  }
  const rows = Math.ceil(n / cols);
  const gap = 2;
  const cell = size * scale;
  const width = cols * cell + (cols + 1) * gap;
  const height = rows * cell + (rows + 1) * gap;
  const png = new PNG({ width, height });
  png.data.fill(255);
  const level = (x: number) => {
    const v = Math.max(0, Math.min(255, Math.round(((x + 1) / 2) * 255)));
    return options.invert ? 255 - v : v;
  };
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

/** imageGrid's PNG as a data: URI (for an <img>, or a Plotly image trace's `source`). */
export function imageGridDataUri(pixels: ArrayLike<number>, options: ImageGridOptions): string {
  return `data:image/png;base64,${imageGrid(pixels, options).toString('base64')}`;
}

/**
 * Images in [-1, 1], NHWC with 1 or 3 channels, as one PNG: a near-square grid (ceil(sqrt n)
 * columns) with 2-pixel white gaps, each pixel drawn as a `scale` x `scale` block.
 */
export function imageGridPng(pixels: Float32Array, n: number, size: number, channels: number, scale = 1): Buffer {
  return imageGrid(pixels, { n, size, channels, scale });
}
