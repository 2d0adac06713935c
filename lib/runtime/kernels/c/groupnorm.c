/*
 * GroupNorm with its per-channel scale and shift, a per-(example, channel) bias before it and the
 * SiLU after it, forward and backward, in wasm SIMD over tfjs-wasm's heap (the same kernels as
 * lib/runtime/kernels/groupnorm.ts's JavaScript loops, which remain for channel counts that are not
 * a multiple of 4). For x [N, P pixels, C] (NHWC), G groups of C/G channels, per example n and group g:
 *
 *   z = x + bias[n, c],  mean, var = moments of z over (pixels, the group's channels) (biased),
 *   rstd = 1 / sqrt(var + eps),  xhat = (z - mean) rstd,  u = gamma[c] xhat + beta[c],
 *   s = sigmoid(u),  y = u s.
 *
 * Backward, for dy: du = dy s (1 + u (1 - s)); dgamma = sum du xhat and dbeta = sum du over
 * (N, pixels); dz = rstd (gamma du - mean_g(gamma du) - xhat mean_g(gamma du xhat)); dx = dz;
 * dbias[n, c] = sum of dz over the pixels.
 *
 * Vectors run along the channels (C a multiple of 4). Sums are per channel first: float32 partial
 * sums over blocks of BLOCK pixels, added into float64 totals, then per group in float64. The mean
 * is taken first and the squared deviations summed in a second pass (no cancellation for a large
 * mean). The backward pass recomputes xhat and du instead of storing them.
 *
 * Like conv2d.c, the module owns no memory: the caller passes scratch space (facc: 8 C floats,
 * dacc: 4 C doubles) inside the heap, and the code keeps no arrays on a stack.
 */
#include <wasm_simd128.h>

#define INLINE static inline __attribute__((always_inline))
#define BLOCK 64

/* e^x for float32 lanes: Cody-Waite reduction by ln 2 and Cephes' degree-6 polynomial (about 1 ulp),
 * x clamped to [-87.3, 88.3] so that 2^n stays a normal float. */
INLINE v128_t exp4(v128_t x) {
  x = wasm_f32x4_min(wasm_f32x4_max(x, wasm_f32x4_splat(-87.3f)), wasm_f32x4_splat(88.3f));
  const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.9875691500e-4f);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.3981999507e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(8.3334519073e-3f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(4.1665795894e-2f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.6666665459e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(5.0000001201e-1f));
  p = wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(p, r), r), wasm_f32x4_add(r, wasm_f32x4_splat(1.0f)));
  const v128_t e = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(p, e);
}

/* sigmoid(u) = 1 / (1 + e^-u). */
INLINE v128_t sigmoid4(v128_t u) {
  const v128_t one = wasm_f32x4_splat(1.0f);
  return wasm_f32x4_div(one, wasm_f32x4_add(one, exp4(wasm_f32x4_neg(u))));
}

/* tot[c] += part[c] (float64 += float32) for C channels, and part[c] = 0. */
INLINE void flush(float *part, double *tot, int C) {
  for (int c = 0; c < C; c++) {
    tot[c] += (double)part[c];
    part[c] = 0.0f;
  }
}

/*
 * y, mean [N, G], rstd [N, G] and s = sigmoid(u) [N, P, C] (kept for the backward pass) of x
 * [N, P, C], bias [N, C], gamma [C], beta [C]. Returns 0, or 1 when C is not a multiple of 4
 * (nothing written).
 */
