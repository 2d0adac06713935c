import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Writable } from 'stream';
import { expect } from 'chai';
import { Progress, formatDuration, writeFileAtomic } from '../lib';
import { renderReport, scriptJson } from '../lib/workbook';

/** A non-TTY stream that keeps what was written. */
function capture(): { stream: NodeJS.WriteStream; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      chunks.push(String(chunk));
      done();
    },
  }) as unknown as NodeJS.WriteStream;
  return { stream, text: () => chunks.join('') };
}

describe('reports and progress', () => {
  it('formatDuration writes seconds, minutes and hours', () => {
    expect(formatDuration(12.34)).to.equal('12.3s');
    expect(formatDuration(185)).to.equal('3m05s');
    expect(formatDuration(3720)).to.equal('1h02m');
    expect(formatDuration(Infinity)).to.equal('?');
  });

  it('Progress prints plain lines, not a redrawn bar, when the stream is not a terminal', () => {
    const out = capture();
    const p = new Progress('train', 10, out.stream, 0);
    p.update(5, 'loss 0.5');
    p.update(10, 'loss 0.4');
    const lines = out.text().trim().split('\n');
    expect(lines).to.have.length(2);
    expect(lines[0]).to.match(/^train: 50% 5\/10 · .*\/s · loss 0.5 · ETA /);
    expect(lines[1]).to.match(/^train: 100% 10\/10 .* ETA 0.0s$/);
    expect(out.text()).to.not.include('\r');
  });

  it('renderReport escapes titles and embeds each figure as JSON for Plotly.newPlot', () => {
    const html = renderReport('a <b> & "c"', [{ heading: 'h', figure: { data: [{ type: 'scatter', x: [1], y: [2] }] } }]);
    expect(html).to.include('<title>a &lt;b&gt; &amp; &quot;c&quot;</title>');
    expect(html).to.include(`Plotly.newPlot('fig0', [{"type":"scatter","x":[1],"y":[2]}], {}, {"responsive":true});`);
    // a trace name holding '</script>' must not end the inline script early
    const tricky = renderReport('t', [{ heading: 'h', figure: { data: [{ name: '</script><b>' }] } }]);
    expect(tricky).to.include('"name":"\\u003c/script>\\u003cb>"');
    expect(tricky.match(/<\/script>/g)?.length, 'only plotly.js and the figure scripts close').to.equal(2);
  });

  it('renderReport writes U+2028 and U+2029 inside figure strings as \\u2028 and \\u2029 (the same escaper as plot.ts)', () => {
    const html = renderReport('t', [{ heading: 'h', figure: { data: [{ name: 'a\u2028b\u2029c' }] } }]);
    expect(html).to.include('"name":"a\\u2028b\\u2029c"');
    // the raw characters would end a line inside the script for older parsers; plotly.js itself has none
    const figureScript = html.slice(html.indexOf("Plotly.newPlot('fig0'"));
    expect(figureScript).to.not.match(/[\u2028\u2029]/);
    expect(scriptJson('\u2028</script>')).to.equal('"\\u2028\\u003c/script>"');
  });

  it('writeFileAtomic replaces a file whole and leaves no temporary file when the write fails', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-report-'));
    const file = path.join(dir, 'index.html');
    writeFileAtomic(file, 'one');
    writeFileAtomic(file, 'two');
    expect(fs.readFileSync(file, 'utf8')).to.equal('two');
    // a directory where the file should go makes the rename fail
    const blocked = path.join(dir, 'blocked');
    fs.mkdirSync(blocked);
    fs.writeFileSync(path.join(blocked, 'x'), 'keep');
    expect(() => writeFileAtomic(blocked, 'three')).to.throw();
    expect(fs.readdirSync(dir).sort()).to.deep.equal(['blocked', 'index.html']);
    fs.rmSync(dir, { recursive: true });
  });
});
