/**
 * lib/runtime/files.ts: the one atomic writer, the package root, the run-directory lock and the
 * cleanup that removes only this process's (or dead processes') temporary files.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import {
  LOCK_FILE,
  acquireRunLock,
  heldLock,
  packageRoot,
  packageVersion,
  processAlive,
  removeStaleTemps,
  tempOwner,
  tempPathFor,
  writeFileAtomic,
} from '../lib/runtime/files';
import { checkWritableFile } from '../lib/cli/rundir';
import { projectRoot } from '../lib/workbook/runners/project';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-files-test-'));
let n = 0;
const freshDir = () => {
  const d = path.join(tmp, `d${n++}`);
  fs.mkdirSync(d);
  return d;
};
/** A pid that existed and is gone now. */
const deadPid = () => spawnSync('true').pid;

describe('lib/runtime/files', () => {
  let sleeper: ChildProcess;
  before(() => {
    sleeper = spawn('sleep', ['120'], { stdio: 'ignore' });
  });
  after(() => {
    sleeper.kill('SIGKILL');
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('writeFileAtomic writes through a pid-named temporary file in the same folder, and removes it when the rename fails', () => {
    const dir = freshDir();
    const file = path.join(dir, 'a.bin');
    const seen: string[] = [];
    writeFileAtomic(file, new Uint8Array([1, 2, 3]), { beforeRename: (t) => seen.push(t, String(fs.existsSync(t)), String(fs.existsSync(file))) });
    expect(seen).to.deep.equal([path.join(dir, `.a.bin.${process.pid}.tmp`), 'true', 'false']);
    expect([...fs.readFileSync(file)]).to.deep.equal([1, 2, 3]);
    writeFileAtomic(file, 'text');
    expect(fs.readFileSync(file, 'utf8')).to.equal('text');
    fs.mkdirSync(path.join(dir, 'taken'));
    fs.writeFileSync(path.join(dir, 'taken', 'x'), '');
    expect(() => writeFileAtomic(path.join(dir, 'taken'), 'y')).to.throw(/EISDIR|ENOTEMPTY|EEXIST/);
    expect(fs.readdirSync(dir).sort()).to.deep.equal(['a.bin', 'taken']);
    writeFileAtomic(path.join(dir, 'new', 'deep', 'f.txt'), 'z');
    expect(fs.readFileSync(path.join(dir, 'new', 'deep', 'f.txt'), 'utf8')).to.equal('z');
    expect(tempOwner(tempPathFor(file, 1234))).to.equal(1234);
    expect(tempOwner('weights-00000001.bin')).to.equal(null);
  });

  it('packageRoot finds the ddpm-workbook package.json (the one projectRoot and the checkpoint version use)', () => {
    const root = path.join(__dirname, '..');
    expect(packageRoot(__dirname)).to.equal(root);
    expect(projectRoot()).to.equal(root);
    expect(packageVersion()).to.equal(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
    expect(() => packageRoot(os.tmpdir())).to.throw(/no ddpm-workbook package\.json above/);
  });

  it('acquireRunLock: O_EXCL lock file with pid and host; a live holder is refused by name; a dead one is taken over; release removes it', () => {
    const dir = freshDir();
    const lock = acquireRunLock(dir, 'test');
    const file = path.join(dir, LOCK_FILE);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).to.include({ pid: process.pid, host: os.hostname(), command: 'test' });
    expect(acquireRunLock(dir), 're-entrant in one process').to.equal(lock);
    expect(heldLock(dir)).to.equal(lock);
    lock.release();
    expect(fs.existsSync(file)).to.equal(false);
    expect(heldLock(dir)).to.equal(null);

    fs.writeFileSync(file, JSON.stringify({ pid: sleeper.pid, host: os.hostname(), command: 'ddpm train --out x', since: '2026-12-01T00:00:00Z' }));
    expect(() => acquireRunLock(dir)).to.throw(`${dir} is in use: process ${sleeper.pid} on ${os.hostname()} (ddpm train --out x, since 2026-12-01T00:00:00Z) holds its lock`);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).pid, 'a refused lock is left alone').to.equal(sleeper.pid);

    const dead = deadPid()!;
    expect(processAlive(dead)).to.equal(false);
    fs.writeFileSync(file, JSON.stringify({ pid: dead, host: os.hostname(), command: 'killed', since: '2026-12-01T00:00:00Z' }));
    const taken = acquireRunLock(dir);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).pid).to.equal(process.pid);
    expect(fs.readdirSync(dir), 'nothing left of the stale lock').to.deep.equal([LOCK_FILE]);
    taken.release();

    // Another host's lock cannot be checked from here: it is respected.
    fs.writeFileSync(file, JSON.stringify({ pid: dead, host: 'elsewhere', command: 'ddpm train', since: 'then' }));
    expect(() => acquireRunLock(dir)).to.throw(/is in use: process \d+ on elsewhere/);
    fs.writeFileSync(file, 'garbage');
    acquireRunLock(dir).release();
    expect(fs.existsSync(file), 'an unreadable lock names no live owner: taken over and released').to.equal(false);
  });

  it('removeStaleTemps removes this process\'s and dead processes\' temporary files, never a live process\'s', () => {
    const dir = freshDir();
    const mine = tempPathFor(path.join(dir, 'a.bin'));
    const live = tempPathFor(path.join(dir, 'b.bin'), sleeper.pid!);
    const dead = tempPathFor(path.join(dir, 'c.bin'), deadPid()!);
    for (const f of [mine, live, dead, path.join(dir, 'keep.tmp'), path.join(dir, 'weights-1.bin')]) fs.writeFileSync(f, '');
    expect(removeStaleTemps(dir).sort()).to.deep.equal([path.basename(dead), path.basename(mine)].sort());
    expect(fs.readdirSync(dir).sort()).to.deep.equal([path.basename(live), 'keep.tmp', 'weights-1.bin'].sort());
  });

  it('checkWritableFile probes the folder for real and names what is wrong', () => {
    const dir = freshDir();
    checkWritableFile(path.join(dir, 'x.csv'));
    expect(fs.readdirSync(dir), 'the probe is removed').to.deep.equal([]);
    expect(() => checkWritableFile(dir)).to.throw(`${dir} is a directory, not a file`);
    expect(() => checkWritableFile(path.join(dir, 'no', 'x.csv'))).to.throw(/the folder .*\/no does not exist/);
    fs.writeFileSync(path.join(dir, 'f'), '');
    expect(() => checkWritableFile(path.join(dir, 'f', 'x.csv'))).to.throw(/f is a file, not a folder/);
    expect(() => checkWritableFile('/proc/x.csv')).to.throw(/cannot write in \/proc: /);
  });
});
