#!/usr/bin/env node
/**
 * Builds the project's JupyterLab (src/index.js, JupyterLab 3.6.8's npm packages) with webpack into
 * build/<variant>/: bundle.js and its chunks, schemas/ and themes/ for jupyterlab_server, and
 * build-info.json. Variants: `plotly` (plotly's mime renderer bundled) and `plain` (without it, so
 * plots fall back to their text/html). A variant whose build-info.json carries the current key
 * (sha256 of package-lock.json, src/, this file) is not rebuilt: a second run takes no time.
 *   node build.js [plotly|plain|all] [--force] [--quiet]     (default: all)
 * Needs `npm ci` in this folder first (run by .ci/run and by `npm run lab`, which offers it).
 */
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const HERE = __dirname;
/** Where webpack finds its loaders (css-loader, style-loader, ...): this folder's packages first. */
const LOADERS = { modules: [path.join(__dirname, 'node_modules'), 'node_modules'] };
const VARIANTS = ['plotly', 'plain'];

/** The cache key: what decides the bytes of a build (the lock file pins every package version). */
function buildKey() {
  const h = crypto.createHash('sha256');
  const files = ['package-lock.json', 'build.js', ...fs.readdirSync(path.join(HERE, 'src')).sort().map((f) => path.join('src', f))];
  for (const f of files) {
    h.update(f + '\0');
    h.update(fs.readFileSync(path.join(HERE, f)));
  }
  return h.digest('hex');
}

/** The build folder of a variant. */
const outDir = (variant) => path.join(HERE, 'build', variant);

/** true when build/<variant> was built from the current sources and lock file. */
function isCurrent(variant, key = buildKey()) {
  try {
    const info = JSON.parse(fs.readFileSync(path.join(outDir(variant), 'build-info.json'), 'utf8'));
    return info.key === key && fs.existsSync(path.join(outDir(variant), 'bundle.js'));
  } catch {
    return false;
  }
}

// The plugin packages whose schemas, themes and CSS ensureAssets gathers (the ones src/index.js loads)
const EXTENSIONS = [
  '@jupyterlab/application-extension',
  '@jupyterlab/apputils-extension',
  '@jupyterlab/codemirror-extension',
  '@jupyterlab/completer-extension',
  '@jupyterlab/console-extension',
  '@jupyterlab/docmanager-extension',
  '@jupyterlab/filebrowser-extension',
  '@jupyterlab/fileeditor-extension',
  '@jupyterlab/launcher-extension',
  '@jupyterlab/mainmenu-extension',
  '@jupyterlab/mathjax2-extension',
  '@jupyterlab/notebook-extension',
  '@jupyterlab/rendermime-extension',
  '@jupyterlab/shortcuts-extension',
  '@jupyterlab/statusbar-extension',
  '@jupyterlab/theme-light-extension',
  '@jupyterlab/translation-extension',
  '@jupyterlab/ui-components-extension',
  '@jupyterlab/javascript-extension',
];

