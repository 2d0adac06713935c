/**
 * Small dense float64 linear algebra on plain number[][] matrices (row-major, D x D with D in the
 * tens at most): Cholesky factors and what they give cheaply — solves, inverses and log-determinants
 * of symmetric positive-definite (SPD) matrices. The Gaussian-mixture sampler and the exact optimal
 * noise predictor eps* (docs/equations.md#optimal-eps) need these in float64, where tf's float32
 * would lose the small eigenvalues of abar_t S + (1 - abar_t) I.
 */

/** Throws unless `a` is a non-empty square matrix of finite numbers; returns its size D. */
export function checkSquare(name: string, a: number[][]): number {
  if (!Array.isArray(a) || a.length === 0) {
    throw new Error(`${name} must be a non-empty square matrix (number[][]), got ${describe(a)}`);
  }
  const d = a.length;
  for (let i = 0; i < d; i++) {
    const row = a[i];
    if (!Array.isArray(row) || row.length !== d) {
      throw new Error(`${name} must be a ${d}x${d} square matrix, but row ${i} has ${Array.isArray(row) ? row.length : describe(row)} entries`);
    }
    for (let j = 0; j < d; j++) {
      if (typeof row[j] !== 'number' || !Number.isFinite(row[j])) {
        throw new Error(`${name} must contain only finite numbers, got ${String(row[j])} at [${i}][${j}]`);
      }
    }
  }
  return d;
}

/**
 * Throws unless `a` is symmetric to within `rtol` of its largest entry: the SPD routines read only
 * the lower triangle, so an asymmetric input would otherwise be silently half-ignored.
 */
export function checkSymmetric(name: string, a: number[][], rtol = 1e-10): void {
  const d = checkSquare(name, a);
  let scale = 0;
  for (const row of a) for (const v of row) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < i; j++) {
      if (Math.abs(a[i][j] - a[j][i]) > rtol * scale) {
        throw new Error(`${name} must be symmetric, got ${name}[${i}][${j}] = ${a[i][j]} but ${name}[${j}][${i}] = ${a[j][i]}`);
      }
    }
  }
}

/**
 * Lower-triangular L with L Lᵀ = a, reading only a's lower triangle. Throws, naming the pivot, when
 * a is not positive-definite (a pivot <= 0), which is the cheapest reliable SPD test there is.
 */
export function cholesky(a: number[][], name = 'matrix'): number[][] {
  const d = checkSquare(name, a);
  const L: number[][] = Array.from({ length: d }, () => new Array<number>(d).fill(0));
  for (let j = 0; j < d; j++) {
    let pivot = a[j][j];
    for (let k = 0; k < j; k++) pivot -= L[j][k] * L[j][k];
    if (!(pivot > 0)) {
      throw new Error(
        `${name} must be symmetric positive-definite, but its Cholesky factorisation failed at pivot ${j} (value ${pivot} <= 0)`,
      );
    }
    const ljj = Math.sqrt(pivot);
    L[j][j] = ljj;
    for (let i = j + 1; i < d; i++) {
      let s = a[i][j];
      for (let k = 0; k < j; k++) s -= L[i][k] * L[j][k];
      L[i][j] = s / ljj;
    }
  }
  return L;
}

/** x with L Lᵀ x = b, for a Cholesky factor L (forward then back substitution). */
export function choleskySolve(L: number[][], b: ArrayLike<number>): number[] {
  const d = L.length;
  if (b.length !== d) throw new Error(`b must have length ${d} to match L, got ${b.length}`);
  const y = new Array<number>(d);
  for (let i = 0; i < d; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= L[i][k] * y[k];
    y[i] = s / L[i][i];
  }
  const x = new Array<number>(d);
  for (let i = d - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < d; k++) s -= L[k][i] * x[k];
    x[i] = s / L[i][i];
  }
  return x;
}

/** x with a x = b for SPD a (via Cholesky; throws if a is not SPD). */
export function solveSpd(a: number[][], b: ArrayLike<number>): number[] {
  return choleskySolve(cholesky(a, 'a'), b);
}

/** a⁻¹ for SPD a, symmetrised so that rounding never makes it visibly asymmetric. */
export function invertSpd(a: number[][]): number[][] {
  const L = cholesky(a, 'a');
  const d = L.length;
  const inv: number[][] = [];
  for (let j = 0; j < d; j++) {
    const e = new Array<number>(d).fill(0);
    e[j] = 1;
    inv.push(choleskySolve(L, e)); // column j; a⁻¹ is symmetric, so it is also row j
  }
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < i; j++) {
      const m = 0.5 * (inv[i][j] + inv[j][i]);
      inv[i][j] = m;
      inv[j][i] = m;
    }
  }
  return inv;
}

/** log det a for SPD a, as 2 Σ log L_ii: never forms det a, which under- or overflows for large D. */
export function logDetSpd(a: number[][]): number {
  return logDetFromCholesky(cholesky(a, 'a'));
}

/** log det (L Lᵀ) = 2 Σ log L_ii for a Cholesky factor L. */
export function logDetFromCholesky(L: number[][]): number {
  let s = 0;
  for (let i = 0; i < L.length; i++) s += Math.log(L[i][i]);
  return 2 * s;
}

/** a x for a matrix a (rows x cols) and a vector x of length cols. */
export function matVec(a: number[][], x: ArrayLike<number>): number[] {
  return a.map((row, i) => {
    if (row.length !== x.length) throw new Error(`matVec: row ${i} of a has ${row.length} entries but x has ${x.length}`);
    let s = 0;
    for (let k = 0; k < row.length; k++) s += row[k] * x[k];
    return s;
  });
}

/** a b for conforming matrices. */
export function matMul(a: number[][], b: number[][]): number[][] {
  const inner = b.length;
  const cols = inner === 0 ? 0 : b[0].length;
  return a.map((row, i) => {
    if (row.length !== inner) throw new Error(`matMul: row ${i} of a has ${row.length} entries but b has ${inner} rows`);
    const out = new Array<number>(cols).fill(0);
    for (let k = 0; k < inner; k++) {
      const aik = row[k];
      const bk = b[k];
      for (let j = 0; j < cols; j++) out[j] += aik * bk[j];
    }
    return out;
  });
}

/** aᵀ. */
export function transpose(a: number[][]): number[][] {
  const rows = a.length;
  const cols = rows === 0 ? 0 : a[0].length;
  return Array.from({ length: cols }, (_, j) => Array.from({ length: rows }, (_, i) => a[i][j]));
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  return v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v);
}
