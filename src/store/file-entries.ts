import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Clock } from '../clock.js';
import { errnoCode, TokendError } from '../errors.js';
import { MAX_TOKEN_CHARS, type AccessToken } from '../token.js';
import { fsyncDir, readFileLimited, writeFileAtomic } from './atomic.js';
import { decodeMetaMs, decodeStateDoc, encodeMetaMs, encodeStateDoc, MAX_ENTRY_BYTES } from './codec.js';
import type { CorruptionReporter, StoredState } from './store.js';

/** Mode of the state directory (created by the store when missing). */
export const STATE_DIR_MODE = 0o700;
/** Mode of refresh-token state files, whatever the token files' mode. */
export const STATE_FILE_MODE = 0o600;

// readEntry's answer for a file that exists but was unusable and has been reported already.
const REPORTED = Symbol('reported');
// A reader can catch another process between its two renames (NAME.json, then NAME): a pair that
// disagrees is read again a few times before it is reported as corrupt.
const TORN_READ_RETRIES = 4;
const TORN_READ_DELAY_MS = 25;

/** Where one store's files are and how they are written. */
export interface EntriesOptions {
  readonly dir: string;
  readonly stateDir: string;
  readonly mode: number;
  readonly onCorrupt: CorruptionReporter;
  readonly clock: Clock;
  /** Per directory: only files owned by this uid are believed (a shared sticky directory). */
  readonly dirOwner?: number | undefined;
  readonly stateOwner?: number | undefined;
}

/** STORE_UNAVAILABLE naming what failed: an errno code or a codec reason, never file content. */
export function unavailable(message: string, cause: unknown): TokendError {
  const detail = cause instanceof TokendError ? cause.message : errnoCode(cause);
  return new TokendError('STORE_UNAVAILABLE', `${message} (${detail})`, { cause });
}

/**
 * The file store's files for each token, read and written as a unit: `DIR/NAME` (raw access
 * token), `DIR/NAME.json` (its metadata), `STATEDIR/NAME.state.json` (refresh token, seed,
 * tombstone, intent). Reads return what is on disk, without judging usability; corrupt files are
 * reported and treated as absent. Callers serialize operations per name.
 */
export class FileEntries {
  constructor(private readonly o: EntriesOptions) {}

  rawPath(name: string): string {
    return join(this.o.dir, name);
  }

  metaPath(name: string): string {
    return join(this.o.dir, `${name}.json`);
  }

  statePath(name: string): string {
    return join(this.o.stateDir, `${name}.state.json`);
  }

  /** Everything stored for name, as on disk (an expired access token included). */
  async read(name: string): Promise<StoredState> {
    const access = await this.readAccess(name);
    const path = this.statePath(name);
    const text = await this.readEntry(name, path, MAX_ENTRY_BYTES, this.o.stateOwner);
    if (text === undefined || text === REPORTED) return { access };
    try {
      const doc = decodeStateDoc(text);
      return { access, refreshToken: doc.refreshToken, seedHash: doc.seedHash, revoked: doc.revoked, intent: doc.intent };
    } catch (err) {
      this.o.onCorrupt(name, path, err instanceof TokendError ? err.message : 'invalid');
      return { access };
    }
  }

  /**
   * Durably replaces the state file with the chain part of s (refresh token, seed, tombstone,
   * intent): temp file, fsync, rename, directory fsync. Removes it when s holds none of them.
   */
  async writeState(name: string, s: StoredState): Promise<void> {
    const path = this.statePath(name);
    if (s.refreshToken === undefined && !s.revoked && s.intent === undefined) {
      await this.unlinkAll([path], this.o.stateDir);
      return;
    }
    let text: string;
    try {
      text = encodeStateDoc({ ...s, updatedAt: this.o.clock.now() });
    } catch (err) {
      throw unavailable(`file store: state of token ${name} cannot be stored in ${path}`, err);
    }
    try {
      await writeFileAtomic(path, text, { mode: STATE_FILE_MODE });
    } catch (err) {
      throw unavailable(`file store: cannot write ${path}`, err);
    }
  }

