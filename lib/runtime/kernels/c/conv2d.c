/*
 * The filter gradient of a 2-D convolution (NHWC), in wasm SIMD, for the tfjs wasm backend's heap.
 *
 *   dw[i, j, ci, co] = sum over b, y, x of  xpad[b, y sh + i, x sw + j, ci] dy[b, y, x, co]
 *
 * with xpad = x padded by padTop rows and padLeft columns of zeros (further zeros past its end).
 * For each tap (i, j) this is a [inC, outC] block of sums of outer products x[pixel] dy[pixel]^T
 * over the output pixels whose input pixel lies inside x; padded pixels add nothing, so they are
 * skipped instead of read.
 *
 * Build: lib/runtime/kernels/build-wasm.js (clang-14 --target=wasm32 -msimd128 -O3 -nostdlib,
 * linked with --import-memory). The module imports tfjs-wasm's own memory and every pointer below
 * is an offset into it, so no byte is copied in or out. It must therefore own no memory: no
 * globals, no data, no stack (no arrays or address-taken locals); build-wasm.js rejects a build
 * that has a data section or touches a global (the stack pointer).
 */
#include <wasm_simd128.h>

#define INLINE static inline __attribute__((always_inline))

/* First output index o >= 0 whose input index o s + k - pad is >= 0. */
INLINE int first_valid(int pad, int k, int s) {
  int need = pad - k;
  return need <= 0 ? 0 : (need + s - 1) / s;
}

/* One past the last output index o < out whose input index o s + k - pad is < in. */
INLINE int end_valid(int pad, int k, int s, int in, int out) {
  int top = in - 1 + pad - k;
  if (top < 0) return 0;
  int e = top / s + 1;
  return e < out ? e : out;
}

/*
 * A register tile of up to 4 rows (pixels, or input channels) by up to 2 vectors of 4 float32: the
 * accumulators of tile_co, dx_tile and y_tile. R (rows) and V (vectors) are constants at every call
 * site, so the unused accumulators vanish and the rest stay in registers (the build rejects any use
 * of the stack).
 */
typedef struct {
  v128_t a00, a01, a10, a11, a20, a21, a30, a31;
} tile_t;

INLINE tile_t tile_zero(void) {
  const v128_t z = wasm_f32x4_splat(0.0f);
  tile_t t = {z, z, z, z, z, z, z, z};
  return t;
}

/* Row r of the tile is d + r * rowStep (V vectors); rows r >= R are not read. */
INLINE tile_t tile_load(const float *d, int rowStep, int R, int V) {
  tile_t t = tile_zero();
  t.a00 = wasm_v128_load(d);
  if (V > 1) t.a01 = wasm_v128_load(d + 4);
  if (R > 1) t.a10 = wasm_v128_load(d + rowStep);
  if (R > 1 && V > 1) t.a11 = wasm_v128_load(d + rowStep + 4);
  if (R > 2) t.a20 = wasm_v128_load(d + 2 * rowStep);
  if (R > 2 && V > 1) t.a21 = wasm_v128_load(d + 2 * rowStep + 4);
  if (R > 3) t.a30 = wasm_v128_load(d + 3 * rowStep);
  if (R > 3 && V > 1) t.a31 = wasm_v128_load(d + 3 * rowStep + 4);
  return t;
}

INLINE void tile_store(tile_t t, float *d, int rowStep, int R, int V) {
  wasm_v128_store(d, t.a00);
  if (V > 1) wasm_v128_store(d + 4, t.a01);
  if (R > 1) wasm_v128_store(d + rowStep, t.a10);
  if (R > 1 && V > 1) wasm_v128_store(d + rowStep + 4, t.a11);
  if (R > 2) wasm_v128_store(d + 2 * rowStep, t.a20);
  if (R > 2 && V > 1) wasm_v128_store(d + 2 * rowStep + 4, t.a21);
  if (R > 3) wasm_v128_store(d + 3 * rowStep, t.a30);
  if (R > 3 && V > 1) wasm_v128_store(d + 3 * rowStep + 4, t.a31);
}

/* Row r += s[r * sStep] (one float, splat) times the vectors v0 (and v1 when V > 1). */
INLINE tile_t tile_fma(tile_t t, const float *s, int sStep, v128_t v0, v128_t v1, int R, int V) {
  v128_t x = wasm_v128_load32_splat(s);
  t.a00 = wasm_f32x4_add(t.a00, wasm_f32x4_mul(x, v0));
  if (V > 1) t.a01 = wasm_f32x4_add(t.a01, wasm_f32x4_mul(x, v1));
  if (R > 1) {
    x = wasm_v128_load32_splat(s + sStep);
    t.a10 = wasm_f32x4_add(t.a10, wasm_f32x4_mul(x, v0));
    if (V > 1) t.a11 = wasm_f32x4_add(t.a11, wasm_f32x4_mul(x, v1));
  }
  if (R > 2) {
    x = wasm_v128_load32_splat(s + 2 * sStep);
    t.a20 = wasm_f32x4_add(t.a20, wasm_f32x4_mul(x, v0));
    if (V > 1) t.a21 = wasm_f32x4_add(t.a21, wasm_f32x4_mul(x, v1));
  }
  if (R > 3) {
    x = wasm_v128_load32_splat(s + 3 * sStep);
    t.a30 = wasm_f32x4_add(t.a30, wasm_f32x4_mul(x, v0));
    if (V > 1) t.a31 = wasm_f32x4_add(t.a31, wasm_f32x4_mul(x, v1));
  }
  return t;
}

