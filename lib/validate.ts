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

/** Throws unless the tensor holds no NaN or Inf (one read back from the device). */
export function checkFiniteTensor(name: string, x: tf.Tensor): void {
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`${name} must be a float32 or int32 tensor, got dtype ${x.dtype}`);
  }
  const bad = tf.tidy(() => tf.logicalNot(tf.isFinite(x)).sum().dataSync()[0]);
  if (bad > 0) {
    throw new Error(`${name} must contain only finite numbers, got ${bad} NaN or Inf value(s) in shape [${x.shape}]`);
  }
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
