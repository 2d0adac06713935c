import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import {
  BLUR_SD,
  DigitJudge,
  JudgeManifest,
  JUDGE_FEATURES,
  blurImages,
  formatJudgeReport,
  frechetDistance,
  heldOutHalves,
  judgeAccuracy,
  judgeByClass,
  formatClassJudgeReport,
  judgeDigits,
  judgeDir,
  judgeOutputs,
  loadJudge,
  readJudgeManifest,
  shippedJudge,
  sqrtPsd,
  symmetricEigen,
  traceSqrtProduct,
  uniformNoise,
} from '../lib/data/judge';
import { trainJudge } from '../lib/data/judge-train';
import { loadMnist } from '../lib/data/mnist';
import { meanAndCovariance } from '../lib/data/metrics';
import { Rng } from '../lib/diffusion/random';
import { cholesky, matMul, transpose } from '../lib/diffusion/linalg';
import { useBestBackend } from '../lib/runtime/backend';
import { expectClose, expectNoLeak, expectRejects, take, useCpu } from './support';

const EPS = 2.220446049250313e-16;

/** A random d x d SPD matrix B Bᵀ + shift I from a seeded Rng. */
function randomSpd(d: number, seed: number, shift = 0.1): number[][] {
  const rng = new Rng(seed);
  const b = Array.from({ length: d }, () => Array.from({ length: d }, () => rng.normal()));
  const a = matMul(b, transpose(b));
  for (let i = 0; i < d; i++) a[i][i] += shift;
  return a;
}

function frobenius(a: number[][]): number {
  return Math.sqrt(a.reduce((s, row) => s + row.reduce((t, x) => t + x * x, 0), 0));
}

function maxAbsDiff(a: number[][], b: number[][]): number {
  let m = 0;
  a.forEach((row, i) => row.forEach((x, j) => (m = Math.max(m, Math.abs(x - b[i][j])))));
  return m;
}