/** Builds one variant into a fresh folder, moved into place only when webpack succeeded. */
async function buildVariant(variant, key, quiet) {
  const { Build } = require('@jupyterlab/builder');
  const baseConfig = require('@jupyterlab/builder/lib/webpack.config.base');
  const { merge } = require('webpack-merge');
  const webpack = require('webpack');
  const final = outDir(variant);
  const tmp = `${final}.partial`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const themes = Build.ensureAssets({ output: tmp, packageNames: EXTENSIONS });
  const started = Date.now();
  let lastShown = -1;
  const progress = new webpack.ProgressPlugin((fraction, message) => {
    const pct = Math.floor(fraction * 10) * 10;
    if (!quiet && pct !== lastShown) {
      lastShown = pct;
      process.stderr.write(`  [${variant}] ${String(pct).padStart(3)}% ${message} (${Math.round((Date.now() - started) / 1000)} s)\n`);
    }
  });
  const app = merge(baseConfig, {
    mode: 'production',
    entry: path.join(HERE, 'src', 'index.js'),
    context: HERE,
    resolveLoader: LOADERS,
    output: { path: tmp, filename: 'bundle.js', chunkFilename: '[name].[contenthash].js' },
    resolve: {
      alias: {
        'ddpm-lab-style$': path.join(tmp, 'style.js'),
        // jupyterlab-plotly asks for the full plotly.js source package; package.json's override
        // installs the minified distribution of the same version under that name instead (the full
        // package pulls ~100 MB of build tooling), and this points the renderer's import at its file
        'plotly.js/dist/plotly$': path.join(HERE, 'node_modules', 'plotly.js', 'plotly.min.js'),
      },
    },
    // minifying ~10 MB on two shared cores costs minutes and only saves download time on localhost
    optimization: { minimize: false },
    devtool: false,
    performance: { hints: false },
    cache: { type: 'filesystem', cacheDirectory: path.join(HERE, 'node_modules', '.cache', 'webpack'), name: variant },
    plugins: [new webpack.DefinePlugin({ DDPM_PLOTLY: JSON.stringify(variant === 'plotly') }), progress],
  });
  const stats = await new Promise((resolve, reject) =>
    // the theme configs come without a context: loaders would be looked up from the process's cwd
    // (the repository root under .ci/run), where JupyterLab's packages are not installed
    webpack(
      [app, ...themes.map((t) => ({ ...t, context: HERE, resolveLoader: LOADERS, cache: app.cache && { ...app.cache, name: `${variant}-theme` } }))],
      (err, s) => (err ? reject(err) : resolve(s)),
    ),
  );
  if (stats.hasErrors()) throw new Error(`webpack failed for ${variant}:\n${stats.toString({ all: false, errors: true })}`);
  const versions = {};
  for (const name of ['@jupyterlab/application', 'jupyterlab-plotly', 'plotly.js']) {
    versions[name] = JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules', name, 'package.json'), 'utf8')).version;
  }
  const info = {
    key,
    variant,
    jupyterlab: versions['@jupyterlab/application'],
    plotlyRenderer: variant === 'plotly' ? `jupyterlab-plotly ${versions['jupyterlab-plotly']} (plotly.js ${versions['plotly.js']})` : null,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  // jupyterlab_server applies <app_settings_dir>/overrides.json over the schemas' defaults: no news
  // or update check (they ask the network; the first would cover the page with a question)
  fs.mkdirSync(path.join(tmp, 'settings'), { recursive: true });
  const overrides = { '@jupyterlab/apputils-extension:notification': { fetchNews: 'false', checkForUpdates: false } };
  fs.writeFileSync(path.join(tmp, 'settings', 'overrides.json'), JSON.stringify(overrides, null, 2) + '\n');
  fs.writeFileSync(path.join(tmp, 'build-info.json'), JSON.stringify(info, null, 2) + '\n');
  fs.rmSync(final, { recursive: true, force: true });
  fs.renameSync(tmp, final);
  return info;
}

/** Builds the variants asked for unless current; resolves with what it did for each. */
async function build(variants = VARIANTS, { force = false, quiet = false } = {}) {
  if (!fs.existsSync(path.join(HERE, 'node_modules', '@jupyterlab', 'builder'))) {
    throw new Error(`JupyterLab's packages are not installed in ${HERE}: run npm ci there first`);
  }
  const key = buildKey();
  const done = {};
  for (const v of variants) {
    if (!force && isCurrent(v, key)) {
      done[v] = 'cached';
      continue;
    }
    if (!quiet) process.stderr.write(`Building JupyterLab (${v}) into ${outDir(v)}: webpack, a few minutes the first time...\n`);
    const info = await buildVariant(v, key, quiet);
    done[v] = `built in ${info.seconds} s`;
  }
  return done;
}

module.exports = { build, buildKey, isCurrent, outDir, VARIANTS };

if (require.main === module) {
  const args = process.argv.slice(2);
  const names = args.filter((a) => !a.startsWith('--'));
  const unknown = args.filter((a) => a.startsWith('--') && !['--force', '--quiet'].includes(a));
  const bad = names.filter((n) => n !== 'all' && !VARIANTS.includes(n));
  if (unknown.length || bad.length) {
    console.error(`build.js: unknown ${unknown.length ? `option ${unknown[0]}` : `variant "${bad[0]}"`}; usage: node build.js [plotly|plain|all] [--force] [--quiet]`);
    process.exit(2);
  }
  const variants = names.length === 0 || names.includes('all') ? VARIANTS : names;
  build(variants, { force: args.includes('--force'), quiet: args.includes('--quiet') }).then(
    (done) => {
      for (const [v, what] of Object.entries(done)) console.log(`JupyterLab ${v}: ${what} (${outDir(v)})`);
    },
    (e) => {
      console.error(`build.js: ${e.message}`);
      process.exit(1);
    },
  );
}