/*
 * Path A (outC a multiple of 4): the block dw[tap, c0 .. c0+R, o0 .. o0+4V] for R <= 4 input
 * channels and V <= 2 vectors of 4 output channels, summed over one image's valid pixels and added
 * to what dw holds (or stored, for the first image). R and V are constants at every call site, so
 * the unused accumulators vanish.
 */
INLINE void tile_co(const float *xb, const float *dyb, float *dwt, int first, int R, int V,
                    int c0, int o0, int inW, int inC, int outW, int outC,
                    int y0, int y1, int x0, int x1, int sh, int sw, int iy0, int ix0) {
  float *d = dwt + c0 * outC + o0;
  tile_t t = first ? tile_zero() : tile_load(d, outC, R, V);
  const int xStep = sw * inC;
  for (int y = y0; y < y1; y++) {
    const float *xp = xb + ((y * sh + iy0) * inW + (x0 * sw + ix0)) * inC + c0;
    const float *dp = dyb + (y * outW + x0) * outC + o0;
    for (int x = x0; x < x1; x++, xp += xStep, dp += outC) {
      const v128_t d0 = wasm_v128_load(dp);
      t = tile_fma(t, xp, 1, d0, V > 1 ? wasm_v128_load(dp + 4) : d0, R, V);
    }
  }
  tile_store(t, d, outC, R, V);
}

#define TILE_CO(R, V) \
  tile_co(xb, dyb, dwt, first, R, V, c0, o0, inW, inC, outW, outC, y0, y1, x0, x1, sh, sw, iy0, ix0)

static void filter_grad_co(const float *x, const float *dy, float *dw, int batch, int inH, int inW,
                           int inC, int outH, int outW, int outC, int kh, int kw, int sh, int sw,
                           int padTop, int padLeft) {
  for (int b = 0; b < batch; b++) {
    const float *xb = x + b * inH * inW * inC;
    const float *dyb = dy + b * outH * outW * outC;
    const int first = b == 0;
    for (int i = 0; i < kh; i++) {
      const int y0 = first_valid(padTop, i, sh);
      const int y1 = end_valid(padTop, i, sh, inH, outH);
      const int iy0 = i - padTop;
      for (int j = 0; j < kw; j++) {
        const int x0 = first_valid(padLeft, j, sw);
        const int x1 = end_valid(padLeft, j, sw, inW, outW);
        const int ix0 = j - padLeft;
        float *dwt = dw + (i * kw + j) * inC * outC;
        // An empty pixel range still runs the tiles once: the first image must write zeros.
        for (int c0 = 0; c0 < inC; c0 += 4) {
          const int r = inC - c0 < 4 ? inC - c0 : 4;
          int o0 = 0;
          for (; o0 + 8 <= outC; o0 += 8) {
            if (r == 4) TILE_CO(4, 2);
            else if (r == 3) TILE_CO(3, 2);
            else if (r == 2) TILE_CO(2, 2);
            else TILE_CO(1, 2);
          }
          if (o0 < outC) {
            if (r == 4) TILE_CO(4, 1);
            else if (r == 3) TILE_CO(3, 1);
            else if (r == 2) TILE_CO(2, 1);
            else TILE_CO(1, 1);
          }
        }
      }
    }
  }
}

/*
 * Path B (inC a multiple of 4, outC not): vectors run along ci instead. The block dw[tap, c0 ..
 * c0+4V, o] for V <= 4 vectors of input channels and one output channel o is summed over the whole
 * batch in registers and stored lane by lane (dw's ci axis has stride outC).
 */
INLINE void tile_ci(const float *x, const float *dy, float *dwt, int V, int c0, int o, int batch,
                    int inH, int inW, int inC, int outH, int outW, int outC, int y0, int y1, int x0,
                    int x1, int sh, int sw, int iy0, int ix0) {
  v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
  const int xStep = sw * inC;
  for (int b = 0; b < batch; b++) {
    const float *xb = x + b * inH * inW * inC;
    const float *dyb = dy + b * outH * outW * outC;
    for (int y = y0; y < y1; y++) {
      const float *xp = xb + ((y * sh + iy0) * inW + (x0 * sw + ix0)) * inC + c0;
      const float *dp = dyb + (y * outW + x0) * outC + o;
      for (int xx = x0; xx < x1; xx++, xp += xStep, dp += outC) {
        v128_t s = wasm_v128_load32_splat(dp);
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(wasm_v128_load(xp), s));
        if (V > 1) a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(wasm_v128_load(xp + 4), s));
        if (V > 2) a2 = wasm_f32x4_add(a2, wasm_f32x4_mul(wasm_v128_load(xp + 8), s));
        if (V > 3) a3 = wasm_f32x4_add(a3, wasm_f32x4_mul(wasm_v128_load(xp + 12), s));
      }
    }
  }
  float *w = dwt + c0 * outC + o;
