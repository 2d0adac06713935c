/**
 * test/run.ts, the runner behind `npm test`: a part that hangs, or leaves a process holding its
 * output, fails within its limits instead of holding CI until CI's own limit (stop 19's CI run
 * did: a browser left open by a failed before hook kept a part alive for 90 minutes).
 */
import * as fs from 'fs';
import { expect } from 'chai';
import { partLimitMs, run } from './run';
import { startTogether } from './notebook-ui';

const node = process.execPath;
/** True while pid runs (a zombie, killed and not yet reaped by its new parent, does not). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

describe('npm test\'s runner (test/run.ts)', () => {
  it('passes a part that exits 0, with its output, and fails one that exits 3 with its status', async () => {
    const ok = await run('t', 1, node, ['-e', 'console.log("hello")']);
    expect(ok.code).to.equal(0);
    expect(ok.output).to.include('hello');
    const bad = await run('t', 1, node, ['-e', 'process.exit(3)']);
    expect(bad.code).to.equal(3);
  });

  it('kills a part that outlives its limit, and fails it saying so', async () => {
    const t0 = Date.now();
    const job = await run('t', 1, node, ['-e', 'setTimeout(() => {}, 60_000)'], { limitMs: 500 });
    expect(job.code).to.not.equal(0);
    expect(job.output).to.include('still running after 0.5 s');
    expect(Date.now() - t0).to.be.below(30_000);
  });

  it('fails a part that exited 0 while a process it started still holds its output, and kills that process', async () => {
    // the part starts a child that inherits its stdout, prints the child's pid and exits at once
    const script = 'const c = require("child_process").spawn("sleep", ["60"], { stdio: "inherit" }); console.log("pid " + c.pid); process.exit(0)';
    const job = await run('t', 1, node, ['-e', script], { lingerMs: 500 });
    expect(job.code).to.equal(1);
    expect(job.output).to.include('still held its output 0.5 s after it exited');
    const pid = Number(/pid (\d+)/.exec(job.output)![1]);
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(pid), `sleep (pid ${pid}) was killed with its group`).to.equal(false);
  });

  it('reads its limit from DDPM_TEST_PART_MINUTES, rejecting a bad value by name', () => {
    expect(partLimitMs({})).to.equal(40 * 60_000);
    expect(partLimitMs({ DDPM_TEST_PART_MINUTES: '2.5' })).to.equal(150_000);
    expect(() => partLimitMs({ DDPM_TEST_PART_MINUTES: 'soon' })).to.throw('DDPM_TEST_PART_MINUTES must be a number of minutes in (0, 1440], got "soon"');
  });

  it('the front-end suites\' before hooks: when the server fails to start, the browser that did start is closed (startTogether)', async () => {
    const closed: string[] = [];
    const browser = { close: async () => void closed.push('browser') };
    const server = { stop: async () => void closed.push('server') };
    const failing = Promise.reject(new Error('registering the tslab kernel failed'));
    let error: Error | undefined;
    try {
      await startTogether([failing, Promise.resolve(browser)] as never);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).to.equal('registering the tslab kernel failed');
    expect(closed).to.deep.equal(['browser']);
    const both = await startTogether([Promise.resolve(server), Promise.resolve(browser)] as never);
    expect(both).to.deep.equal([server, browser]);
    expect(closed).to.deep.equal(['browser']);
  });
});
