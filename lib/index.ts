/**
 * The one public door of the diffusion library: notebooks, tests and users import from here.
 * Each export's doc comment names its equation in shared/math.md and the notebook that derives it.
 */
export * from './schedule';
export * from './denoiser';
export { Rng, deriveSeed } from './random';
