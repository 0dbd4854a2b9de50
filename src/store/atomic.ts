import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { readUpTo } from '../util/read-handle.js';

/**
 * Small filesystem primitives for the file store: atomic replace (temp file in the same
 * directory, explicit fchmod, fsync, rename, directory fsync), bounded reads of untrusted files,
 * and recognition of temp files left behind by a crash. They throw Node's own errors (with
 * `code`, e.g. EACCES); the caller translates them.
 */

// `.TARGET.<16 hex>.tmp`: hidden, so services globbing the directory do not pick it up, and
// recognisable, so a crash's leftovers can be told apart from anything else in the directory.
const TEMP_NAME = /^\..+\.[0-9a-f]{16}\.tmp$/;

/** A hidden, unique temp-file name for target, in target's directory. */
export function tempPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomBytes(8).toString('hex')}.tmp`);
}

/** True when a directory entry's name is one tempPathFor (or probeWritable) creates. */
export function isTempName(name: string): boolean {
  return TEMP_NAME.test(name);
}

/** Options for writeFileAtomic. */
export interface AtomicWriteOptions {
  /** Permission bits of the resulting file (set with fchmod, so the umask does not matter). */
  readonly mode: number;
  /**
   * fsync the directory after the rename, making the rename itself durable. Default true; pass
   * false when several files are replaced in a row and call fsyncDir once afterwards.
   */
  readonly syncDir?: boolean;
}

/**
 * Replaces target with data so that a reader sees either the old or the new content, never a
 * partial file: writes a temp file in the same directory (O_EXCL, never following a symlink),
 * fchmods it to `mode`, fsyncs it, renames it over target and (by default) fsyncs the directory.
 * On failure the temp file is removed and the error rethrown; target is then unchanged.
 */
export async function writeFileAtomic(target: string, data: string | Uint8Array, opts: AtomicWriteOptions): Promise<void> {
  const tmp = tempPathFor(target);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  let created = false;
  try {
    const fh = await open(tmp, flags, opts.mode);
    created = true;
    try {
      // open's mode is filtered by the umask; fchmod is not.
      await fh.chmod(opts.mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
    created = false;
  } catch (err) {
    if (created) await unlink(tmp).catch(() => undefined);
    throw err;
  }
  if (opts.syncDir !== false) await fsyncDir(dirname(target));
}

/** fsyncs a directory, so renames and unlinks in it survive a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } catch (err) {
    // Some filesystems cannot fsync a directory; the rename is still atomic there.
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
  } finally {
    await fh.close();
  }
}

/** What readFileLimited found. */
export type LimitedRead =
  | { readonly kind: 'missing' }
  | { readonly kind: 'ok'; readonly data: Buffer }
  /** The entry exists but is not something tokend wrote (reason names no content). */
  | { readonly kind: 'invalid'; readonly reason: string };

/**
 * Reads a file that may have been tampered with: never follows a symlink, never blocks on a FIFO,
 * refuses anything but a regular file and reads at most maxBytes (bytes). With ownerUid, a file
 * owned by another user is refused too. Missing is not an error; other I/O errors (EACCES, EIO)
 * are thrown.
 */
export async function readFileLimited(path: string, maxBytes: number, ownerUid?: number): Promise<LimitedRead> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'ELOOP') return { kind: 'invalid', reason: 'is a symbolic link' };
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { kind: 'invalid', reason: 'is not a regular file' };
    // In a shared (sticky, world-writable) directory anyone can create a file under a name tokend
    // has not written yet: only files of tokend's own user are believed.
    if (ownerUid !== undefined && st.uid !== ownerUid) return { kind: 'invalid', reason: "is not owned by tokend's user" };
    if (st.size > maxBytes) return { kind: 'invalid', reason: `is larger than ${maxBytes} bytes` };
    // Up to one byte past the limit: the file may have grown since fstat.
    const data = await readUpTo(fh, st.size, maxBytes);
    if (data.length > maxBytes) return { kind: 'invalid', reason: `is larger than ${maxBytes} bytes` };
    return { kind: 'ok', data };
  } finally {
    await fh.close();
  }
}

/**
 * Proves dir is writable by creating, fsyncing and removing a probe file in it (named like a temp
 * file, so a crash mid-probe leaves nothing removeTempFiles would miss).
 */
export async function probeWritable(dir: string): Promise<void> {
  const probe = tempPathFor(join(dir, 'tokend-probe'));
  const fh = await open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile('probe');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await unlink(probe);
}

/**
 * Removes temp files a crash left in dir (regular files only, matched by isTempName). Returns
 * the names removed. Assumes one tokend writes the directory, as the file store does. With
 * ownerUid (a shared sticky directory), only that user's temp files are touched.
 */
export async function removeTempFiles(dir: string, ownerUid?: number): Promise<string[]> {
  const removed: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile() || !isTempName(entry.name)) continue;
    try {
      if (ownerUid !== undefined && (await lstat(join(dir, entry.name))).uid !== ownerUid) continue;
      await unlink(join(dir, entry.name));
      removed.push(entry.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return removed;
}