#define STORE4(a, k)                                   \
  w[(k + 0) * outC] = wasm_f32x4_extract_lane(a, 0); \
  w[(k + 1) * outC] = wasm_f32x4_extract_lane(a, 1); \
  w[(k + 2) * outC] = wasm_f32x4_extract_lane(a, 2); \
  w[(k + 3) * outC] = wasm_f32x4_extract_lane(a, 3);
  STORE4(a0, 0);
  if (V > 1) { STORE4(a1, 4); }
  if (V > 2) { STORE4(a2, 8); }
  if (V > 3) { STORE4(a3, 12); }
#undef STORE4
}

#define TILE_CI(V) \
  tile_ci(x, dy, dwt, V, c0, o, batch, inH, inW, inC, outH, outW, outC, y0, y1, x0, x1, sh, sw, iy0, ix0)

static void filter_grad_ci(const float *x, const float *dy, float *dw, int batch, int inH, int inW,
                           int inC, int outH, int outW, int outC, int kh, int kw, int sh, int sw,
                           int padTop, int padLeft) {
  for (int i = 0; i < kh; i++) {
    const int y0 = first_valid(padTop, i, sh);
    const int y1 = end_valid(padTop, i, sh, inH, outH);
    const int iy0 = i - padTop;
    for (int j = 0; j < kw; j++) {
      const int x0 = first_valid(padLeft, j, sw);
      const int x1 = end_valid(padLeft, j, sw, inW, outW);
      const int ix0 = j - padLeft;
      float *dwt = dw + (i * kw + j) * inC * outC;
      for (int o = 0; o < outC; o++) {
        int c0 = 0;
        for (; c0 + 16 <= inC; c0 += 16) TILE_CI(4);
        const int left = (inC - c0) / 4;
        if (left == 3) TILE_CI(3);
        else if (left == 2) TILE_CI(2);
        else if (left == 1) TILE_CI(1);
      }
    }
  }
}

/*
 * dw [kh, kw, inC, outC] of x [batch, inH, inW, inC] and dy [batch, outH, outW, outC] (all NHWC
 * float32 at byte offsets into the memory). Needs outC % 4 == 0 or inC % 4 == 0; returns 0 when it
 * wrote dw, 1 when neither holds (the caller then takes another route; dw is untouched).
 */
__attribute__((export_name("conv2d_backprop_filter"))) int conv2d_backprop_filter(
    const float *x, const float *dy, float *dw, int batch, int inH, int inW, int inC, int outH,
    int outW, int outC, int kh, int kw, int sh, int sw, int padTop, int padLeft) {
  if (outC % 4 == 0) {
    filter_grad_co(x, dy, dw, batch, inH, inW, inC, outH, outW, outC, kh, kw, sh, sw, padTop, padLeft);
    return 0;
  }
  if (inC % 4 == 0) {
    filter_grad_ci(x, dy, dw, batch, inH, inW, inC, outH, outW, outC, kh, kw, sh, sw, padTop, padLeft);
    return 0;
  }
  return 1;
}

/*
 * The input gradient of the same convolution, as a gather per input pixel:
 *
 *   dx[b, r, c, ci] = sum over taps (i, j) and co of  dy[b, y, x, co] w[i, j, ci, co]
 *
 * over the taps whose output pixel y = (r + padTop - i) / sh, x = (c + padLeft - j) / sw divides
 * exactly and lies inside dy. Vectors run along ci (inC a multiple of 4) over wT[i, j, co, ci], the
 * filter with its channel axes swapped (written into the caller's scratch first). With sw = 1 four
 * neighbouring pixels of a row share every tap, and so every wT load; the rest go one by one.
 * Every dx entry is written exactly once.
 */

/* dx[pixel, c0 .. c0 + 4V] for P pixels (1 or 4, sw = 1 when 4) of one row. */
INLINE void dx_tile(const float *dyb, const float *wT, float *dxp, int P, int V, int c0, int r, int c,
                    int inC, int outH, int outW, int outC, int kh, int kw, int sh, int sw,
                    int padTop, int padLeft) {
  tile_t t = tile_zero();
  for (int i = 0; i < kh; i++) {
    const int ty = r + padTop - i;
    if (ty < 0 || ty % sh != 0) continue;
    const int y = ty / sh;
    if (y >= outH) continue;
    for (int j = 0; j < kw; j++) {
      const int tx = c + padLeft - j;
      if (tx < 0 || tx % sw != 0) continue;
      const int x = tx / sw;
      if (x + P - 1 >= outW) continue; /* P = 4 only where all four are inside */
      const float *dp = dyb + (y * outW + x) * outC;
      const float *wp = wT + (i * kw + j) * outC * inC + c0;
      for (int o = 0; o < outC; o++, dp++, wp += inC) {
        const v128_t w0 = wasm_v128_load(wp);
        t = tile_fma(t, dp, outC, w0, V > 1 ? wasm_v128_load(wp + 4) : w0, P, V);
      }
    }
  }
  tile_store(t, dxp + c0, inC, P, V);
}

#define DX_TILE(P, V) \
  dx_tile(dyb, wT, dxp, P, V, c0, r, c, inC, outH, outW, outC, kh, kw, sh, sw, padTop, padLeft)

/* All of dx's channels at pixels c .. c + P - 1 of row r. */
INLINE void dx_pixels(const float *dyb, const float *wT, float *dxp, int P, int r, int c, int inC,
                      int outH, int outW, int outC, int kh, int kw, int sh, int sw, int padTop,
                      int padLeft) {
  int c0 = 0;
  for (; c0 + 8 <= inC; c0 += 8) DX_TILE(P, 2);
  if (c0 < inC) DX_TILE(P, 1);
}