__attribute__((export_name("group_norm_silu"))) int group_norm_silu(
    const float *x, const float *bias, const float *gamma, const float *beta, float *y, float *meanOut,
    float *rstdOut, float *sOut, float *facc, double *dacc, int N, int P, int C, int G, double eps) {
  if (C % 4 != 0 || G < 1 || C % G != 0) return 1;
  const int cg = C / G;
  const double count = (double)P * cg;
  float *part = facc;          /* C: float32 partial sums */
  float *scale = facc + C;     /* C: gamma rstd, per channel */
  float *shift = facc + 2 * C; /* C: bias - mean, then beta + scale (bias - mean) */
  double *tot = dacc;          /* C: float64 per-channel totals */
  for (int n = 0; n < N; n++) {
    const float *xn = x + n * P * C;
    const float *bn = bias + n * C;
    /* Pass 1: per-channel sums of x. */
    for (int c = 0; c < C; c++) part[c] = 0.0f, tot[c] = 0.0;
    for (int p0 = 0; p0 < P; p0 += BLOCK) {
      const int p1 = p0 + BLOCK < P ? p0 + BLOCK : P;
      for (int p = p0; p < p1; p++) {
        const float *row = xn + p * C;
        for (int c = 0; c < C; c += 4) wasm_v128_store(part + c, wasm_f32x4_add(wasm_v128_load(part + c), wasm_v128_load(row + c)));
      }
      flush(part, tot, C);
    }
    for (int g = 0; g < G; g++) {
      double s = 0.0;
      for (int c = g * cg; c < (g + 1) * cg; c++) s += tot[c] + (double)P * bn[c];
      const double mean = s / count;
      meanOut[n * G + g] = (float)mean;
      for (int c = g * cg; c < (g + 1) * cg; c++) shift[c] = (float)((double)bn[c] - mean);
    }
    /* Pass 2: per-channel sums of (z - mean)^2. */
    for (int c = 0; c < C; c++) tot[c] = 0.0;
    for (int p0 = 0; p0 < P; p0 += BLOCK) {
      const int p1 = p0 + BLOCK < P ? p0 + BLOCK : P;
      for (int p = p0; p < p1; p++) {
        const float *row = xn + p * C;
        for (int c = 0; c < C; c += 4) {
          const v128_t d = wasm_f32x4_add(wasm_v128_load(row + c), wasm_v128_load(shift + c));
          wasm_v128_store(part + c, wasm_f32x4_add(wasm_v128_load(part + c), wasm_f32x4_mul(d, d)));
        }
      }
      flush(part, tot, C);
    }
    for (int g = 0; g < G; g++) {
      double v = 0.0;
      for (int c = g * cg; c < (g + 1) * cg; c++) v += tot[c];
      const double rstd = 1.0 / __builtin_sqrt(v / count + eps);
      rstdOut[n * G + g] = (float)rstd;
      /* u = gamma (z - mean) rstd + beta = scale x + shift */
      for (int c = g * cg; c < (g + 1) * cg; c++) {
        const double sc = (double)gamma[c] * rstd;
        scale[c] = (float)sc;
        shift[c] = (float)((double)beta[c] + sc * (double)shift[c]);
      }
    }
    /* Pass 3: u, s, y. */
    float *yn = y + n * P * C;
    float *sn = sOut + n * P * C;
    for (int p = 0; p < P; p++) {
      const int at = p * C;
      for (int c = 0; c < C; c += 4) {
        const v128_t u = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(scale + c), wasm_v128_load(xn + at + c)), wasm_v128_load(shift + c));
        const v128_t s = sigmoid4(u);
        wasm_v128_store(sn + at + c, s);
        wasm_v128_store(yn + at + c, wasm_f32x4_mul(u, s));
      }
    }
  }
  return 0;
}

/*
 * dx [N, P, C], dbias [N, C], dgamma [C], dbeta [C] for dy, with x, bias, gamma, beta, the forward
 * pass's mean and rstd [N, G] and s [N, P, C]. Returns 0, or 1 when C is not a multiple of 4.
 */
