import { inspect } from 'util';
import { expect } from 'chai';
import { DisplayMessage, PLOTLY_MIME, findDisplayHook, plot, plotBundle, plotSummary } from '../lib/workbook';

type Jupyter = { lastWriteDisplayData: ((m: DisplayMessage, update: boolean) => void) | null };

const figure = {
  data: [
    { type: 'scatter', mode: 'lines', name: 'loss', x: [1, 2, 3], y: Float32Array.from([0.5, 0.25, 0.125]) },
    { type: 'histogram', x: [0, 1, 1, 2] },
  ],
  layout: { title: { text: 'Loss </script> curve' }, height: 300 },
};

describe('plot (one Plotly figure as one MIME-bundle output)', () => {
  it('builds a bundle: Plotly JSON {data, layout, config}, HTML that draws it, and a one-line summary', () => {
    const b = plotBundle(figure);
    expect(Object.keys(b).sort()).to.deep.equal([PLOTLY_MIME, 'text/html', 'text/plain'].sort());
    const json = b[PLOTLY_MIME] as { data: Record<string, unknown>[]; layout: Record<string, unknown>; config: Record<string, unknown> };
    // typed arrays become plain JSON arrays (not {"0": ...} objects)
    expect(json.data[0].y).to.deep.equal([0.5, 0.25, 0.125]);
    expect(json.layout).to.deep.equal(figure.layout);
    expect(json.config).to.deep.equal({ responsive: true });
    expect(b['text/plain']).to.equal('Plotly figure "Loss </script> curve": 2 traces (scatter, histogram), 7 points');
    const html = b['text/html'] as string;
    expect(html).to.match(/^<div id="ddpm-plot-[\w-]+" class="ddpm-plot" style="width:100%;height:300px;"><\/div>/);
    // only the script's own end tag closes it: the title's '</script>' is escaped
    expect(html.match(/<\/script>/g)).to.have.length(1);
    const body = /<script type="text\/javascript">([\s\S]*)<\/script>$/.exec(html)?.[1];
    expect(body, 'one inline script').to.be.a('string');
    // the script parses as JavaScript (a syntax error would leave every plot blank)
    expect(() => new Function(body as string)).to.not.throw();
    // it carries the same JSON, and names where it loads plotly.js from
    expect(body).to.include('"Loss \\u003c/script> curve"');
    expect(body).to.include("'vendor/plotly.min.js'").and.include('files/node_modules/plotly.js-dist-min/plotly.min.js');
  });

  it('summarises heatmaps by their cells and titles given as strings', () => {
    expect(plotSummary({ data: [{ type: 'heatmap', z: [[1, 2], [3, 4], [5, 6]] }], layout: { title: 'grid' } })).to.equal(
      'Plotly figure "grid": 1 trace (heatmap), 6 points',
    );
  });

  it('sends one display message with the three types through tslab\'s hook, and update() redraws the same display id', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const jupyter = require('tslab/dist/jupyter') as Jupyter;
    const messages: [DisplayMessage, boolean][] = [];
    jupyter.lastWriteDisplayData = (m, update) => messages.push([m, update]);
    try {
      expect(findDisplayHook()).to.be.a('function');
      const h = plot(figure);
      expect(messages).to.have.length(1);
      const [m, update] = messages[0];
      expect(update).to.equal(false);
      expect(Object.keys(m.data).sort()).to.deep.equal([PLOTLY_MIME, 'text/html', 'text/plain'].sort());
      expect(m.transient.display_id).to.equal(h.displayId);
      h.update({ data: [{ type: 'scatter', x: [1], y: [2] }] });
      expect(messages).to.have.length(2);
      expect(messages[1][1]).to.equal(true);
      expect(messages[1][0].transient.display_id).to.equal(h.displayId);
      expect((messages[1][0].data[PLOTLY_MIME] as { data: unknown[] }).data).to.deep.equal([{ type: 'scatter', x: [1], y: [2] }]);
      // tslab prints a cell's last expression: the handle shows as one short line
      expect(inspect(h)).to.equal(`(plot ${h.displayId}: handle.update(figure) redraws it)`);
      // two plots get two display ids
      expect(plot(figure).displayId).to.not.equal(h.displayId);
    } finally {
      jupyter.lastWriteDisplayData = null;
    }
  });

  it('outside a kernel prints the summary instead of failing', () => {
    expect(findDisplayHook()).to.equal(null);
    const lines: string[] = [];
    const log = console.log;
    console.log = (s: unknown) => lines.push(String(s));
    try {
      plot(figure).update(figure);
    } finally {
      console.log = log;
    }
    expect(lines).to.deep.equal([
      'Plotly figure "Loss </script> curve": 2 traces (scatter, histogram), 7 points',
      '(updated) Plotly figure "Loss </script> curve": 2 traces (scatter, histogram), 7 points',
    ]);
  });

  it('rejects a figure without a data array, naming the field', () => {
    expect(() => plot({} as never)).to.throw(/figure\.data must be an array of Plotly traces, got undefined/);
    expect(() => plot({ data: [1] } as never)).to.throw(/figure\.data\[0\] must be a trace object, got 1/);
    expect(() => plot({ data: [], layout: [] } as never)).to.throw(/figure\.layout must be an object/);
  });
});