/* Every pixel of dx, four at a time where sw = 1 and all four see every tap. */
INLINE void dx_all(const float *dy, const float *wT, float *dx, int batch, int inH, int inW, int inC,
                   int outH, int outW, int outC, int kh, int kw, int sh, int sw, int padTop,
                   int padLeft) {
  /* With sw = 1, pixel c reads x = c + padLeft - j for every tap j: all four of c .. c + 3 are
   * inside dy for every tap once c >= kw - 1 - padLeft and c + 3 <= outW - 1 - padLeft. */
  int lo = kw - 1 - padLeft;
  if (lo < 0) lo = 0;
  const int hi = outW - padLeft - 4; /* last start of a block of four */
  for (int b = 0; b < batch; b++) {
    const float *dyb = dy + b * outH * outW * outC;
    for (int r = 0; r < inH; r++) {
      float *row = dx + (b * inH + r) * inW * inC;
      int c = 0;
      if (sw == 1) {
        for (; c < lo && c < inW; c++)
          dx_pixels(dyb, wT, row + c * inC, 1, r, c, inC, outH, outW, outC, kh, kw, sh, sw, padTop, padLeft);
        for (; c <= hi && c + 4 <= inW; c += 4)
          dx_pixels(dyb, wT, row + c * inC, 4, r, c, inC, outH, outW, outC, kh, kw, sh, sw, padTop, padLeft);
      }
      for (; c < inW; c++)
        dx_pixels(dyb, wT, row + c * inC, 1, r, c, inC, outH, outW, outC, kh, kw, sh, sw, padTop, padLeft);
    }
  }
}

/*
 * dx [batch, inH, inW, inC] of dy [batch, outH, outW, outC] and w [kh, kw, inC, outC]; wT is the
 * caller's scratch of kh kw inC outC floats. Needs inC % 4 == 0; returns 0 when it wrote dx, 1 when
 * inC does not suit it (nothing is written).
 */
__attribute__((export_name("conv2d_backprop_input"))) int conv2d_backprop_input(
    const float *dy, const float *w, float *wT, float *dx, int batch, int inH, int inW, int inC,
    int outH, int outW, int outC, int kh, int kw, int sh, int sw, int padTop, int padLeft) {
  if (inC % 4 != 0) return 1;
  for (int t = 0; t < kh * kw; t++)
    for (int ci = 0; ci < inC; ci++)
      for (int o = 0; o < outC; o++) wT[(t * outC + o) * inC + ci] = w[(t * inC + ci) * outC + o];
  if (sh == 1 && sw == 1) {
    /* Constant strides: the tap loop's divisions and remainders fold away. */
    dx_all(dy, wT, dx, batch, inH, inW, inC, outH, outW, outC, kh, kw, 1, 1, padTop, padLeft);
  } else {
    dx_all(dy, wT, dx, batch, inH, inW, inC, outH, outW, outC, kh, kw, sh, sw, padTop, padLeft);
  }
  return 0;
}

/*
 * The forward convolution, as a gather per output pixel:
 *
 *   y[b, r, c, co] = sum over taps (i, j) and ci of  x[b, r sh + i - padTop, c sw + j - padLeft, ci] w[i, j, ci, co]
 *
 * over the taps whose input pixel lies inside x (padding adds nothing, so it is skipped). Vectors
 * run along co (outC a multiple of 4) over w in its own layout [kh, kw, inC, outC]; four
 * neighbouring output pixels of a row share every filter load where all four see every tap.
 * Every y entry is written exactly once.
 */

/* y[pixel .. pixel + P - 1, o0 .. o0 + 4V] for P pixels (1 or 4) of one output row. */
INLINE void y_tile(const float *xb, const float *w, float *yp, int P, int V, int o0, int r, int c,
                   int inH, int inW, int inC, int outC, int kh, int kw, int sh, int sw,
                   int padTop, int padLeft) {
  tile_t t = tile_zero();
  const int pixStep = sw * inC; /* from one output pixel's input to the next one's */
  for (int i = 0; i < kh; i++) {
    const int iy = r * sh + i - padTop;
    if (iy < 0 || iy >= inH) continue;
    for (int j = 0; j < kw; j++) {
      const int ix = c * sw + j - padLeft;
      if (ix < 0 || ix + (P - 1) * sw >= inW) continue; /* P = 4 only where all four are inside */
      const float *xp = xb + (iy * inW + ix) * inC;
      const float *wp = w + (i * kw + j) * inC * outC + o0;
      for (int ci = 0; ci < inC; ci++, xp++, wp += outC) {
        const v128_t w0 = wasm_v128_load(wp);
        t = tile_fma(t, xp, pixStep, w0, V > 1 ? wasm_v128_load(wp + 4) : w0, P, V);
      }
    }
  }
  tile_store(t, yp + o0, outC, P, V);
}

#define Y_TILE(P, V) \
  y_tile(xb, w, yp, P, V, o0, r, c, inH, inW, inC, outC, kh, kw, sh, sw, padTop, padLeft)

/* All of y's channels at output pixels c .. c + P - 1 of row r. */
INLINE void y_pixels(const float *xb, const float *w, float *yp, int P, int r, int c, int inH, int inW,
                     int inC, int outC, int kh, int kw, int sh, int sw, int padTop, int padLeft) {
  int o0 = 0;
  for (; o0 + 8 <= outC; o0 += 8) Y_TILE(P, 2);
  if (o0 < outC) Y_TILE(P, 1);
}