__attribute__((export_name("group_norm_silu_grad"))) int group_norm_silu_grad(
    const float *dy, const float *x, const float *bias, const float *gamma, const float *beta,
    const float *mean, const float *rstd, const float *sig, float *dx, float *dbias, float *dgamma,
    float *dbeta, float *facc, double *dacc, int N, int P, int C, int G) {
  if (C % 4 != 0 || G < 1 || C % G != 0) return 1;
  const int cg = C / G;
  const double count = (double)P * cg;
  float *partA = facc;         /* C: sum du (float32 block) */
  float *partB = facc + C;     /* C: sum du xhat */
  float *cmean = facc + 2 * C; /* C: mean - bias, per channel (xhat = (x - cmean) rstd) */
  float *crstd = facc + 3 * C; /* C: rstd, per channel */
  float *m1 = facc + 4 * C;    /* C: mean_g(gamma du), per channel */
  float *m2 = facc + 5 * C;    /* C: mean_g(gamma du xhat), per channel */
  double *totA = dacc, *totB = dacc + C, *dg = dacc + 2 * C, *db = dacc + 3 * C;
  for (int c = 0; c < C; c++) dg[c] = 0.0, db[c] = 0.0;
  for (int n = 0; n < N; n++) {
    const int base = n * P * C;
    for (int c = 0; c < C; c++) {
      const int g = c / cg;
      cmean[c] = (float)((double)mean[n * G + g] - (double)bias[n * C + c]);
      crstd[c] = rstd[n * G + g];
      partA[c] = partB[c] = 0.0f;
      totA[c] = totB[c] = 0.0;
    }
    /* Pass 1: sum du and sum du xhat per channel. */
    for (int p0 = 0; p0 < P; p0 += BLOCK) {
      const int p1 = p0 + BLOCK < P ? p0 + BLOCK : P;
      for (int p = p0; p < p1; p++) {
        const int at = base + p * C;
        for (int c = 0; c < C; c += 4) {
          const v128_t h = wasm_f32x4_mul(wasm_f32x4_sub(wasm_v128_load(x + at + c), wasm_v128_load(cmean + c)), wasm_v128_load(crstd + c));
          const v128_t u = wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(gamma + c), h), wasm_v128_load(beta + c));
          const v128_t s = wasm_v128_load(sig + at + c);
          const v128_t one = wasm_f32x4_splat(1.0f);
          const v128_t du = wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(dy + at + c), s), wasm_f32x4_add(one, wasm_f32x4_mul(u, wasm_f32x4_sub(one, s))));
          wasm_v128_store(partA + c, wasm_f32x4_add(wasm_v128_load(partA + c), du));
          wasm_v128_store(partB + c, wasm_f32x4_add(wasm_v128_load(partB + c), wasm_f32x4_mul(du, h)));
        }
      }
      flush(partA, totA, C);
      flush(partB, totB, C);
    }
    for (int g = 0; g < G; g++) {
      double a = 0.0, b = 0.0;
      for (int c = g * cg; c < (g + 1) * cg; c++) {
        a += (double)gamma[c] * totA[c];
        b += (double)gamma[c] * totB[c];
        db[c] += totA[c];
        dg[c] += totB[c];
      }
      for (int c = g * cg; c < (g + 1) * cg; c++) m1[c] = (float)(a / count), m2[c] = (float)(b / count);
    }
    /* Pass 2: dx, and dbias as its per-channel sum. */
    for (int c = 0; c < C; c++) totA[c] = 0.0;
    for (int p0 = 0; p0 < P; p0 += BLOCK) {
      const int p1 = p0 + BLOCK < P ? p0 + BLOCK : P;
      for (int p = p0; p < p1; p++) {
        const int at = base + p * C;
        for (int c = 0; c < C; c += 4) {
          const v128_t g4 = wasm_v128_load(gamma + c);
          const v128_t r4 = wasm_v128_load(crstd + c);
          const v128_t h = wasm_f32x4_mul(wasm_f32x4_sub(wasm_v128_load(x + at + c), wasm_v128_load(cmean + c)), r4);
          const v128_t u = wasm_f32x4_add(wasm_f32x4_mul(g4, h), wasm_v128_load(beta + c));
          const v128_t s = wasm_v128_load(sig + at + c);
          const v128_t one = wasm_f32x4_splat(1.0f);
          const v128_t du = wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(dy + at + c), s), wasm_f32x4_add(one, wasm_f32x4_mul(u, wasm_f32x4_sub(one, s))));
          const v128_t inner = wasm_f32x4_sub(wasm_f32x4_sub(wasm_f32x4_mul(du, g4), wasm_v128_load(m1 + c)), wasm_f32x4_mul(h, wasm_v128_load(m2 + c)));
          const v128_t dz = wasm_f32x4_mul(r4, inner);
          wasm_v128_store(dx + at + c, dz);
          wasm_v128_store(partA + c, wasm_f32x4_add(wasm_v128_load(partA + c), dz));
        }
      }
      flush(partA, totA, C);
    }
    for (int c = 0; c < C; c++) dbias[n * C + c] = (float)totA[c];
  }
  for (int c = 0; c < C; c++) dgamma[c] = (float)dg[c], dbeta[c] = (float)db[c];
  return 0;
}
