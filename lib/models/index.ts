/**
 * The neural denoisers (eps_theta of docs/equations.md#noise-prediction) and the layers they are
 * written with. lib/index.ts re-exports this module. Notebooks: 05_training_2d, 07_mnist.
 */
export { timestepEmbedding, checkModelTimestep } from './embedding';
export type { KernelInit, DenseParams, ConvParams, NormParams } from './layers';
export { ParamBuilder, kernelFans, initKernel, dense, conv2d, silu, groupNorm, upsampleNearest } from './layers';
export type { MlpDenoiserConfig } from './mlp';
export { MlpDenoiser } from './mlp';
export type { UNetDenoiserConfig } from './unet';
export { UNetDenoiser } from './unet';
