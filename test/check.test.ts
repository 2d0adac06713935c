import { expect } from 'chai';
import { check, checkResults, clearCheckResults } from '../lib/workbook';

/** Runs fn with console.log captured; returns what it printed. */
async function printed(fn: () => unknown): Promise<string[]> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => {
    lines.push(args.map(String).join(' '));
  };
  try {
    await fn();
  } finally {
    console.log = log;
  }
  return lines;
}

describe('check (the notebooks\' assertion wrapper)', () => {
  beforeEach(clearCheckResults);
  after(clearCheckResults);

  it('runs a passing sync fn, prints "✓ description" and records it', async () => {
    let ran = false;
    const lines = await printed(() =>
      check('one plus one is two', () => {
        ran = true;
        expect(1 + 1).to.equal(2);
      }),
    );
    expect(ran).to.equal(true);
    expect(lines).to.deep.equal(['✓ one plus one is two']);
    const [r] = checkResults();
    expect(r).to.include({ description: 'one plus one is two', ok: true });
    expect(r.seconds).to.be.at.least(0);
  });

  it('throws an Error that starts with the description and carries the assertion message', async () => {
    let error: unknown = null;
    const lines = await printed(() => {
      try {
        check('variance matches', () => expect(0.5).to.be.closeTo(1, 0.1));
      } catch (e) {
        error = e;
      }
    });
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.match(/^variance matches: expected 0\.5 to be close to 1 \+\/- 0\.1/);
    expect(lines).to.deep.equal(['✗ variance matches']);
    expect(checkResults()).to.have.length(1);
    expect(checkResults()[0]).to.include({ ok: false });
    expect(checkResults()[0].error).to.match(/close to 1/);
  });

  it('awaits an async fn: resolves on success, rejects with the description on failure', async () => {
    const ok = check('async pass', async () => {
      await new Promise((r) => setTimeout(r, 5));
    });
    expect(ok).to.be.instanceOf(Promise);
    await printed(() => ok);
    let error: unknown = null;
    await printed(async () => {
      try {
        await check('async fail', async () => {
          await new Promise((r) => setTimeout(r, 5));
          throw new Error('boom');
        });
      } catch (e) {
        error = e;
      }
    });
    expect((error as Error).message).to.equal('async fail: boom');
    expect(checkResults().map((r) => [r.description, r.ok])).to.deep.equal([
      ['async pass', true],
      ['async fail', false],
    ]);
    expect(checkResults()[0].seconds).to.be.at.least(0.004);
  });

  it('keeps one registry per process (globalThis), shared by every copy of the module', async () => {
    await printed(() => check('first', () => undefined));
    // a second copy of the module (as dist/lib/workbook/check.js is beside lib/workbook/check.ts) sees the same list
    const id = require.resolve('../lib/workbook/check');
    const cached = require.cache[id];
    delete require.cache[id];
    try {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const copy = require('../lib/workbook/check') as typeof import('../lib/workbook/check');
      expect(copy.checkResults).to.not.equal(checkResults);
      expect(copy.checkResults().map((r) => r.description)).to.deep.equal(['first']);
    } finally {
      require.cache[id] = cached;
    }
  });

  it('rejects a missing description or fn, naming what was wrong', () => {
    expect(() => check('', () => undefined)).to.throw(/description must be a non-empty string, got ""/);
    expect(() => check('x', 42 as unknown as () => void)).to.throw(/fn must be a function, got number/);
    expect(checkResults()).to.have.length(0);
  });
});