// The judge runs on wasm here, on purpose: the cpu backend's Conv2DBackpropFilter takes ~30 s for one
// training step, and its forward pass ~1 min for the 1,005 held-out digits on a loaded 2-core machine.
describe('judge of generated digits (lib/data/judge.ts, on wasm)', function () {
  before(async () => {
    await useBestBackend({ prefer: 'wasm' });
  });
  after(async () => {
    await useCpu();
  });

  describe('symmetric eigendecomposition and PSD square root (float64)', () => {
    it('finds the closed-form eigenvalues 2 - 2 cos(k pi / (d + 1)) of the [-1, 2, -1] tridiagonal matrix', () => {
      const d = 16;
      const a = Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => (i === j ? 2 : Math.abs(i - j) === 1 ? -1 : 0)));
      const { values } = symmetricEigen(a);
      const expected = Array.from({ length: d }, (_, k) => 2 - 2 * Math.cos(((k + 1) * Math.PI) / (d + 1)));
      // Backward-stable Jacobi: eigenvalue errors are a few ulps of the norm (|a|_2 < 4).
      expectClose(values, expected, 1e-13, 0, 'eigenvalues');
    });

    it('returns orthonormal eigenvectors that rebuild a random symmetric matrix', () => {
      const d = 20;
      const rng = new Rng(7);
      const a = Array.from({ length: d }, () => new Array<number>(d).fill(0));
      for (let i = 0; i < d; i++) for (let j = 0; j <= i; j++) a[i][j] = a[j][i] = rng.normal();
      const { values, vectors } = symmetricEigen(a);
      const rebuilt = matMul(matMul(vectors, values.map((v, i) => values.map((_, j) => (i === j ? v : 0)))), transpose(vectors));
      const identity = values.map((_, i) => values.map((_, j) => (i === j ? 1 : 0)));
      // Each entry is a sum of d products of O(1) terms, each rounded: 100 d eps is generous for d = 20.
      expect(maxAbsDiff(rebuilt, a)).to.be.below(100 * d * EPS * frobenius(a));
      expect(maxAbsDiff(matMul(transpose(vectors), vectors), identity)).to.be.below(100 * d * EPS);
      for (let i = 1; i < d; i++) expect(values[i]).to.be.at.least(values[i - 1]);
    });

    it('takes the square root of a diagonal matrix entry by entry', () => {
      const diag = [4, 9, 0.25, 1e-6, 0];
      const a = diag.map((v, i) => diag.map((_, j) => (i === j ? v : 0)));
      const r = sqrtPsd(a);
      expectClose(r.map((row, i) => row[i]), diag.map(Math.sqrt), 1e-15, 1e-14, 'sqrt of the diagonal');
      expect(maxAbsDiff(r, r.map((row, i) => row.map((x, j) => (i === j ? x : 0))))).to.equal(0);
    });

    it('matches the closed-form square root (A + sqrt(det A) I) / sqrt(tr A + 2 sqrt(det A)) of a 2x2 SPD matrix', () => {
      const a = [
        [5, 2],
        [2, 3],
      ];
      // Cayley-Hamilton for R = sqrt(A): R^2 - tr(R) R + det(R) I = 0, with det R = sqrt(det A) and tr R = sqrt(tr A + 2 sqrt(det A)).
      const sd = Math.sqrt(5 * 3 - 2 * 2);
      const t = Math.sqrt(5 + 3 + 2 * sd);
      const expected = [
        [(5 + sd) / t, 2 / t],
        [2 / t, (3 + sd) / t],
      ];
      expectClose(sqrtPsd(a).flat(), expected.flat(), 1e-14, 1e-14, 'sqrt of [[5, 2], [2, 3]]');
    });

    it('squares back to a random 30x30 SPD matrix, and to a singular PSD one of rank 10', () => {
      const full = randomSpd(30, 3);
      const r = sqrtPsd(full);
      expect(maxAbsDiff(matMul(r, r), full) / frobenius(full)).to.be.below(1e-12);
      const rng = new Rng(4);
      const b = Array.from({ length: 30 }, () => Array.from({ length: 10 }, () => rng.normal()));
      const low = matMul(b, transpose(b));
      const rl = sqrtPsd(low);
      // Eigenvalues that should be 0 come out as +-eps |A|; their clamped roots are then at most
      // sqrt(d eps |A|), which squared adds about d eps |A| to each entry.
      expect(maxAbsDiff(matMul(rl, rl), low) / frobenius(low)).to.be.below(1e-10);
    });

    it('refuses an asymmetric matrix and an indefinite one, naming them', () => {
      expect(() => symmetricEigen([[1, 2], [0, 1]], 'cov')).to.throw(/cov must be symmetric/);
      expect(() => sqrtPsd([[1, 0], [0, -1]], 'cov')).to.throw(/cov must be positive semi-definite, got eigenvalue -1/);
    });
  });

  describe('Fréchet distance between Gaussians', () => {
    it('reduces to |m1 - m2|^2 + sum (sqrt a_i - sqrt b_i)^2 for diagonal (commuting) covariances', () => {
      const a = [4, 1, 0.09, 2];
      const b = [1, 1, 0.25, 0];
      const diag = (v: number[]) => v.map((x, i) => v.map((_, j) => (i === j ? x : 0)));
      const m1 = [1, 2, 3, 4];
      const m2 = [0, 2, 5, 4];
      const expected = 1 + 0 + 4 + 0 + a.reduce((s, ai, i) => s + (Math.sqrt(ai) - Math.sqrt(b[i])) ** 2, 0);
      expectClose(frechetDistance({ mean: m1, cov: diag(a) }, { mean: m2, cov: diag(b) }), expected, 1e-14, 1e-14, 'FD');
      expectClose(traceSqrtProduct(diag(a), diag(b)), a.reduce((s, ai, i) => s + Math.sqrt(ai * b[i]), 0), 1e-15, 1e-14, 'tr sqrt');
    });

    it('matches tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2)) for non-commuting 2x2 covariances', () => {
      // S1 S2 has positive eigenvalues l1, l2, and (sqrt l1 + sqrt l2)^2 = tr(S1 S2) + 2 sqrt(det(S1 S2)).
      const s1 = [
        [2, 0.8],
        [0.8, 1],
      ];
      const s2 = [
        [1, -0.5],
        [-0.5, 3],
      ];
      const p = matMul(s1, s2);
      const det1 = 2 - 0.64;
      const det2 = 3 - 0.25;
      const expected = Math.sqrt(p[0][0] + p[1][1] + 2 * Math.sqrt(det1 * det2));
      expect(p[0][1]).to.not.be.closeTo(p[1][0], 0.1); // S1 S2 is not symmetric: the matrices do not commute
      expectClose(traceSqrtProduct(s1, s2), expected, 1e-14, 1e-14, 'tr sqrt(S1 S2)');
      expectClose(traceSqrtProduct(s2, s1), expected, 1e-14, 1e-14, 'tr sqrt(S2 S1)');
    });

    it('estimated from two Gaussian sample sets, converges to |m1-m2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}) within the sampling error', () => {
      const d = 3;
      const s1 = randomSpd(d, 11, 0.5);
      const s2 = randomSpd(d, 12, 0.5);
      const m1 = [0.5, -1, 0];
      const m2 = [0, 0, 1];
      const truth = frechetDistance({ mean: m1, cov: s1 }, { mean: m2, cov: s2 });
      // Independent value of the same closed form, from 3x3 eigen-free pieces: tr sqrt(S1 S2) is the
      // sum of the square roots of the (real, positive) eigenvalues of S1 S2, i.e. of the roots of
      // its characteristic polynomial, found here by bisection.
      const p = matMul(s1, s2);
      const c2 = p[0][0] + p[1][1] + p[2][2];
      const c1 = p[0][0] * p[1][1] - p[0][1] * p[1][0] + p[0][0] * p[2][2] - p[0][2] * p[2][0] + p[1][1] * p[2][2] - p[1][2] * p[2][1];
      const det = (m: number[][]) =>
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
      const c0 = det(p);
      const charPoly = (x: number) => x * x * x - c2 * x * x + c1 * x - c0;
      const roots: number[] = [];
      const grid = 20000;
      for (let k = 0; k < grid; k++) {
        let lo = (c2 * k) / grid;
        let hi = (c2 * (k + 1)) / grid;
        if (Math.sign(charPoly(lo)) === Math.sign(charPoly(hi))) continue;
        for (let it = 0; it < 200; it++) {
          const mid = 0.5 * (lo + hi);
          if (Math.sign(charPoly(mid)) === Math.sign(charPoly(lo))) lo = mid;
          else hi = mid;
        }
        roots.push(0.5 * (lo + hi));
      }
      expect(roots.length, 'three distinct positive eigenvalues of S1 S2').to.equal(3);
      const dm = m1.reduce((s, v, i) => s + (v - m2[i]) ** 2, 0);
      const closed = dm + (s1[0][0] + s1[1][1] + s1[2][2]) + (s2[0][0] + s2[1][1] + s2[2][2]) - 2 * roots.reduce((s, r) => s + Math.sqrt(r), 0);
      expectClose(truth, closed, 1e-9, 1e-9, 'FD from the eigen route vs the characteristic polynomial');

      // Monte Carlo: K replicate estimates from n points per set; their mean must lie within
      // 4 standard errors (s / sqrt K) of the truth, plus the estimator's O(1/n) bias, bounded by
      // 2 tr(S1 + S2) / n (the mean term's bias is exactly tr(S1 + S2) / n; the covariance term's is
      // of the same order).
      const n = 4000;
      const K = 30;
      const l1 = cholesky(s1);
      const l2 = cholesky(s2);
      const rng = new Rng(2024);
      const draw = (m: number[], l: number[][]) => {
        const data = new Float64Array(n * d);
        for (let i = 0; i < n; i++) {
          const z = [rng.normal(), rng.normal(), rng.normal()];
          for (let r = 0; r < d; r++) data[i * d + r] = m[r] + l[r][0] * z[0] + l[r][1] * z[1] + l[r][2] * z[2];
        }
        return meanAndCovariance({ data, dim: d });
      };
      const estimates = Array.from({ length: K }, () => frechetDistance(draw(m1, l1), draw(m2, l2)));
      const mean = estimates.reduce((a, b) => a + b, 0) / K;
      const sd = Math.sqrt(estimates.reduce((a, b) => a + (b - mean) ** 2, 0) / (K - 1));
      const trSum = s1[0][0] + s1[1][1] + s1[2][2] + s2[0][0] + s2[1][1] + s2[2][2];
      expect(Math.abs(mean - truth)).to.be.below((4 * sd) / Math.sqrt(K) + (2 * trSum) / n);
    });

    it('is 0 between a set and itself (to the rounding of a 64-d eigendecomposition)', async () => {
      const judge = shippedJudge();
      const halves = await heldOutHalves();
      const { features } = await judgeOutputs(judge, halves.reference.images.subarray(0, 200 * 784));
      const stats = meanAndCovariance({ data: features, dim: JUDGE_FEATURES });
      const lmax = symmetricEigen(stats.cov).values[JUDGE_FEATURES - 1];
      // Each of the d eigenvalues of S^2 carries an error of about d eps lmax^2, so each root's error
      // is at most sqrt(d eps) lmax; twice the sum over d roots bounds FD(S, S).
      const bound = 2 * JUDGE_FEATURES * Math.sqrt(JUDGE_FEATURES * EPS) * lmax;
      expect(frechetDistance(stats, stats)).to.be.at.most(bound);
      expect(bound).to.be.below(1e-3 * stats.cov.reduce((s, row, i) => s + row[i], 0)); // the bound is itself small
    });
  });

  describe('digit judge (shipped weights in lib/data/judge)', () => {
    let manifest: JudgeManifest;
    before(() => {
      manifest = readJudgeManifest();
    });

    it('finds its weights from lib/ and from the compiled dist/lib alike', () => {
      const root = path.resolve(__dirname, '..');
      expect(judgeDir(path.join(root, 'lib', 'data'))).to.equal(path.join(root, 'lib', 'data', 'judge'));
      expect(judgeDir(path.join(root, 'dist', 'lib', 'data'))).to.equal(path.join(root, 'lib', 'data', 'judge'));
      expect(() => loadJudge(path.join(root, 'test'))).to.throw(/judge manifest .* does not exist/);
    });

    it('re-measures its held-out accuracy: >= the manifest value minus 3 binomial standard errors, and >= 0.95', async () => {
      const { images, labels } = loadMnist({ split: 'test' });
      const data = (await images.data()) as Float32Array;
      images.dispose();
      expect(labels.length).to.equal(manifest.heldOut.count);
      const judge = shippedJudge();
      const r = await judgeAccuracy(judge, data, labels);
      const se = (p: number) => Math.sqrt((p * (1 - p)) / labels.length);
      // Same digits as the manifest's measurement, on another backend (cpu here, the training's
      // backend there): only float32 rounding differs, far inside 3 standard errors (~0.013).
      expect(r.accuracy).to.be.at.least(manifest.heldOut.accuracy - 3 * se(manifest.heldOut.accuracy));
      expect(r.accuracy).to.be.at.least(0.95);
      // Real digits are called with p >= 0.9 about as often as when the weights were made; 0.9 is the
      // floor below which a "p >= 0.9" score could not tell a good generator from a fair one.
      expect(r.confidentShare).to.be.at.least(manifest.heldOut.confidentShare - 3 * se(manifest.heldOut.confidentShare));
      expect(r.confidentShare).to.be.at.least(0.9);
    });

    it('calls real held-out digits confidently, noise and blurred digits not, and ranks FD real < blurred < noise', async () => {
      const judge = shippedJudge();
      const halves = await heldOutHalves();
      const n = 200;
      const report = await expectNoLeak(() => judgeDigits(halves.others.images.subarray(0, n * 784), { judge }), 'judgeDigits');
      const { real, blurred, noise } = report.references;
      // The samples here are exactly the real reference's digits, so they must score the same.
      expect(report.samples).to.deep.equal(real);
      expect(real.n).to.equal(n);
      expect(report.referenceCount).to.equal(halves.reference.labels.length);
      // With 200 real digits the confident share's standard error is <= 0.035; the manifest's 1,005
      // digits give ~0.94, and 0.94 - 3 x 0.035 > 0.8.
      expect(real.confidentShare).to.be.at.least(0.8);
      expect(real.classes).to.equal(10);
      expect(real.confidentClasses).to.equal(10);
      // The judge was trained to spread its probability on non-digits (outlier exposure, judge-train):
      // at most 2 % (4 of 200) of uniform noise may pass; before outlier exposure it was 100 % (all "8").
      expect(noise.confidentShare).to.be.at.most(0.02);
      // Blurred (sd 2 px) digits are blobs: a judge that took half of them for digits would not tell
      // a blob from a digit. (Measured ~2 % at training time.)
      expect(blurred.confidentShare).to.be.below(0.5);
      expect(blurred.fd).to.be.above(real.fd);
      expect(noise.fd).to.be.above(real.fd);
      // The floor is the held-out half against the other half: its FD is the estimator's bias at n,
      // small against the bad references (a factor 10 leaves room for the n = 200 bias).
      expect(10 * real.fd).to.be.below(blurred.fd);
      const table = formatJudgeReport(report, 'held-out digits');
      expect(table).to.contain(`ref: blurred (sd ${BLUR_SD} px)`);
      expect(table).to.contain(`${(100 * real.confidentShare).toFixed(1)} %`);
      expect(table.split('\n')).to.have.length(7);
    });

    it('judgeByClass: real held-out digits asked for as their own labels score the judge\'s per-class accuracy, and their FD is the real-digit floor', async () => {
      const judge = shippedJudge();
      const halves = await heldOutHalves();
      // The first 20 digits of each class from the "others" half, grouped by class: exactly the set the
      // report's real-digit floor uses for that class, so the two FDs must be equal.
      const per = 20;
      const idx: number[] = [];
      for (let k = 0; k < 10; k++) idx.push(...Array.from(halves.others.labels.keys()).filter((i) => halves.others.labels[i] === k).slice(0, per));
      const images = new Float32Array(idx.length * 784);
      idx.forEach((src, j) => images.set(halves.others.images.subarray(src * 784, (src + 1) * 784), j * 784));
      const requested = Int32Array.from(idx.map((i) => halves.others.labels[i]));
      const r = await expectNoLeak(() => judgeByClass(images, requested, { judge }), 'judgeByClass');
      expect(r.classes.map((c) => [c.requested, c.n])).to.deep.equal(Array.from({ length: 10 }, (_, k) => [k, per]));
      // Per class, the share "as requested" is the judge's accuracy on those digits, computed independently.
      for (let k = 0; k < 10; k++) {
        const acc = await judgeAccuracy(judge, images.subarray(k * per * 784, (k + 1) * per * 784), requested.subarray(k * per, (k + 1) * per));
        expect(r.classes[k].hitShare, `class ${k}`).to.equal(acc.accuracy);
        expect(r.classes[k].histogram.reduce((a, b) => a + b, 0)).to.equal(per);
        expect(r.classes[k].fd, `class ${k}: samples = the floor's own digits`).to.equal(r.classes[k].realFd);
      }
      expect(r.hitShare).to.be.closeTo(r.classes.reduce((a, c) => a + c.hitShare, 0) / 10, 1e-12);
      expect(r.minHitShare).to.equal(Math.min(...r.classes.map((c) => c.hitShare)));
      // 200 real digits at the judge's 98 % accuracy: at least 90 % overall (3 binomial se below 0.98 is 0.95).
      expect(r.hitShare).to.be.at.least(0.9);
      expect(r.referencePerClass.reduce((a, b) => a + b, 0)).to.equal(halves.reference.labels.length);
      // Blurred digits asked for as their labels: the judge no longer finds most of them, and they sit far from their class.
      const blurred = await judgeByClass(blurImages(images, BLUR_SD), requested, { judge });
      expect(blurred.hitShare).to.be.below(r.hitShare);
      for (let k = 0; k < 10; k++) expect(blurred.classes[k].fd, `class ${k}`).to.be.above(r.classes[k].fd);
      const table = formatClassJudgeReport(r, 'held-out');
      expect(table.split('\n')).to.have.length(12);
      expect(table).to.contain(`${(100 * r.hitShare).toFixed(1)} % classified as requested`);
    });

    it('judgeByClass refuses a requested list of the wrong length, a class out of range, and more samples of a class than held-out digits to compare with', async () => {
      const judge = shippedJudge();
      const images = uniformNoise(4, 2);
      await expectRejects(() => judgeByClass(images, [1, 2, 3], { judge }), /requested must hold one class per image \(4\), got 3/);
      await expectRejects(() => judgeByClass(images, [1, 1, 10, 1], { judge }), /requested\[2\] must be an integer in \[0, 9\], got 10/);
      await expectRejects(() => judgeByClass(images, [1, 1, 1, 2], { judge }), /class 2 must have between 2 and \d+ samples/);
      await expectRejects(() => judgeByClass(uniformNoise(200, 2), new Array(200).fill(3), { judge }), /class 3 must have between 2 and \d+ samples .* got 200/);
    });

    it('measures the noise reference on as many images as the samples, and refuses bad images naming the problem', async () => {
      const judge = shippedJudge();
      const report = await judgeDigits(uniformNoise(16, 5), { judge, seed: 1 });
      expect(report.samples.n).to.equal(16);
      expect(report.references.noise.n).to.equal(16);
      expect(report.samples.confidentShare).to.be.at.most(report.references.real.confidentShare);
      await expectRejects(() => judgeDigits(new Float32Array(784), { judge }), /images must hold at least 2 images \(a covariance needs 2\), got 1/);
      const bad = new Float32Array(2 * 784).fill(0);
      bad[784 + 5] = 1.5;
      await expectRejects(() => judgeDigits(bad, { judge }), /images must be finite and in \[-1, 1\], got 1.5 at image 1, pixel 5/);
      bad[784 + 5] = NaN;
      await expectRejects(() => judgeDigits(bad, { judge }), /got NaN at image 1/);
      const wrong = tf.zeros([2, 28, 28, 3]) as tf.Tensor4D;
      await expectRejects(() => judgeDigits(wrong, { judge }), /images must have shape \[n, 28, 28, 1\], got \[2,28,28,3\]/);
      wrong.dispose();
      await expectRejects(() => judgeDigits(new Float32Array(100), { judge }), /positive multiple of 784/);
    });

    it('loads and disposes without leaking tensors', async () => {
      await expectNoLeak(() => loadJudge().dispose(), 'loadJudge + dispose');
    });
  });

  describe('judge training and blur reference', () => {
    it('reproduces the same weights bit for bit from the same seed, and others from another seed', async () => {
      const { images, labels } = loadMnist({ split: 'train', limit: 64 });
      const data = (await images.data()) as Float32Array;
      images.dispose();
      const run = async (seed: number) => {
        const { judge, steps } = await trainJudge({ images: data, labels, seed, batchSize: 16, maxSteps: 3 });
        expect(steps).to.equal(3);
        const w = await Promise.all(judge.variables.map((v) => v.data()));
        judge.dispose();
        return w.map((x) => Array.from(x));
      };
      const [a, b, c] = await expectNoLeak(async () => [await run(1), await run(1), await run(2)], 'trainJudge');
      expect(a).to.deep.equal(b);
      expect(a).to.not.deep.equal(c);
      await expectRejects(() => trainJudge({ images: data, labels, batchSize: 100 }), /batchSize must be at most the 64 images, got 100/);
    });

    it('blurs with a normalised Gaussian: a lone pixel spreads into exp(-r^2 / 2 sd^2) / (2 pi sd^2)', () => {
      // Work in y = x + 1 (background 0) so the blur is linear with zero padding.
      const img = new Float32Array(784).fill(-1);
      img[14 * 28 + 14] = 1; // y = 2 at the centre
      const out = blurImages(img, BLUR_SD);
      const sd = BLUR_SD;
      const radius = Math.ceil(3 * sd);
      // Discrete weights: the continuous density sampled at integers and renormalised over |k| <= radius.
      let z = 0;
      for (let k = -radius; k <= radius; k++) z += Math.exp(-(k * k) / (2 * sd * sd));
      for (const [dr, dc] of [[0, 0], [1, 0], [2, 1], [3, 3], [6, 0], [7, 0]]) {
        const expected = Math.abs(dr) > radius || Math.abs(dc) > radius ? 0 : (2 * Math.exp(-(dr * dr + dc * dc) / (2 * sd * sd))) / (z * z);
        expectClose(out[(14 + dr) * 28 + 14 + dc] + 1, expected, 1e-6, 0, `blur at offset (${dr}, ${dc})`);
      }
      const flat = blurImages(new Float32Array(784).fill(-1), sd);
      expectClose(flat, new Float32Array(784).fill(-1), 1e-6, 0, 'background stays -1');
    });

    it('builds a fresh judge whose forward pass gives [n, 10] logits and [n, 64] non-negative features', () => {
      const judge = new DigitJudge(3);
      const x = tf.zeros([2, 28, 28, 1]) as tf.Tensor4D;
      const out = judge.apply(x);
      expect(out.logits.shape).to.deep.equal([2, 10]);
      expect(out.features.shape).to.deep.equal([2, JUDGE_FEATURES]);
      expect(Math.min(...take(tf.min(out.features)))).to.be.at.least(0);
      tf.dispose([x, out.logits, out.features]);
      judge.dispose();
      expect(() => judge.apply(x)).to.throw(/after dispose/);
    });
  });
});
