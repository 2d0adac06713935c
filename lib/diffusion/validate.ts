/**
 * Argument checks for the public boundary. Each throws an Error that names the parameter, the value
 * it got and the valid range, so that bad input never turns into a silent NaN further down.
 */
import * as tf from '@tensorflow/tfjs';

/** Throws unless `value` is an integer in [min, max]. */
export function checkInteger(name: string, value: number, min: number, max = Infinity): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
    throw new Error(`${name} must be ${range}, got ${String(value)}`);
  }
}

/** Throws unless `value` is a finite number inside the interval; `open` excludes the endpoints. */
export function checkNumber(
  name: string,
  value: number,
  lo: number,
  hi: number,
  open: { lo?: boolean; hi?: boolean } = {},
): void {
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (open.lo ? value > lo : value >= lo) &&
    (open.hi ? value < hi : value <= hi);
  if (!ok) {
    const range = `${open.lo ? '(' : '['}${lo}, ${hi}${open.hi ? ')' : ']'}`;
    throw new Error(`${name} must be a finite number in ${range}, got ${String(value)}`);
  }
}

/** Throws unless every entry of the array is finite. */
export function checkFiniteArray(name: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new Error(`${name} must contain only finite numbers, got ${values[i]} at index ${i}`);
    }
  }
}

/**
 * True when the current backend can read a tensor synchronously. tfjs-backend-webgpu reads
 * synchronously through OffscreenCanvas, which Node lacks: there only asynchronous reads work, so the
 * library's loops (train, the samplers, the ELBO) read with `await tensor.data()`.
 */
export function canReadSync(): boolean {
  return !(tf.getBackend() === 'webgpu' && typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas === 'undefined');
}

function checkFloatOrInt(name: string, x: tf.Tensor): void {
  if (!(x instanceof tf.Tensor)) throw new Error(`${name} must be a tensor, got ${String(x)}`);
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`${name} must be a float32 or int32 tensor, got dtype ${x.dtype}`);
  }
}

function nonFiniteCount(x: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.logicalNot(tf.isFinite(x)).sum());
}

function throwIfNonFinite(name: string, x: tf.Tensor, bad: number): void {
  if (bad > 0) {
    throw new Error(`${name} must contain only finite numbers, got ${bad} NaN or Inf value(s) in shape [${x.shape}]`);
  }
}

/**
 * Throws unless the tensor holds no NaN or Inf (one read back from the device). Where the backend
 * cannot read synchronously (webgpu under Node) only the dtype is checked here; the async entry
 * points check values with checkFiniteTensorAsync.
 */
export function checkFiniteTensor(name: string, x: tf.Tensor): void {
  checkFloatOrInt(name, x);
  if (!canReadSync()) return;
  const count = nonFiniteCount(x);
  const bad = count.dataSync()[0];
  count.dispose();
  throwIfNonFinite(name, x, bad);
}

/** checkFiniteTensor with an asynchronous read, for every backend. */
export async function checkFiniteTensorAsync(name: string, x: tf.Tensor): Promise<void> {
  checkFloatOrInt(name, x);
  const count = nonFiniteCount(x);
  const bad = (await count.data())[0];
  count.dispose();
  throwIfNonFinite(name, x, bad);
}

/** Throws unless `x` has exactly the expected shape. */
export function checkShape(name: string, x: tf.Tensor, expected: number[]): void {
  if (x.shape.length !== expected.length || x.shape.some((d, i) => d !== expected[i])) {
    throw new Error(`${name} must have shape [${expected}], got [${x.shape}]`);
  }
}

/** Throws unless the tensors have the same shape. */
export function checkSameShape(nameA: string, a: tf.Tensor, nameB: string, b: tf.Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new Error(`${nameA} and ${nameB} must have the same shape, got [${a.shape}] and [${b.shape}]`);
  }
}

/** Throws unless `x` has at least `minRank` dimensions (a batch dimension first). */
export function checkRank(name: string, x: tf.Tensor, minRank: number): void {
  if (x.rank < minRank) {
    throw new Error(`${name} must have rank >= ${minRank} (batch first), got shape [${x.shape}]`);
  }
}

/**
 * The sum of tensors, added pairwise. tf.addN binds every input at once, and webgpu devices allow
 * only 8 storage buffers per shader stage by default, so addN of 8 or more inputs fails there.
 */
export function sumTensors(xs: tf.Tensor[]): tf.Tensor {
  if (xs.length === 0) throw new Error('sumTensors needs at least one tensor');
  return tf.tidy(() => xs.slice(1).reduce((acc, x) => acc.add(x), xs[0].clone()));
}