  /**
   * Replaces NAME.json, then NAME (each atomically), then fsyncs the directory. NAME.json goes
   * first so that a reader woken by the event on NAME (what services watch) reads metadata that
   * matches it.
   */
  async writeAccess(name: string, token: AccessToken): Promise<void> {
    const metaPath = this.metaPath(name);
    let meta: string;
    try {
      meta = encodeMetaMs(token);
    } catch (err) {
      throw unavailable(`file store: access token for ${name} cannot be stored in ${metaPath}`, err);
    }
    for (const [path, data] of [
      [metaPath, meta],
      [this.rawPath(name), token.accessToken],
    ] as const) {
      try {
        await writeFileAtomic(path, data, { mode: this.o.mode, syncDir: false });
      } catch (err) {
        throw unavailable(`file store: cannot write ${path}`, err);
      }
    }
    try {
      await fsyncDir(this.o.dir);
    } catch (err) {
      throw unavailable(`file store: cannot sync directory ${this.o.dir}`, err);
    }
  }

  /** Deletes NAME and NAME.json (missing ones are fine). */
  async removeAccess(name: string): Promise<void> {
    await this.unlinkAll([this.rawPath(name), this.metaPath(name)], this.o.dir);
  }

  private async unlinkAll(paths: readonly string[], dir: string): Promise<void> {
    let removed = false;
    for (const path of paths) {
      try {
        await unlink(path);
        removed = true;
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw unavailable(`file store: cannot remove ${path}`, err);
      }
    }
    if (!removed) return;
    try {
      await fsyncDir(dir);
    } catch (err) {
      throw unavailable(`file store: cannot sync directory ${dir}`, err);
    }
  }

  private async readAccess(name: string): Promise<AccessToken | undefined> {
    for (let attempt = 0; ; attempt++) {
      const pair = await this.readPair(name);
      if (pair.kind === 'ok') return pair.token;
      if (pair.kind === 'none') return undefined;
      if (attempt >= TORN_READ_RETRIES) {
        this.o.onCorrupt(name, pair.path, pair.reason);
        return undefined;
      }
      await delay(TORN_READ_DELAY_MS);
    }
  }

  /** NAME then NAME.json: written in the opposite order, so metadata read after NAME is never older. */
  private async readPair(
    name: string,
  ): Promise<{ kind: 'ok'; token: AccessToken } | { kind: 'none' } | { kind: 'torn'; path: string; reason: string }> {
    const rawPath = this.rawPath(name);
    const metaPath = this.metaPath(name);
    const rawText = await this.readEntry(name, rawPath, MAX_TOKEN_CHARS, this.o.dirOwner);
    const metaText = await this.readEntry(name, metaPath, MAX_ENTRY_BYTES, this.o.dirOwner);
    if (metaText === REPORTED || rawText === REPORTED) return { kind: 'none' };
    if (metaText === undefined) {
      // A raw file without metadata: a crash during the very first write, or tampering.
      if (rawText !== undefined) return { kind: 'torn', path: metaPath, reason: 'metadata file is missing' };
      return { kind: 'none' };
    }
    let token: AccessToken;
    try {
      token = decodeMetaMs(metaText);
    } catch (err) {
      this.o.onCorrupt(name, metaPath, err instanceof TokendError ? err.message : 'invalid');
      return { kind: 'none' };
    }
    if (rawText === undefined) return { kind: 'torn', path: rawPath, reason: 'raw token file is missing' };
    if (rawText !== token.accessToken) return { kind: 'torn', path: rawPath, reason: `raw token file disagrees with ${name}.json` };
    return { kind: 'ok', token };
  }

  /** The file's text; undefined when missing, REPORTED when unusable (and reported). */
  private async readEntry(
    name: string,
    path: string,
    maxBytes: number,
    ownerUid: number | undefined,
  ): Promise<string | undefined | typeof REPORTED> {
    let read;
    try {
      read = await readFileLimited(path, maxBytes, ownerUid);
    } catch (err) {
      throw unavailable(`file store: cannot read ${path}`, err);
    }
    if (read.kind === 'missing') return undefined;
    if (read.kind === 'invalid') {
      this.o.onCorrupt(name, path, read.reason);
      return REPORTED;
    }
    if (read.data.length === 0) {
      this.o.onCorrupt(name, path, 'file is empty');
      return REPORTED;
    }
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(read.data);
    } catch {
      this.o.onCorrupt(name, path, 'file is not valid UTF-8');
      return REPORTED;
    }
  }
}
