import { chmod, mkdir, realpath, stat } from 'node:fs/promises';
import { errnoCode, TokendError } from '../errors.js';
import { probeWritable, removeTempFiles } from './atomic.js';

const WORLD_WRITABLE = 0o002;
const STICKY = 0o1000;

/** What prepareDir found out about a directory. */
export interface DirInfo {
  /** The directory with every symlink resolved. */
  readonly real: string;
  /**
   * The directory is world-writable with the sticky bit (like /tmp): accepted, but then only files
   * owned by this uid are believed (others could create a file under a name tokend has not written).
   */
  readonly ownerUid: number | undefined;
}

/**
 * Makes dir ready for the file store: creates it with mode when missing (exactly that mode,
 * whatever the umask), checks it is a directory that is safe to keep tokens in, proves it writable
 * with a probe file and removes temp files a crash left behind.
 *
 * Safe means (another local user could replace tokens): the directory (symlinks resolved) is not
 * world-writable without the sticky bit. A world-writable directory WITH the sticky bit is
 * accepted, and then only files owned by tokend's user are read. Directories above it are not
 * judged: a directory tokend creates inside a world-writable volume root (Kubernetes emptyDir)
 * is its own, mode 0755 or 0700.
 * A refusal is TokendError('CONFIG_INVALID') naming the directory and the fix; I/O problems are
 * STORE_UNAVAILABLE naming the directory.
 */
export async function prepareDir(dir: string, mode: number, what: string): Promise<DirInfo> {
  let real: string;
  let st;
  try {
    const created = await mkdir(dir, { recursive: true, mode });
    // mkdir's mode passes through the umask; set the leaf's exactly.
    if (created !== undefined) await chmod(dir, mode);
    real = await realpath(dir);
    st = await stat(real);
    if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    throw new TokendError('STORE_UNAVAILABLE', `file store: ${what} ${dir} is not a usable directory (${errnoCode(err)})`, { cause: err });
  }
  const shown = real === dir ? dir : `${dir} (${real})`;
  const worldWritable = (st.mode & WORLD_WRITABLE) !== 0;
  if (worldWritable && (st.mode & STICKY) === 0) {
    throw new TokendError(
      'CONFIG_INVALID',
      `file store: ${what} ${shown} is world-writable: another user could replace tokens; ` +
        'use a directory only tokend (and its readers) can write, e.g. mode 0755 or 0750 (or set the sticky bit, mode 1777)',
    );
  }
  const ownerUid = worldWritable ? process.geteuid?.() : undefined;
  try {
    await probeWritable(real);
    await removeTempFiles(real, ownerUid);
  } catch (err) {
    throw new TokendError('STORE_UNAVAILABLE', `file store: ${what} ${shown} is not writable (${errnoCode(err)})`, { cause: err });
  }
  return { real, ownerUid };
}
