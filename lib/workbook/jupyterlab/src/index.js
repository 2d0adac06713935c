// The JupyterLab application of this project: JupyterLab 3.6's own plugins, unmodified, registered
// on one JupyterLab instance. DDPM_PLOTLY (webpack DefinePlugin, set by build.js) decides whether
// plotly's mime renderer is in the bundle; without it JupyterLab renders a plot's text/html.
import './public-path';
import { JupyterLab } from '@jupyterlab/application';
import { PageConfig } from '@jupyterlab/coreutils';

// ensureAssets writes style.js (every plugin's CSS) into the build folder; webpack aliases it
import 'ddpm-lab-style';

const plugins = [
  require('@jupyterlab/application-extension'),
  require('@jupyterlab/apputils-extension'),
  require('@jupyterlab/codemirror-extension'),
  require('@jupyterlab/completer-extension'),
  require('@jupyterlab/console-extension'),
  require('@jupyterlab/docmanager-extension'),
  require('@jupyterlab/filebrowser-extension'),
  require('@jupyterlab/fileeditor-extension'),
  require('@jupyterlab/launcher-extension'),
  require('@jupyterlab/mainmenu-extension'),
  require('@jupyterlab/mathjax2-extension'),
  require('@jupyterlab/notebook-extension'),
  require('@jupyterlab/rendermime-extension'),
  // Shift+Enter and every other key binding come from this extension's settings
  require('@jupyterlab/shortcuts-extension'),
  require('@jupyterlab/statusbar-extension'),
  require('@jupyterlab/theme-light-extension'),
  // most 3.6 plugins require ITranslator
  require('@jupyterlab/translation-extension'),
  require('@jupyterlab/ui-components-extension'),
];

/**
 * jupyterlab-plotly 5.24.1's renderer ignores every model after the first once it has drawn
 * (renderModel returns early when its .plot-container exists), and JupyterLab reuses the renderer
 * for an update_display_data: a figure updated in place (plot(...).update, the live loss curves)
 * would keep showing its first state. This wrapper leaves the renderer as it is for the first
 * model and redraws later ones with Plotly.react.
 */
function redrawingOnUpdate(extensions) {
  return extensions.map((ext) => {
    const factory = ext.rendererFactory;
    const createRenderer = (options) => {
      const renderer = factory.createRenderer(options);
      const first = renderer.renderModel.bind(renderer);
      renderer.renderModel = (model) => {
        if (!renderer.hasGraphElement()) return first(model);
        renderer._model = model;
        const { data, layout, config } = model.data[options.mimeType];
        return renderer.constructor.Plotly.react(renderer.node, data, layout, config);
      };
      return renderer;
    };
    return { ...ext, rendererFactory: { ...factory, createRenderer } };
  });
}

const mimeExtensions = [require('@jupyterlab/javascript-extension')];
// eslint-disable-next-line no-undef
if (DDPM_PLOTLY) {
  const plotly = require('jupyterlab-plotly/lib/plotly-renderer');
  mimeExtensions.push({ __esModule: true, default: redrawingOnUpdate(plotly.default) });
}

/** A module's plugins: its default export (ES module) or the module itself (CommonJS), as a list. */
function exported(mod) {
  const e = mod && mod.__esModule ? mod.default : mod;
  return Array.isArray(e) ? e : [e];
}

/** Plugins the page config disables (jupyterlab_server's disabledExtensions) are left out. */
const enabled = (plugin) => !PageConfig.Extension.isDisabled(plugin.id);

window.addEventListener('load', async () => {
  const lab = new JupyterLab({ mimeExtensions: mimeExtensions.map((m) => (m.__esModule ? m.default : m)) });
  lab.registerPlugins(plugins.flatMap(exported).filter(enabled));
  await lab.start();
  await lab.restored;
  // the tests and the screenshots wait for this instead of guessing from the DOM
  document.body.dataset.ddpmLab = 'restored';
  window.ddpmLab = lab;
});