INLINE void y_all(const float *x, const float *w, float *y, int batch, int inH, int inW, int inC,
                  int outH, int outW, int outC, int kh, int kw, int sh, int sw, int padTop,
                  int padLeft) {
  /* Output pixel c reads input columns c sw - padLeft .. c sw - padLeft + kw - 1: all four of
   * c .. c + 3 see every tap once c sw >= padLeft and (c + 3) sw + kw - 1 - padLeft <= inW - 1. */
  const int lo = (padLeft + sw - 1) / sw;
  for (int b = 0; b < batch; b++) {
    const float *xb = x + b * inH * inW * inC;
    for (int r = 0; r < outH; r++) {
      float *row = y + (b * outH + r) * outW * outC;
      int c = 0;
      for (; c < lo && c < outW; c++)
        y_pixels(xb, w, row + c * outC, 1, r, c, inH, inW, inC, outC, kh, kw, sh, sw, padTop, padLeft);
      for (; c + 4 <= outW && (c + 3) * sw + kw - 1 - padLeft <= inW - 1; c += 4)
        y_pixels(xb, w, row + c * outC, 4, r, c, inH, inW, inC, outC, kh, kw, sh, sw, padTop, padLeft);
      for (; c < outW; c++)
        y_pixels(xb, w, row + c * outC, 1, r, c, inH, inW, inC, outC, kh, kw, sh, sw, padTop, padLeft);
    }
  }
}

/*
 * y [batch, outH, outW, outC] of x [batch, inH, inW, inC] and w [kh, kw, inC, outC]. Needs
 * outC % 4 == 0; returns 0 when it wrote y, 1 when outC does not suit it (nothing is written).
 */
__attribute__((export_name("conv2d_forward"))) int conv2d_forward(
    const float *x, const float *w, float *y, int batch, int inH, int inW, int inC, int outH,
    int outW, int outC, int kh, int kw, int sh, int sw, int padTop, int padLeft) {
  if (outC % 4 != 0) return 1;
  if (sh == 1 && sw == 1) {
    y_all(x, w, y, batch, inH, inW, inC, outH, outW, outC, kh, kw, 1, 1, padTop, padLeft);
  } else {
    y_all(x, w, y, batch, inH, inW, inC, outH, outW, outC, kh, kw, sh, sw, padTop, padLeft);
  }
  return 0;
}

/*
 * Winograd's F(2x2, 3x3) for the 3x3, stride-1, 'same' convolutions (padding 1 on every side),
 * the U-Net's commonest: each 2x2 block of output pixels ("tile") is
 *
 *   Y = A^T [ sum over ci of U[ci] (.) V[ci] ] A,   U = G g G^T,   V = B^T d B,
 *
 * with g the 3x3 filter of (ci, co), d the 4x4 input block around the tile (zeros outside x) and
 * (.) the element-wise product of 4x4 matrices:
 *
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 *
 * That is 16 products per (ci, co) for 4 output pixels instead of 36. The sum over ci is 16
 * products of [tiles, inC] by [inC, outC] matrices, one per position p of the 4x4, done four tiles
 * at a time in a register tile (vectors along co), like the direct kernels' four pixels. Rounding:
 * every output is the exact expression's value with each of its inputs perturbed by at most
 * gamma_(inC + 10) relative (4 roundings in U, 2 in V, inC in the dot product, 4 in A^T M A), so
 * |error| <= gamma_(inC + 10) times the same expression with |B|, |G|, |A|, |d| and |g| (the
 * tests check exactly that bound against a float64 sum).
 */

/* g[i][j] of filter (a, b): w [3, 3, inC, outC] as is, or flipped in space with its channel axes
 * swapped (w [3, 3, outC, inC]: the input gradient's filter). */
INLINE float wino_g(const float *w, int i, int j, int a, int b, int inC, int outC, int flip) {
  return flip ? w[((2 - i) * 3 + (2 - j)) * outC * inC + b * inC + a] : w[(i * 3 + j) * inC * outC + a * outC + b];
}

/* U[p][a][b] = (G g G^T)[p] for every (a, b) of inC x outC. */
static void wino_filter(const float *w, float *U, int inC, int outC, int flip) {
  for (int a = 0; a < inC; a++)
    for (int b = 0; b < outC; b++) {
      float t[4][3];
      for (int j = 0; j < 3; j++) {
        const float g0 = wino_g(w, 0, j, a, b, inC, outC, flip), g1 = wino_g(w, 1, j, a, b, inC, outC, flip),
                    g2 = wino_g(w, 2, j, a, b, inC, outC, flip);
        t[0][j] = g0;
        t[1][j] = (g0 + g1 + g2) * 0.5f;
        t[2][j] = (g0 - g1 + g2) * 0.5f;
        t[3][j] = g2;
      }
      for (int r = 0; r < 4; r++) {
        float *u = U + (r * 4) * inC * outC + a * outC + b;
        const int step = inC * outC;
        u[0] = t[r][0];
        u[step] = (t[r][0] + t[r][1] + t[r][2]) * 0.5f;
        u[2 * step] = (t[r][0] - t[r][1] + t[r][2]) * 0.5f;
        u[3 * step] = t[r][2];
      }
    }
}

