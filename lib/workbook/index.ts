/**
 * The workbook's door, the notebooks' second import beside the library ('../dist/lib/workbook'):
 * check() for numerical claims, plot() and the figure helpers, the statistics helpers, and the
 * static report writer.
 */
export { CheckResult, check, checkResults, clearCheckResults } from './check';
export { PlotHandle, DisplayHook, DisplayMessage, PLOTLY_MIME, plot, plotBundle, plotHtml, plotlyJson, plotSummary, findDisplayHook, scriptJson } from './plot';
export { Figure, ReportSection, escapeHtml, renderReport } from './report';
export {
  Points2d,
  ScatterOptions,
  LiveLossPlot,
  LiveLossOptions,
  columns,
  scatterTrace,
  panelAxes,
  liveLossPlot,
  lossCurveFigure,
  imageFigure,
  digitGridFigure,
} from './figures';
export { MeanStdErr, SampleMoments, meanOf, meanStdErr, lossTenths, varianceStdErr, sampleMoments, normalPdf, densityHistogram } from './stats';
