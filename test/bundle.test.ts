import { expect } from 'chai';
import * as esbuild from 'esbuild';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');
const NODE_ONLY = ['fs', 'path', 'child_process', 'worker_threads'];

/** esbuild for a browser, tfjs left to the page; every other import must resolve without Node. */
async function browserBuild(options: esbuild.BuildOptions): Promise<{ errors: esbuild.Message[]; outputFiles: esbuild.OutputFile[] }> {
  const result = await esbuild.build({
    bundle: true,
    platform: 'browser',
    format: 'esm',
    external: ['@tensorflow/tfjs'],
    write: false,
    logLevel: 'silent',
    absWorkingDir: ROOT,
    outdir: 'bundle-out', // names the outputs only: write is false
    ...options,
  });
  return { errors: result.errors, outputFiles: result.outputFiles ?? [] };
}

/** The Node-only modules a bundle still requires or imports (there should be none). */
function nodeImports(text: string): string[] {
  return NODE_ONLY.filter((m) =>
    new RegExp(`require\\(\\s*["'](node:)?${m}["']\\s*\\)|from\\s*["'](node:)?${m}["']|import\\(\\s*["'](node:)?${m}["']`).test(text),
  );
}

describe('the maths core and the models bundle for a browser', () => {
  it('lib/diffusion and lib/models bundle with platform browser, tfjs external, and no Node builtin in the output', async () => {
    const result = await browserBuild({ entryPoints: ['lib/diffusion/index.ts', 'lib/models/index.ts'] });
    expect(result.errors).to.deep.equal([]);
    expect(result.outputFiles.length).to.equal(2);
    for (const file of result.outputFiles) {
      expect(file.text.length, `${file.path} is a real bundle`).to.be.above(10000);
      expect(nodeImports(file.text), `Node-only imports in ${path.basename(file.path)}`).to.deep.equal([]);
    }
    // the samplers, the losses and a network really are inside (not tree-shaken away)
    const [diffusion, models] = result.outputFiles.map((f) => f.text);
    for (const name of ['sampleDDPM', 'ddimStep', 'vlbLoss', 'discretizedGaussianLogLikelihood']) expect(diffusion).to.include(name);
    expect(models).to.include('UNetDenoiser');
  });

  it('the same build fails when a Node-only import creeps in (the check can fail)', async () => {
    for (const m of NODE_ONLY) {
      let error: unknown = null;
      try {
        await browserBuild({
          stdin: { contents: `export * from './lib/diffusion/index';\nimport * as n from '${m}';\nexport const leak = n;\n`, resolveDir: ROOT, loader: 'ts' },
          outdir: undefined,
        });
      } catch (e) {
        error = e;
      }
      expect(error, `bundling an import of ${m} must fail`).to.be.instanceOf(Error);
      expect((error as Error).message).to.include(`Could not resolve "${m}"`);
    }
  });
});
