/**
 * The one seam for test-only faults, read once from the environment when the module loads. In a
 * production run (neither variable set) `faults` is null and every call site is a skipped `?.`:
 *   DDPM_TEST_SAVE_PAUSE=<weights|manifest>@<step>  the save of that step stops for a minute after
 *       that stage's temporary file is written and fsynced, before its rename, printing a line to
 *       stderr, so a test can kill -9 the process inside the save window;
 *   DDPM_TEST_NAN_AT_STEP=<k>  the CLI's model returns NaN at training step k.
 * docs/reliability.md lists the tests that use them.
 */

/** The faults a test asked for. */
export interface Faults {
  /** Called between a checkpoint stage's fsync and its rename. */
  savePause(stage: 'weights' | 'manifest', step: number, tmp: string): void;
  /** The training step whose model output becomes NaN, or null. */
  nanAtStep: number | null;
}

function readFaults(env: NodeJS.ProcessEnv): Faults | null {
  const pause = env.DDPM_TEST_SAVE_PAUSE;
  const nanRaw = env.DDPM_TEST_NAN_AT_STEP;
  if (!pause && !nanRaw) return null;
  const nan = Number(nanRaw);
  return {
    savePause: (stage, step, tmp) => {
      if (pause !== `${stage}@${step}`) return;
      process.stderr.write(`ddpm-test: paused in save of step ${step} after writing ${tmp}\n`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
    },
    nanAtStep: Number.isInteger(nan) && nan >= 1 ? nan : null,
  };
}

/** The faults of this process: null unless a DDPM_TEST_ variable was set at start-up. */
export const faults: Faults | null = readFaults(process.env);
