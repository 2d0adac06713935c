/**
 * The one public door of the diffusion library: notebooks, tests and users import from here.
 * Each export's doc comment names its equation in shared/math.md and the notebook that derives it.
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
export { LossType, LOSS_TYPES, LossDraws, simpleLoss, vlbLoss, hybridLoss, klNoiseWeight, sampleTimesteps } from './diffusion/loss';
export {
  TrajectoryPoint,
  StepInfo,
  SampleOptions,
  SampleResult,
  DDIMOptions,
  sampleDDPM,
  sampleDDIM,
  ddimTimesteps,
} from './diffusion/sampling';
export { GaussianOptimalEps, MixtureOptimalEps, gaussianOptimalEps, mixtureOptimalEps } from './diffusion/optimal';
export { TrainOptions, TrainProgress, TrainResult, train, BatchSampler } from './training/train';
export * from './runtime/backend';
export * from './data/toy';
export * from './data/mnist';
export * from './data/metrics';
export * from './diffusion/linalg';
export * from './models';
export { ADAM_UPDATE, GROUP_NORM, registerKernels, registerWasmKernels, countDispatches, adamVariablesPerDispatch } from './runtime/kernels';
export { imageGridPng } from './data/image';
export { FusedAdam } from './training/optim';
export { Progress, formatDuration } from './runtime/progress';
export { Figure, ReportSection, renderReport, writeFileAtomic } from './workbook/report';
export { CheckResult, check, checkResults, clearCheckResults } from './workbook/check';
export { PlotHandle, DisplayHook, DisplayMessage, PLOTLY_MIME, plot, plotBundle, plotHtml, plotlyJson, plotSummary, findDisplayHook } from './workbook/plot';
export { TrainCheckpoint, TrainRngState, createOptimizer } from './training/train';
export {
  RunManifest,
  LoadedRun,
  ResumableRun,
  CheckpointState,
  ModelKind,
  MANIFEST_FILE,
  RUN_FORMAT,
  RUN_FORMAT_VERSION,
  saveCheckpoint,
  readManifest,
  readCheckpoint,
  loadRun,
  loadRunForResume,
  buildModel,
  modelKind,
} from './training/checkpoint';
