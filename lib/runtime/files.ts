/**
 * The file system, once: the one atomic writer, the package root, the advisory lock that gives a
 * run directory a single writer and the cleanup of temporary files. Node-only (the maths core never
 * imports it). The CLI's checks of an output path before any work are in lib/cli/rundir.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** Options of writeFileAtomic. */
export interface WriteAtomicOptions {
  /** fsync the file before the rename and the folder after it, so the rename survives a power cut; default true. */
  fsync?: boolean;
  /** Create the folder (and its parents) first; default true. */
  mkdir?: boolean;
  /** Called with the temporary file's path after it is written (and fsynced), before the rename (test faults use it). */
  beforeRename?: (tmp: string) => void;
}

const TMP_SUFFIX = '.tmp';

/** The temporary name writeFileAtomic uses for `file`: hidden, in the same folder, with this process's pid. */
export function tempPathFor(file: string, pid: number = process.pid): string {
  return path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.${pid}${TMP_SUFFIX}`);
}

/** The pid in a temporary file's name made by tempPathFor, or null when the name is not one. */
export function tempOwner(name: string): number | null {
  const m = /^\..+\.(\d+)\.tmp$/.exec(path.basename(name));
  return m ? Number(m[1]) : null;
}

/**
 * Writes `data` to `file` atomically: a temporary file in the same folder (named with the pid, so
 * two processes never share one), fsync, rename over `file`, fsync of the folder. A reader sees the
 * old file or the new one, never half of one; on failure the temporary file is removed and the
 * error is rethrown as it came (its code intact for describeFsError).
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, opts: WriteAtomicOptions = {}): void {
  const sync = opts.fsync ?? true;
  const dir = path.dirname(path.resolve(file));
  if (opts.mkdir ?? true) makeDirs(dir);
  const tmp = tempPathFor(file);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'w');
    let off = 0;
    while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off);
    if (sync) fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    opts.beforeRename?.(tmp);
    fs.renameSync(tmp, file);
    if (sync) fsyncDir(dir);
  } catch (e) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * mkdir -p, one level at a time: Node 20's fs.mkdirSync(dir, { recursive: true }) never returns for
 * a path under /proc (it retries ENOENT forever), so it is not used.
 */
export function makeDirs(dir: string): void {
  const full = path.resolve(dir);
  if (fs.existsSync(full)) {
    if (!fs.statSync(full).isDirectory()) throw Object.assign(new Error(`${full} is a file, not a directory`), { code: 'ENOTDIR' });
    return;
  }
  const parent = path.dirname(full);
  if (parent !== full) makeDirs(parent);
  fs.mkdirSync(full);
}

/** An fs error as words a user can act on, with the system's message kept in brackets. */
export function describeFsError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const hints: Record<string, string> = {
    ENOSPC: 'the disk is full',
    EDQUOT: 'the disk quota is exhausted',
    EROFS: 'the file system is read-only',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    ENOTDIR: 'a parent of the path is a file, not a directory',
    ENOENT: 'a parent directory does not exist',
    EISDIR: 'the path is a directory',
  };
  if (err && err.code) return `${hints[err.code] ?? err.code} (${err.message})`;
  return e instanceof Error ? e.message : String(e);
}

// ---- the package ----

const roots = new Map<string, string>();

/** The folder holding the ddpm-workbook package.json above `from` (works from lib/ and dist/lib/ alike). */
export function packageRoot(from: string = __dirname): string {
  const cached = roots.get(from);
  if (cached) return cached;
  for (let dir = path.resolve(from); ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'ddpm-workbook') {
      roots.set(from, dir);
      return dir;
    }
    if (path.dirname(dir) === dir) throw new Error(`no ddpm-workbook package.json above ${from}`);
  }
}

/** The version field of this package's package.json, or 'unknown' when the file cannot be found (a bundle). */
export function packageVersion(): string {
  try {
    return String(JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version);
  } catch {
    return 'unknown';
  }
}

// ---- processes ----

/** Whether process `pid` exists on this host (a process we may not signal still exists). */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files (writeFileAtomic's `.NAME.PID.tmp`) in `dir` that belong to this
 * process or to a process that no longer exists; a live process's file is never touched. Returns
 * the names removed.
 */
export function removeStaleTemps(dir: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const pid = tempOwner(name);
    if (pid === null || (pid !== process.pid && processAlive(pid))) continue;
    fs.rmSync(path.join(dir, name), { force: true });
    removed.push(name);
  }
  return removed;
}

// ---- one writer per run directory ----

/** The advisory lock file's name inside a run directory. */
export const LOCK_FILE = 'ddpm.lock';

/** What a lock file holds. */
export interface LockOwner {
  pid: number;
  host: string;
  command: string;
  since: string;
}

/** A lock this process holds; release() removes the lock file (idempotent). */
export interface RunLock {
  dir: string;
  file: string;
  owner: LockOwner;
  release(): void;
}

const held = new Map<string, RunLock>();

function lockKey(dir: string): string {
  try {
    return fs.realpathSync(dir);
  } catch {
    return path.resolve(dir);
  }
}

/** The lock this process holds on `dir`, if any. */
export function heldLock(dir: string): RunLock | null {
  return held.get(lockKey(dir)) ?? null;
}

function readOwner(file: string): LockOwner | null {
  try {
    const o = JSON.parse(fs.readFileSync(file, 'utf8'));
    return typeof o.pid === 'number' && typeof o.host === 'string' ? (o as LockOwner) : null;
  } catch {
    return null;
  }
}

const describeOwner = (o: LockOwner) => `process ${o.pid} on ${o.host} (${o.command || 'unknown command'}, since ${o.since})`;

let exitHookInstalled = false;

/**
 * Takes the advisory lock of run directory `dir` (which must exist): creates dir/ddpm.lock with
 * O_EXCL holding this process's pid and host. A lock whose process is gone (same host, pid not
 * running, or a file too damaged to name one) is stale and taken over; a live holder makes it
 * throw an Error naming that process. Re-entrant within a process. The lock is released by
 * release() and, as a backstop, when the process exits.
 */
export function acquireRunLock(dir: string, command = process.argv.slice(1).join(' ')): RunLock {
  const key = lockKey(dir);
  const mine = held.get(key);
  if (mine) return mine;
  const file = path.join(dir, LOCK_FILE);
  const owner: LockOwner = { pid: process.pid, host: os.hostname(), command: command.slice(0, 200), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 5; attempt++) {
    let fd: number;
    try {
      fd = fs.openSync(file, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const other = readOwner(file);
      if (other && !(other.host === os.hostname() && !processAlive(other.pid))) {
        throw new Error(
          `${dir} is in use: ${describeOwner(other)} holds its lock ${file}; one run directory takes one writer (wait for it, or use another --out)`,
        );
      }
      // Stale (its process is gone) or unreadable: move it aside under our own name, check that what
      // was moved is still the stale file (another process may have taken it over meanwhile), drop it.
      const aside = tempPathFor(path.join(dir, `${LOCK_FILE}.stale`));
      try {
        fs.renameSync(file, aside);
      } catch {
        continue;
      }
      const moved = readOwner(aside);
      if (moved && other && (moved.pid !== other.pid || moved.since !== other.since)) {
        // A live owner's fresh lock was moved: put it back if the name is still free, then refuse.
        try {
          fs.linkSync(aside, file);
        } catch {
          /* someone else already holds the name */
        }
        fs.rmSync(aside, { force: true });
        throw new Error(`${dir} is in use: ${describeOwner(moved)} holds its lock ${file}; one run directory takes one writer`);
      }
      fs.rmSync(aside, { force: true });
      continue;
    }
    try {
      fs.writeSync(fd, JSON.stringify(owner) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    const lock: RunLock = {
      dir,
      file,
      owner,
      release: () => {
        if (held.get(key) !== lock) return;
        held.delete(key);
        const now = readOwner(file);
        if (now && now.pid === owner.pid && now.since === owner.since) fs.rmSync(file, { force: true });
      },
    };
    held.set(key, lock);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => [...held.values()].forEach((l) => l.release()));
    }
    return lock;
  }
  throw new Error(`could not take the lock ${file}: other processes keep replacing it`);
}
