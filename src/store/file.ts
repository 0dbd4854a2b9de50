import { chmod, mkdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock, type Clock } from '../clock.js';
import { TokendError } from '../errors.js';
import { MAX_TOKEN_CHARS, TOKEN_NAME_RE, type AccessToken } from '../token.js';
import { fsyncDir, probeWritable, readFileLimited, removeTempFiles, writeFileAtomic } from './atomic.js';
import { decodeMeta, decodeState, decodeTombstone, encodeMeta, encodeState, encodeTombstone, MAX_ENTRY_BYTES } from './codec.js';
import { DEFAULT_FILE_MODE, type CorruptionReporter, type StoredState, type TokenStore } from './store.js';

export { DEFAULT_FILE_MODE };

/** Mode of a token directory tokend has to create. */
export const DIR_MODE = 0o755;
/** Mode of the state directory and of every refresh-token state file, whatever `mode` says. */
export const STATE_DIR_MODE = 0o700;
/** Mode of refresh-token state files. */
export const STATE_FILE_MODE = 0o600;

// readEntry's answer for a file that exists but was unusable and has been reported already.
const REPORTED = Symbol('reported');

/** Options of FileStore. */
export interface FileStoreOptions {
  /** Directory services read tokens from: `DIR/NAME` (raw token) and `DIR/NAME.json`. */
  readonly dir: string;
  /**
   * Permission bits of `NAME` and `NAME.json`. Default 0o600; e.g. 0o640 for a shared volume with
   * an fsGroup. Group/other write or execute bits are refused.
   */
  readonly mode?: number | undefined;
  /** Where refresh-token state files live (always 0o700 / 0o600). Default `DIR/.state`. */
  readonly stateDir?: string | undefined;
  /** Told about every corrupt entry found by load (which is then treated as absent). */
  readonly onCorrupt?: CorruptionReporter | undefined;
  /** Clock for the state files' `updated_at`. Default systemClock. */
  readonly clock?: Clock | undefined;
}

function errnoCode(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : 'error';
}

function unavailable(message: string, cause: unknown): TokendError {
  // errno code only: a Node error message repeats the path but a codec one is already content-free.
  const detail = cause instanceof TokendError ? cause.message : errnoCode(cause);
  return new TokendError('STORE_UNAVAILABLE', `${message} (${detail})`, { cause });
}

/**
 * Writes tokens to a directory, like Vault Agent's file sink. `DIR/NAME` holds the raw access
 * token (no trailing newline, so `cat` works), `DIR/NAME.json` the metadata
 * (`{"access_token","token_type","expires_at","obtained_at","scope"?}`, Unix seconds), and
 * `STATEDIR/NAME.state.json` the refresh token, never group- or world-readable. Every file is
 * replaced atomically (temp file, fchmod, fsync, rename, directory fsync). Only the newest access
 * token is written: a save whose expiresAt is not later than the last one written or loaded for
 * that name is dropped. Operations on one name are serialized.
 */
export class FileStore implements TokenStore {
  readonly kind = 'file' as const;
  readonly dir: string;
  readonly stateDir: string;
  readonly mode: number;
  private readonly onCorrupt: CorruptionReporter;
  private readonly clock: Clock;
  /** expiresAt (ms) and grantKey of the newest access token written or loaded, per name. */
  private readonly newest = new Map<string, { expiresAt: number; grantKey: string | undefined }>();
  /** Tail of each name's operation queue (settled, never rejecting). */
  private readonly queues = new Map<string, Promise<void>>();

