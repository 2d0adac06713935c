/**
 * The checks `ddpm` makes of its output paths before any work starts (free space, a writable file)
 * and the byte counts it prints. Only the CLI uses them, so they live beside it, not in the library.
 */
import * as fs from 'fs';
import * as path from 'path';
import { describeFsError, tempPathFor } from '../index';

/** Free bytes for an unprivileged writer on the file system holding `dir`, or null where statfs is unavailable. */
export function freeBytes(dir: string): number | null {
  try {
    const s = fs.statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
}

/** `bytes` as 12.3 KiB / 4.5 MiB / 1.2 GiB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

/**
 * Checks that a file can be written at `file` before any work: its folder exists and takes a new
 * file (a real probe: the temporary file is created with O_EXCL and removed) and `file` is not a
 * folder. Throws an Error whose message starts with what is wrong.
 */
export function checkWritableFile(file: string): void {
  const full = path.resolve(file);
  if (fs.existsSync(full) && fs.statSync(full).isDirectory()) throw new Error(`${file} is a directory, not a file`);
  const dir = path.dirname(full);
  if (!fs.existsSync(dir)) throw new Error(`the folder ${dir} does not exist`);
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir} is a file, not a folder`);
  const probe = tempPathFor(full);
  try {
    fs.closeSync(fs.openSync(probe, 'wx'));
  } catch (e) {
    throw new Error(`cannot write in ${dir}: ${describeFsError(e)}`);
  }
  fs.rmSync(probe, { force: true });
}
