/**
 * Shared test helpers: the backend every test starts on, tolerance checks with messages that say
 * what was compared, and a tensor-leak guard.
 */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';

/** Tests run on the cpu backend unless a test switches on purpose (and switches back). */
export async function useCpu(): Promise<void> {
  await tf.setBackend('cpu');
  await tf.ready();
}

/** Root hook: every test file starts from the cpu backend. */
export const mochaHooks = {
  async beforeAll(): Promise<void> {
    await useCpu();
  },
};

/** |actual - expected| <= atol + rtol |expected|, elementwise, with the first offender in the message. */
export function expectClose(
  actual: ArrayLike<number> | number,
  expected: ArrayLike<number> | number,
  atol: number,
  rtol = 0,
  what = 'value',
): void {
  const a = typeof actual === 'number' ? [actual] : Array.from(actual);
  const e = typeof expected === 'number' ? [expected] : Array.from(expected);
  expect(a.length, `${what}: length`).to.equal(e.length);
  for (let i = 0; i < a.length; i++) {
    const tol = atol + rtol * Math.abs(e[i]);
    if (!(Math.abs(a[i] - e[i]) <= tol)) {
      expect.fail(`${what}[${i}] = ${a[i]}, expected ${e[i]} within ${tol}`);
    }
  }
}

/** Counts the distinct tensors in a value: a tensor, or arrays and plain objects holding tensors. */
function countTensors(value: unknown, seen = new Set<number>()): number {
  if (value instanceof tf.Tensor) {
    if (value.isDisposed || seen.has(value.id)) return 0;
    seen.add(value.id);
    return 1;
  }
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + countTensors(v, seen), 0);
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.values(value).reduce((n: number, v) => n + countTensors(v, seen), 0);
  }
  return 0;
}

/** Runs fn and asserts that tf.memory().numTensors grew by exactly the tensors it returned. */
export async function expectNoLeak<T>(fn: () => T | Promise<T>, what = 'the call'): Promise<T> {
  const before = tf.memory().numTensors;
  const result = await fn();
  const after = tf.memory().numTensors - countTensors(result);
  expect(after, `${what} leaked ${after - before} tensor(s)`).to.equal(before);
  return result;
}

/** Reads a tensor into a float64 array and disposes it. */
export function take(x: tf.Tensor): Float64Array {
  const v = Float64Array.from(x.dataSync());
  x.dispose();
  return v;
}

/** Awaits fn() and asserts it rejects with a message matching `pattern`. */
export async function expectRejects(fn: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  let error: unknown = null;
  try {
    await fn();
  } catch (e) {
    error = e;
  }
  expect(error, `expected a rejection matching ${pattern}`).to.be.instanceOf(Error);
  expect((error as Error).message).to.match(pattern);
}
