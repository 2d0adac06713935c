/**
 * The maths core in one module: schedules, the forward and reverse processes, the ELBO, the losses
 * and the samplers. It imports nothing Node-only, so it bundles for a browser (test/bundle.test.ts).
 */
export * from './schedule';
export * from './denoiser';
export * from './random';
export * from './validate';
export * from './forward';
export * from './posterior';
export * from './reverse';
export * from './gaussian';
export * from './elbo';
export * from './loss';
export * from './sampling';
export * from './optimal';
export * from './guidance';
export * from './linalg';