/* V[p pStride + ci] of tile (b, ty, tx) for every ci (vectors of 4 along ci): B^T d B of the 4x4
 * block of x around it, zeros outside x. (A copy of the loop without the bounds tests, for blocks
 * wholly inside x, measured no faster.) */
INLINE void wino_input(const float *x, float *V, int pStride, int b, int ty, int tx, int H, int W, int inC) {
  const int r0 = 2 * ty - 1, c0 = 2 * tx - 1;
  const int ok0 = r0 >= 0, ok3 = r0 + 3 < H, ok2 = r0 + 2 < H; /* row r0 + 1 is always inside */
  const int k0 = c0 >= 0, k3 = c0 + 3 < W, k2 = c0 + 2 < W;
  const float *base = x + ((b * H + r0) * W + c0) * inC;
  const v128_t z = wasm_f32x4_splat(0.0f);
  for (int ci = 0; ci < inC; ci += 4) {
#define LD(a, okr, c, okc) ((okr) && (okc) ? wasm_v128_load(base + ((a) * W + (c)) * inC + ci) : z)
#define COL(c, okc, e0, e1, e2, e3)                         \
    {                                                       \
      const v128_t d0 = LD(0, ok0, c, okc), d1 = LD(1, 1, c, okc); \
      const v128_t d2 = LD(2, ok2, c, okc), d3 = LD(3, ok3, c, okc); \
      e0 = wasm_f32x4_sub(d0, d2);                          \
      e1 = wasm_f32x4_add(d1, d2);                          \
      e2 = wasm_f32x4_sub(d2, d1);                          \
      e3 = wasm_f32x4_sub(d1, d3);                          \
    }
    v128_t e00, e10, e20, e30, e01, e11, e21, e31, e02, e12, e22, e32, e03, e13, e23, e33;
    COL(0, k0, e00, e10, e20, e30);
    COL(1, 1, e01, e11, e21, e31);
    COL(2, k2, e02, e12, e22, e32);
    COL(3, k3, e03, e13, e23, e33);
#undef COL
#undef LD
#define ROW(a, e0, e1, e2, e3)                                               \
    wasm_v128_store(V + (4 * (a) + 0) * pStride + ci, wasm_f32x4_sub(e0, e2)); \
    wasm_v128_store(V + (4 * (a) + 1) * pStride + ci, wasm_f32x4_add(e1, e2)); \
    wasm_v128_store(V + (4 * (a) + 2) * pStride + ci, wasm_f32x4_sub(e2, e1)); \
    wasm_v128_store(V + (4 * (a) + 3) * pStride + ci, wasm_f32x4_sub(e1, e3));
    ROW(0, e00, e01, e02, e03);
    ROW(1, e10, e11, e12, e13);
    ROW(2, e20, e21, e22, e23);
    ROW(3, e30, e31, e32, e33);
#undef ROW
  }
}

/* y of tile (b, ty, tx) from M[p][co]: A^T M A, the pixels inside y only. */
INLINE void wino_output(const float *M, float *y, int b, int ty, int tx, int H, int W, int outC) {
  const int r = 2 * ty, c = 2 * tx;
  const int down = r + 1 < H, right = c + 1 < W;
  float *base = y + ((b * H + r) * W + c) * outC;
  for (int co = 0; co < outC; co += 4) {
#define M_(p) wasm_v128_load(M + (p) * outC + co)
#define COL(j, s0, s1)                                                                 \
    const v128_t s0 = wasm_f32x4_add(wasm_f32x4_add(M_(j), M_(4 + j)), M_(8 + j));    \
    const v128_t s1 = wasm_f32x4_sub(wasm_f32x4_sub(M_(4 + j), M_(8 + j)), M_(12 + j));
    COL(0, s00, s10);
    COL(1, s01, s11);
    COL(2, s02, s12);
    COL(3, s03, s13);
#undef COL
#undef M_
    wasm_v128_store(base + co, wasm_f32x4_add(wasm_f32x4_add(s00, s01), s02));
    if (right) wasm_v128_store(base + outC + co, wasm_f32x4_sub(wasm_f32x4_sub(s01, s02), s03));
    if (down) {
      wasm_v128_store(base + W * outC + co, wasm_f32x4_add(wasm_f32x4_add(s10, s11), s12));
      if (right) wasm_v128_store(base + (W + 1) * outC + co, wasm_f32x4_sub(wasm_f32x4_sub(s11, s12), s13));
    }
  }
}

/* M[k][p][o0 .. o0 + 4V] for the R tiles k of a group at position p: V[k][p][.] U[p][.][o0 ..]. */
INLINE void wino_gemm(const float *Vp, const float *Up, float *Mp, int inC, int outC, int R, int V) {
  tile_t t = tile_zero();
  for (int ci = 0; ci < inC; ci++, Up += outC) {
    const v128_t u0 = wasm_v128_load(Up);
    t = tile_fma(t, Vp + ci, 16 * inC, u0, V > 1 ? wasm_v128_load(Up + 4) : u0, R, V);
  }
  tile_store(t, Mp, 16 * outC, R, V);
}

/* The tile after (b, ty, tx) in row-major order over [batch][th][tw]. */
#define NEXT_TILE(b, ty, tx) \
  if (++(tx) == tw) {        \
    (tx) = 0;                \
    if (++(ty) == th) {      \
      (ty) = 0;              \
      (b)++;                 \
    }                        \
  }