  constructor(opts: FileStoreOptions) {
    const mode = opts.mode ?? DEFAULT_FILE_MODE;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777 || (mode & 0o133) !== 0 || (mode & 0o600) !== 0o600) {
      throw new TokendError(
        'CONFIG_INVALID',
        `store.mode: ${mode.toString(8)} must give the owner read/write and nobody write or execute (e.g. 0600, 0640)`,
      );
    }
    this.dir = opts.dir;
    this.stateDir = opts.stateDir ?? join(opts.dir, '.state');
    this.mode = mode;
    this.onCorrupt = opts.onCorrupt ?? (() => undefined);
    this.clock = opts.clock ?? systemClock;
  }

  /**
   * Creates the token directory (0o755) and the state directory (0o700) when missing, proves
   * both writable with a probe file and removes temp files a crash left behind. Rejects with
   * STORE_UNAVAILABLE naming the directory.
   */
  async init(): Promise<void> {
    await this.prepareDir(this.dir, DIR_MODE);
    await this.prepareDir(this.stateDir, STATE_DIR_MODE);
  }

  private async prepareDir(dir: string, mode: number): Promise<void> {
    try {
      const created = await mkdir(dir, { recursive: true, mode });
      // mkdir's mode passes through the umask; set the leaf's exactly.
      if (created !== undefined) await chmod(dir, mode);
      if (!(await stat(dir)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      await probeWritable(dir);
      await removeTempFiles(dir);
    } catch (err) {
      throw unavailable(`file store: directory ${dir} is not a writable directory`, err);
    }
  }

  /**
   * Reads NAME.json (checked against NAME) and the state file. A corrupt entry is reported
   * through onCorrupt and left out of the result; I/O errors reject with STORE_UNAVAILABLE.
   */
  load(name: string): Promise<StoredState> {
    return this.serialized(name, async () => {
      const access = await this.loadAccess(name);
      const state = await this.loadState(name);
      if (access !== undefined) {
        const known = this.newest.get(name);
        if (known === undefined || known.grantKey !== access.grantKey || access.expiresAt > known.expiresAt) {
          this.newest.set(name, { expiresAt: access.expiresAt, grantKey: access.grantKey });
        }
      }
      return { access, refreshToken: state?.refreshToken, seedHash: state?.seedHash, revoked: state?.revoked };
    });
  }

  /** Durably writes STATEDIR/NAME.state.json (mode 0o600) before resolving. */
  saveRefreshToken(name: string, refreshToken: string, seedHash: string | undefined): Promise<void> {
    return this.serialized(name, async () => {
      const path = this.statePath(name);
      let text: string;
      try {
        text = encodeState({ refreshToken, seedHash, updatedAt: this.clock.now() });
      } catch (err) {
        throw unavailable(`file store: refresh token for ${name} cannot be stored in ${path}`, err);
      }
      try {
        await writeFileAtomic(path, text, { mode: STATE_FILE_MODE });
      } catch (err) {
        throw unavailable(`file store: cannot write ${path}`, err);
      }
    });
  }

  /**
   * Replaces NAME and NAME.json, unless a token expiring at the same time or later was already
   * written or loaded for name (then the call resolves without writing).
   */
  saveAccessToken(name: string, token: AccessToken): Promise<void> {
    return this.serialized(name, async () => {
      const newest = this.newest.get(name);
      // Stale only against a token of the same settings: after a config change the new one wins.
      if (newest !== undefined && newest.grantKey === token.grantKey && !(token.expiresAt > newest.expiresAt)) return;
      const rawPath = this.rawPath(name);
      const metaPath = this.metaPath(name);
      let meta: string;
      try {
        meta = encodeMeta(token);
      } catch (err) {
        throw unavailable(`file store: access token for ${name} cannot be stored in ${metaPath}`, err);
      }
      // Raw file first: it is what services read; a crash between the two renames leaves a
      // pair that load reports as corrupt and the next write replaces.
      for (const [path, data] of [
        [rawPath, token.accessToken],
        [metaPath, meta],
      ] as const) {
        try {
          await writeFileAtomic(path, data, { mode: this.mode, syncDir: false });
        } catch (err) {
          throw unavailable(`file store: cannot write ${path}`, err);
        }
      }
      try {
        await fsyncDir(this.dir);
      } catch (err) {
        throw unavailable(`file store: cannot sync directory ${this.dir}`, err);
      }
      this.newest.set(name, { expiresAt: token.expiresAt, grantKey: token.grantKey });
    });
  }

  /** Deletes NAME, NAME.json and the state file (missing ones are fine) and forgets the newest expiry. */
  remove(name: string): Promise<void> {
    return this.serialized(name, async () => {
      // A refresh-token chain leaves a tombstone, so a daemon still running with the revoked
      // refresh token in memory sees it before presenting it again.
      const state = await this.loadState(name);
      if (state !== undefined) {
        const path = this.statePath(name);
        try {
          await writeFileAtomic(path, encodeTombstone(state.seedHash, this.clock.now()), { mode: STATE_FILE_MODE });
        } catch (err) {
          throw unavailable(`file store: cannot write ${path}`, err);
        }
      }
      const gone = [this.rawPath(name), this.metaPath(name)];
      if (state === undefined) gone.push(this.statePath(name)); // none, or corrupt (already reported)
      for (const path of gone) {
        try {
          await unlink(path);
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw unavailable(`file store: cannot remove ${path}`, err);
        }
      }
      for (const dir of new Set([this.dir, this.stateDir])) {
        try {
          await fsyncDir(dir);
        } catch (err) {
          throw unavailable(`file store: cannot sync directory ${dir}`, err);
        }
      }
      this.newest.delete(name);
    });
  }

  /** Waits for queued operations to finish. */
  async close(): Promise<void> {
    await Promise.all([...this.queues.values()]);
  }

  private rawPath(name: string): string {
    return join(this.dir, name);
  }

  private metaPath(name: string): string {
    return join(this.dir, `${name}.json`);
  }

  private statePath(name: string): string {
    return join(this.stateDir, `${name}.state.json`);
  }

  private async loadAccess(name: string): Promise<AccessToken | undefined> {
    const metaPath = this.metaPath(name);
    const rawPath = this.rawPath(name);
    const metaText = await this.readEntry(name, metaPath, MAX_ENTRY_BYTES);
    const rawText = await this.readEntry(name, rawPath, MAX_TOKEN_CHARS);
    if (metaText === REPORTED || rawText === REPORTED) return undefined;
    if (metaText === undefined) {
      // A raw file without metadata: a crash during the very first write, or tampering.
      if (rawText !== undefined) this.onCorrupt(name, metaPath, 'metadata file is missing');
      return undefined;
    }
    let token: AccessToken;
    try {
      token = decodeMeta(metaText);
    } catch (err) {
      this.onCorrupt(name, metaPath, err instanceof TokendError ? err.message : 'invalid');
      return undefined;
    }
    if (rawText === undefined) {
      this.onCorrupt(name, rawPath, 'raw token file is missing');
      return undefined;
    }
    if (rawText !== token.accessToken) {
      this.onCorrupt(name, rawPath, `raw token file disagrees with ${name}.json`);
      return undefined;
    }
    return token;
  }

  private async loadState(
    name: string,
  ): Promise<{ refreshToken: string | undefined; seedHash: string | undefined; revoked?: true } | undefined> {
    const path = this.statePath(name);
    const text = await this.readEntry(name, path, MAX_ENTRY_BYTES);
    if (text === undefined || text === REPORTED) return undefined;
    const tombstone = decodeTombstone(text);
    if (tombstone) return { refreshToken: undefined, seedHash: tombstone.seedHash, revoked: true };
    try {
      const state = decodeState(text);
      return { refreshToken: state.refreshToken, seedHash: state.seedHash };
    } catch (err) {
      this.onCorrupt(name, path, err instanceof TokendError ? err.message : 'invalid');
      return undefined;
    }
  }

  /** The file's text; undefined when missing, REPORTED when unusable (and reported). */
  private async readEntry(name: string, path: string, maxBytes: number): Promise<string | undefined | typeof REPORTED> {
    let read;
    try {
      read = await readFileLimited(path, maxBytes);
    } catch (err) {
      throw unavailable(`file store: cannot read ${path}`, err);
    }
    if (read.kind === 'missing') return undefined;
    if (read.kind === 'invalid') {
      this.onCorrupt(name, path, read.reason);
      return REPORTED;
    }
    if (read.data.length === 0) {
      this.onCorrupt(name, path, 'file is empty');
      return REPORTED;
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(read.data);
    } catch {
      this.onCorrupt(name, path, 'file is not valid UTF-8');
      return REPORTED;
    }
  }

  /** Runs op after every earlier operation on name, so writes for one name never interleave. */
  private serialized<T>(name: string, op: () => Promise<T>): Promise<T> {
    if (!TOKEN_NAME_RE.test(name) || name.endsWith('.json')) {
      // A name ending in .json would share a file with another token's metadata.
      return Promise.reject(
        new TokendError('STORE_UNAVAILABLE', `file store: token name ${JSON.stringify(name)} cannot be used as a file name`),
      );
    }
    const previous = this.queues.get(name) ?? Promise.resolve();
    const run = previous.then(op);
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(name, tail);
    void tail.then(() => {
      if (this.queues.get(name) === tail) this.queues.delete(name);
    });
    return run;
  }
}
