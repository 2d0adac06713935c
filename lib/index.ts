/**
 * The diffusion library's public door: the maths, the models, training, data and metrics, and the
 * runtime (backends, progress). The notebooks' own helpers (check, plot, figures, statistics) are
 * not library: they come through the workbook's door, lib/workbook/index.ts. Each export's doc
 * comment names its section of docs/equations.md and the notebook that derives it.
 */
export * from './diffusion/schedule';
export * from './diffusion/denoiser';
export { Rng, deriveSeed } from './diffusion/random';
export { qStep, qSample, qMeanVariance } from './diffusion/forward';
export {
  Gaussian,
  qPosterior,
  predictX0FromEps,
  predictEpsFromX0,
  posteriorMeanFromEps,
  predictV,
  predictX0FromV,
  predictEpsFromV,
} from './diffusion/posterior';
export { ReverseVariance, REVERSE_VARIANCES, ReverseOptions, ReverseStep, pMeanVariance, reverseVariance } from './diffusion/reverse';
export { normalKL, normalLogPdf, discretizedGaussianLogLikelihood, bitsPerDim } from './diffusion/gaussian';
export { Decoder, ElboOptions, ElboTerms, ElboFirstForm, FirstFormEstimator, elboTerms, elboFirstForm, elboTermAt, priorTerm } from './diffusion/elbo';
export { LossType, LOSS_TYPES, MIN_SNR_GAMMA, minSnrWeight, LossDraws, simpleLoss, vlbLoss, hybridLoss, klNoiseWeight, sampleTimesteps, vlbTermsFromEps } from './diffusion/loss';
export {
  TrajectoryPoint,
  StepInfo,
  SampleOptions,
  SampleResult,
  DDIMOptions,
  sampleDDPM,
  sampleDDIM,
  ddimTimesteps,
  DDPMStepOptions,
  DDIMStepOptions,
  SamplerStep,
  ddpmStep,
  ddimStep,
  ddimSigma2,
  ddimEtaMax,
  sampleLoop,
} from './diffusion/sampling';
export { GaussianOptimalEps, MixtureOptimalEps, gaussianOptimalEps, mixtureOptimalEps } from './diffusion/optimal';
export {
  ClassLabel,
  ConditionalDenoiser,
  GuidedDenoiser,
  ConditionalStepResult,
  isConditional,
  checkClassLabel,
  guidedDenoiser,
  dropClassLabels,
  conditionalSimpleLoss,
  conditionalTrainStep,
} from './diffusion/guidance';
export { TrainOptions, TrainProgress, TrainResult, train, BatchSampler, LR_SCHEDULES, LrSchedule, lrAt } from './training/train';
export * from './runtime/backend';
export * from './data/toy';
export * from './data/mnist';
export * from './data/metrics';
export * from './data/judge';
export { JudgeTrainOptions, trainJudge } from './data/judge-train';
export * from './data/image';
export * from './diffusion/linalg';
export * from './models';
export { ADAM_UPDATE, GROUP_NORM, registerKernels, registerWasmKernels, countDispatches, adamVariablesPerDispatch } from './runtime/kernels';
export { imageGridPng } from './data/image';
export { FusedAdam } from './training/optim';
export { Progress, formatDuration } from './runtime/progress';
export { TrainCheckpoint, TrainRngState, createOptimizer } from './training/train';
export {
  MANIFEST_FILE,
  RunManifest,
  LoadedRun,
  ResumableRun,
  CheckpointState,
  ModelKind,
  saveCheckpoint,
  readManifest,
  readCheckpoint,
  loadRun,
  loadRunForResume,
  buildModel,
  modelKind,
} from './training/checkpoint';
export { writeFileAtomic, packageRoot, makeDirs, describeFsError, tempPathFor, RunLock, LockOwner, LOCK_FILE, acquireRunLock, heldLock } from './runtime/files';
export { PARALLEL_BACKENDS, MAX_SUGGESTED_THREADS, sliceSizes, trainingThreads } from './training/parallel';
export { GROUP_NORM_SILU, GROUP_NORM_SILU_GRAD, registerGroupNormKernels, setConvRoute, setGroupNormRoute } from './runtime/kernels';
export { simdModuleBytes, winogradFilterScratchFloats, winogradScratchFloats } from './runtime/kernels/simd';
export type { ConvRoute } from './runtime/kernels/wasm';
export { simpleLossUnchecked } from './diffusion/loss';