#define WINO_GEMM(R, V) wino_gemm(Vp, Up + o0, Mp + o0, inC, outC, R, V)

INLINE void wino_group(const float *U, const float *V, float *M, int R, int inC, int outC) {
  for (int p = 0; p < 16; p++) {
    const float *Vp = V + p * inC;
    const float *Up = U + p * inC * outC;
    float *Mp = M + p * outC;
    int o0 = 0;
    for (; o0 + 8 <= outC; o0 += 8) WINO_GEMM(R, 2);
    if (o0 < outC) WINO_GEMM(R, 1);
  }
}

/*
 * y [batch, H, W, outC] of x [batch, H, W, inC] and a 3x3 filter, stride 1, padding 1 (see above):
 * w [3, 3, inC, outC], or with flip = 1 the input gradient's convolution of x = dy with the forward
 * filter w [3, 3, outC, inC] (flipped in space, channels swapped). scratch: the caller's
 * 16 inC outC + 64 inC + 64 outC floats. Needs inC and outC multiples of 4; returns 0 when it wrote
 * y, 1 otherwise (nothing written).
 */
__attribute__((export_name("conv2d_winograd"))) int conv2d_winograd(
    const float *x, const float *w, float *scratch, float *y, int batch, int H, int W, int inC, int outC, int flip) {
  if (inC % 4 != 0 || outC % 4 != 0 || inC <= 0 || outC <= 0) return 1;
  float *U = scratch;
  float *V = U + 16 * inC * outC; /* [4 tiles][16][inC] */
  float *M = V + 64 * inC;        /* [4 tiles][16][outC] */
  wino_filter(w, U, inC, outC, flip);
  const int th = (H + 1) / 2, tw = (W + 1) / 2, tiles = batch * th * tw;
  int b0 = 0, ty0 = 0, tx0 = 0; /* the group's first tile, counted (no divisions) */
  for (int t0 = 0; t0 < tiles; t0 += 4) {
    const int R = tiles - t0 < 4 ? tiles - t0 : 4;
    int b = b0, ty = ty0, tx = tx0;
    for (int k = 0; k < R; k++) {
      wino_input(x, V + k * 16 * inC, inC, b, ty, tx, H, W, inC);
      NEXT_TILE(b, ty, tx);
    }
    if (R == 4) wino_group(U, V, M, 4, inC, outC);
    else if (R == 3) wino_group(U, V, M, 3, inC, outC);
    else if (R == 2) wino_group(U, V, M, 2, inC, outC);
    else wino_group(U, V, M, 1, inC, outC);
    b = b0, ty = ty0, tx = tx0;
    for (int k = 0; k < R; k++) {
      wino_output(M + k * 16 * outC, y, b, ty, tx, H, W, outC);
      NEXT_TILE(b, ty, tx);
    }
    b0 = b, ty0 = ty, tx0 = tx;
  }
  return 0;
}

/*
 * The filter gradient of the same convolutions by Winograd's F(3x3, 2x2): with d the 4x4 block of x
 * around a 2x2 block h of dy (zeros outside either),
 *
 *   dw[., ., ci, co] = G^T [ sum over blocks of (A h A^T) (.) (B^T d B) ] G
 *
 * (the F(2x2, 3x3) matrices in other roles: the 3x3 taps are the output, dy's block the filter).
 * The sum over blocks is 16 products of [inC, blocks] by [blocks, outC] matrices, accumulated in
 * scratch M [16][inC][outC] a chunk of blocks at a time (register tile: 4 input channels by 8
 * output channels), then transformed once. Rounding: depth N + 8 for N blocks (2 roundings in V, 2
 * in A h A^T, N in the sum over blocks, 4 in G^T M G).
 */

/* Blocks transformed per chunk: V [16][WINO_CHUNK][inC] and H [16][WINO_CHUNK][outC] in the scratch
 * (position-major, so that the sum over a chunk's blocks reads both contiguously). */
#define WINO_CHUNK 32
/* Floats between the positions' rows of V and H: without it they sit a multiple of 2 KB apart and
 * a block's 16 stores fall into the same two L1 sets. */
#define WINO_PAD 16

/* H[p pStride + co] of dy's block (b, ty, tx) for every co: A h A^T, zeros outside dy. */
INLINE void wino_dy(const float *dy, float *Hp, int pStride, int b, int ty, int tx, int H, int W, int outC) {
  const int r = 2 * ty, c = 2 * tx;
  const int down = r + 1 < H, right = c + 1 < W;
  const float *base = dy + ((b * H + r) * W + c) * outC;
  const v128_t z = wasm_f32x4_splat(0.0f);
  for (int co = 0; co < outC; co += 4) {
    const v128_t h00 = wasm_v128_load(base + co);
    const v128_t h01 = right ? wasm_v128_load(base + outC + co) : z;
    const v128_t h10 = down ? wasm_v128_load(base + W * outC + co) : z;
    const v128_t h11 = down && right ? wasm_v128_load(base + (W + 1) * outC + co) : z;
    /* rows of A h: (h0), (h0 + h1), (h0 - h1), (-h1), for each column */
    const v128_t r00 = h00, r01 = h01;
    const v128_t r10 = wasm_f32x4_add(h00, h10), r11 = wasm_f32x4_add(h01, h11);
    const v128_t r20 = wasm_f32x4_sub(h00, h10), r21 = wasm_f32x4_sub(h01, h11);
    const v128_t r30 = wasm_f32x4_neg(h10), r31 = wasm_f32x4_neg(h11);
#define ROW(a, u, v)                                                          \
    wasm_v128_store(Hp + (4 * (a) + 0) * pStride + co, u);                    \
    wasm_v128_store(Hp + (4 * (a) + 1) * pStride + co, wasm_f32x4_add(u, v)); \
    wasm_v128_store(Hp + (4 * (a) + 2) * pStride + co, wasm_f32x4_sub(u, v)); \
    wasm_v128_store(Hp + (4 * (a) + 3) * pStride + co, wasm_f32x4_neg(v));
    ROW(0, r00, r01);
    ROW(1, r10, r11);
    ROW(2, r20, r21);
    ROW(3, r30, r31);
#undef ROW
  }
}

