/**
 * check(description, fn): the workbook's way to state a numerical claim and verify it.
 * Notebooks wrap every chai assertion in one; the runners (lib/workbook) read the results back
 * from a process-wide registry to print the end-of-run summary.
 */

/** One check's outcome, as recorded in the registry. */
export interface CheckResult {
  description: string;
  ok: boolean;
  /** Wall time of fn, in seconds. */
  seconds: number;
  /** The failure's message (ok === false only). */
  error?: string;
}

/**
 * The registry lives on globalThis under a registered symbol, not in this module: a notebook loads
 * dist/lib/workbook/check.js while a runner may load lib/workbook/check.ts (tsx) or another copy, and all of them must
 * see the same list.
 */
const REGISTRY = Symbol.for('ddpm-workbook.checks');

function registry(): CheckResult[] {
  const g = globalThis as unknown as Record<symbol, CheckResult[] | undefined>;
  let list = g[REGISTRY];
  if (!Array.isArray(list)) {
    list = [];
    g[REGISTRY] = list;
  }
  return list;
}

/** Every check run in this process so far, in order (a copy). */
export function checkResults(): CheckResult[] {
  return registry().map((r) => ({ ...r }));
}

/** Empties the registry (a runner calls it before each notebook; tests before each case). */
export function clearCheckResults(): void {
  registry().length = 0;
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

function fail(description: string, started: number, e: unknown): never {
  const message = messageOf(e);
  registry().push({ description, ok: false, seconds: (Date.now() - started) / 1000, error: message });
  console.log(`✗ ${description}`);
  throw new Error(`${description}: ${message}`, { cause: e });
}

function pass(description: string, started: number): void {
  registry().push({ description, ok: true, seconds: (Date.now() - started) / 1000 });
  console.log(`✓ ${description}`);
}

/**
 * Runs fn, prints "✓ description" and records the result; on failure records it, prints
 * "✗ description" and throws an Error whose message starts with the description and carries the
 * original message. An async fn makes check return a Promise: `await check(...)`.
 */
export function check(description: string, fn: () => PromiseLike<unknown>): Promise<void>;
export function check(description: string, fn: () => unknown): void;
export function check(description: string, fn: () => unknown): void | Promise<void> {
  if (typeof description !== 'string' || description.trim() === '') {
    throw new Error(`check: description must be a non-empty string, got ${JSON.stringify(description)}`);
  }
  if (typeof fn !== 'function') {
    throw new Error(`check: fn must be a function, got ${typeof fn} (in check "${description}")`);
  }
  const started = Date.now();
  let returned: unknown;
  try {
    returned = fn();
  } catch (e) {
    fail(description, started, e);
  }
  if (returned !== null && typeof returned === 'object' && typeof (returned as PromiseLike<unknown>).then === 'function') {
    return Promise.resolve(returned as PromiseLike<unknown>).then(
      () => pass(description, started),
      (e: unknown) => fail(description, started, e),
    );
  }
  pass(description, started);
}
