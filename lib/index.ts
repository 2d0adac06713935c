/**
 * The one public door of the diffusion library: notebooks, tests and users import from here.
 * Each export's doc comment names its equation in shared/math.md and the notebook that derives it.
 */
export * from './schedule';
export * from './denoiser';
export { Rng, deriveSeed } from './random';
export { qStep, qSample, qMeanVariance } from './forward';
export {
  Gaussian,
  qPosterior,
  predictX0FromEps,
  predictEpsFromX0,
  posteriorMeanFromEps,
  predictV,
  predictX0FromV,
  predictEpsFromV,
} from './posterior';
export { ReverseVariance, REVERSE_VARIANCES, ReverseOptions, ReverseStep, pMeanVariance, reverseVariance } from './reverse';
export { normalKL, normalLogPdf, discretizedGaussianLogLikelihood, bitsPerDim } from './gaussian';
export { Decoder, ElboOptions, ElboTerms, ElboFirstForm, FirstFormEstimator, elboTerms, elboFirstForm, elboTermAt, priorTerm } from './elbo';
export { LossType, LOSS_TYPES, LossDraws, simpleLoss, vlbLoss, hybridLoss, klNoiseWeight, sampleTimesteps } from './loss';
export {
  TrajectoryPoint,
  StepInfo,
  SampleOptions,
  SampleResult,
  DDIMOptions,
  sampleDDPM,
  sampleDDIM,
  ddimTimesteps,
} from './sampling';
export { GaussianOptimalEps, MixtureOptimalEps, gaussianOptimalEps, mixtureOptimalEps } from './optimal';
export { TrainOptions, TrainProgress, TrainResult, train, BatchSampler } from './train';
export * from './backend';
export * from './data';
export * from './mnist';
export * from './metrics';
export * from './linalg';
export * from './models';
export { registerWasmKernels } from './kernels';
export { FusedAdam } from './optim';
export { Progress, formatDuration } from './progress';
export { Figure, ReportSection, renderReport, writeFileAtomic } from './report';
