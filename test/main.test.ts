import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { expect } from 'chai';
import { runSwissRollDemo } from '../lib/main';
import { useCpu } from './support';

describe('the main job (npm start)', () => {
  after(useCpu);

  it('trains, samples and writes a self-contained HTML report with three Plotly figures and a summary', async () => {
    const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-main-'));
    const before = tf.memory().numTensors;
    const summary = await runSwissRollDemo({ steps: 20, T: 50, samples: 200, outDir, log: null });
    expect(tf.memory().numTensors, 'the demo disposes everything it made').to.equal(before);
    const html = fs.readFileSync(path.join(outDir, 'index.html'), 'utf8');
    expect(html.match(/Plotly\.newPlot\(/g)?.length).to.equal(3);
    expect(html).to.include('Samples vs data').and.include('Training loss').and.include('Denoising trajectory');
    // plotly.js is inlined (no network needed to view the page)
    expect(html).to.not.match(/<script src=/);
    expect(html.length).to.be.above(1_000_000);
    const written = JSON.parse(fs.readFileSync(path.join(outDir, 'summary.json'), 'utf8'));
    expect(written.steps).to.equal(20);
    expect(written.energyDistance.samples).to.be.a('number').and.be.above(0);
    expect(summary.energyDistance.heldOutVsHeldOut).to.be.below(summary.energyDistance.noise);
    expect(fs.readdirSync(outDir).sort()).to.deep.equal(['index.html', 'summary.json'], 'no temporary files left');
    fs.rmSync(outDir, { recursive: true });
  });
});
