/**
 * The workbook's one way to the library: its entry (lib/index.ts), as any client imports it, but
 * required on first use. The entry loads TensorFlow.js (about 1 s), and the notebooks' second door
 * (lib/workbook/index.ts) and the in-process runner's child must start without it: a notebook
 * loads the library itself, and by the time the child writes its results the entry is cached.
 * Types come from the entry with `import type`, which costs nothing at run time.
 */
import type * as Library from '../index';

/** The library's entry (lib/index.ts, or dist/lib/index.js from the build), loaded on the first call. */
export function library(): typeof Library {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('../index') as typeof Library;
}
