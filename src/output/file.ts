/**
 * One output file: the start-up checks of its directory and path, and writes that happen only
 * when the bytes change. Writes are atomic (store/atomic.ts: temp file in the same directory,
 * fchmod, fsync, rename, directory fsync): a reader sees the old or the new content, never a part.
 */
import { constants } from 'node:fs';
import { access, lstat, readdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errnoCode } from '../errors.js';
import { isTempName, readFileLimited, writeFileAtomic } from '../store/atomic.js';

/** Largest output tokend compares against what is on disk (bytes); a larger file is simply replaced. */
const MAX_COMPARE_BYTES = 256 * 1024;

/**
 * Checks, at start-up, that path can be written the way outputs are: its directory exists, is a
 * directory tokend may create files in, and is not world-writable unless sticky (else another
 * user could swap the file between tokend's writes); the path itself, when it exists, is a
 * regular file (not a directory, symlink, FIFO...). Returns the problem, naming the path, or
 * undefined when all is well.
 */
export async function checkOutputTarget(path: string): Promise<string | undefined> {
  const dir = dirname(path);
  let st;
  try {
    st = await stat(dir);
  } catch (err) {
    const code = errnoCode(err);
    return code === 'ENOENT' ? `directory ${dir} does not exist` : `directory ${dir} cannot be read (${code})`;
  }
  if (!st.isDirectory()) return `${dir} is not a directory`;
  try {
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    return `directory ${dir} is not writable by tokend (${errnoCode(err)})`;
  }
  if ((st.mode & 0o002) !== 0 && (st.mode & 0o1000) === 0) {
    return `directory ${dir} is world-writable without the sticky bit: another user could replace the file`;
  }
  try {
    const target = await lstat(path);
    if (target.isSymbolicLink()) return `${path} is a symbolic link; give the real file's path`;
    if (target.isDirectory()) return `${path} is a directory`;
    if (!target.isFile()) return `${path} is not a regular file`;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') return `${path} cannot be inspected (${errnoCode(err)})`;
  }
  return undefined;
}

/**
 * Removes this output's own temp files (`.BASENAME.<16 hex>.tmp`) that a crash left beside it.
 * Only those: the directory may belong to the application, so nothing else in it is touched.
 */
export async function removeOwnTempFiles(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const rest = entry.name.slice(prefix.length);
    if (!entry.isFile() || !entry.name.startsWith(prefix) || !isTempName(entry.name) || !/^[0-9a-f]{16}\.tmp$/.test(rest)) continue;
    await unlink(join(dir, entry.name)).catch(() => undefined);
  }
}

/** What OutputFile.write did. */
export type WriteResult = 'written' | 'unchanged';

/**
 * Writes one output file, only when its content changes: the bytes are compared with the last
 * ones written by this process, or, before the first write, with what is on disk (a restart
 * with the same token rewrites nothing). A file on disk with another mode or owner is replaced.
 * Calls must not overlap (the caller runs one write at a time per file).
 */
export class OutputFile {
  private last: Buffer | undefined;

  /** @param mode permission bits of the file (set with fchmod: the umask does not matter). */
  constructor(
    readonly path: string,
    readonly mode: number,
  ) {}

  /** Writes data unless the file already holds exactly it. Rejects with Node's fs error (code set). */
  async write(data: string): Promise<WriteResult> {
    const bytes = Buffer.from(data, 'utf8');
    if (this.last !== undefined ? this.last.equals(bytes) : await this.onDiskEquals(bytes)) {
      this.last = bytes;
      return 'unchanged';
    }
    await writeFileAtomic(this.path, bytes, { mode: this.mode });
    this.last = bytes;
    return 'written';
  }

  private async onDiskEquals(bytes: Buffer): Promise<boolean> {
    try {
      const st = await lstat(this.path);
      const ownerOk = process.getuid === undefined || st.uid === process.getuid();
      if (!st.isFile() || (st.mode & 0o7777) !== this.mode || !ownerOk || st.size !== bytes.length) return false;
      if (bytes.length > MAX_COMPARE_BYTES) return false;
      const read = await readFileLimited(this.path, bytes.length);
      return read.kind === 'ok' && read.data.equals(bytes);
    } catch {
      // Unreadable or vanished: writing it is the answer either way.
      return false;
    }
  }
}