/* M[p][ci .. ci + R][o0 .. o0 + 4V] += sum over the n blocks k of V[p][k][ci + r] H[p][k][o0 ..]. */
INLINE void wino_acc(const float *Vp, const float *Hp, float *Mp, int n, int inC, int outC, int R, int V) {
  tile_t t = tile_load(Mp, outC, R, V);
  for (int k = 0; k < n; k++, Vp += inC, Hp += outC) {
    const v128_t h0 = wasm_v128_load(Hp);
    t = tile_fma(t, Vp, 1, h0, V > 1 ? wasm_v128_load(Hp + 4) : h0, R, V);
  }
  tile_store(t, Mp, outC, R, V);
}

/*
 * dw [3, 3, inC, outC] of x [batch, H, W, inC] and dy [batch, H, W, outC] for the 3x3 stride-1
 * convolution with padding 1 (see above). scratch: the caller's 16 inC outC + 16 (WINO_CHUNK
 * (inC + outC) + 2 WINO_PAD) floats (winogradFilterScratchFloats in simd.ts). Needs inC and outC multiples of 4; returns
 * 0 when it wrote dw, 1 otherwise (nothing written).
 */
__attribute__((export_name("conv2d_winograd_filter"))) int conv2d_winograd_filter(
    const float *x, const float *dy, float *scratch, float *dw, int batch, int H, int W, int inC, int outC) {
  if (inC % 4 != 0 || outC % 4 != 0 || inC <= 0 || outC <= 0) return 1;
  float *M = scratch;                          /* [16][inC][outC] */
  const int vStride = WINO_CHUNK * inC + WINO_PAD, hStride = WINO_CHUNK * outC + WINO_PAD;
  float *V = M + 16 * inC * outC;              /* [16][vStride]: [WINO_CHUNK][inC] each */
  float *Hb = V + 16 * vStride;                /* [16][hStride]: [WINO_CHUNK][outC] each */
  for (int i = 0; i < 16 * inC * outC; i++) M[i] = 0.0f;
  const int th = (H + 1) / 2, tw = (W + 1) / 2, blocks = batch * th * tw;
  int b = 0, ty = 0, tx = 0;
  for (int t0 = 0; t0 < blocks; t0 += WINO_CHUNK) {
    const int n = blocks - t0 < WINO_CHUNK ? blocks - t0 : WINO_CHUNK;
    for (int k = 0; k < n; k++) {
      wino_input(x, V + k * inC, vStride, b, ty, tx, H, W, inC);
      wino_dy(dy, Hb + k * outC, hStride, b, ty, tx, H, W, outC);
      NEXT_TILE(b, ty, tx);
    }
    for (int p = 0; p < 16; p++)
      for (int ci = 0; ci < inC; ci += 4) {
        const float *Vp = V + p * vStride + ci;
        const float *Hp = Hb + p * hStride;
        float *Mp = M + (p * inC + ci) * outC;
        int o0 = 0;
        for (; o0 + 8 <= outC; o0 += 8) wino_acc(Vp, Hp + o0, Mp + o0, n, inC, outC, 4, 2);
        if (o0 < outC) wino_acc(Vp, Hp + o0, Mp + o0, n, inC, outC, 4, 1);
      }
  }
  /* dw = G^T M G per (ci, co): rows of G^T: (1, 1/2, 1/2, 0), (0, 1/2, -1/2, 0), (0, 1/2, 1/2, 1) */
  const int step = inC * outC;
  for (int e = 0; e < step; e++) {
    float s[3][4];
    for (int q = 0; q < 4; q++) {
      const float m0 = M[(0 + q) * step + e], m1 = M[(4 + q) * step + e], m2 = M[(8 + q) * step + e],
                  m3 = M[(12 + q) * step + e];
      const float sum = (m1 + m2) * 0.5f, diff = (m1 - m2) * 0.5f;
      s[0][q] = m0 + sum;
      s[1][q] = diff;
      s[2][q] = sum + m3;
    }
    for (int i = 0; i < 3; i++) {
      const float sum = (s[i][1] + s[i][2]) * 0.5f, diff = (s[i][1] - s[i][2]) * 0.5f;
      dw[(i * 3 + 0) * step + e] = s[i][0] + sum;
      dw[(i * 3 + 1) * step + e] = diff;
      dw[(i * 3 + 2) * step + e] = sum + s[i][3];
    }
  }
  return 0;
}
